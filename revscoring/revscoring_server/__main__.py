"""`python -m revscoring_server`: the image entrypoint, one inference service per process, as KServe runs it.

    INFERENCE_NAME=enwiki-damaging python -m revscoring_server --http_port 8080

The binary is the one file in /mnt/models (KServe's storage initializer names it after the object it
downloaded); `MODEL_PATH` names another file, or another folder to search (wikiserve.model_files).

With `--models_dir DIR --isvc a --isvc b ...` it serves several services in one process, each model read
from `DIR/<isvc>/model.bin` (development and tests; `dev/run_all.py` serves everything).
A bad environment value, name or binary stops the process with exit code 2 before it listens.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from revscoring_server.executor import one_thread
from revscoring_server.model import RevscoringModel
from revscoring_server.nltk_corpora import use_readable_corpora
from revscoring_server.ores.local import ores_router
from revscoring_server.scorer import Scorers
from revscoring_server.scoring import ModelLoadError
from revscoring_server.services import UnknownService, find_service
from revscoring_server.workers import in_flight_limit, pool_from_values
from wikiserve.admission import Admission
from wikiserve.config import EXIT_BAD_CONFIG, REVSCORING, ServerSettings, read_settings_or_exit
from wikiserve.logs import configure_logging
from wikiserve.mediawiki import MediaWikiPool
from wikiserve.model_files import ModelFileError, resolve_model_file
from wikiserve.score_cache import ScoreCache, build_score_cache
from wikiserve.server import collect_garbage_less_often, serve

logger = logging.getLogger("revscoring_server")



def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="revscoring_server", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--http_port", type=int, help="overrides HTTP_PORT (default 8080)")
    parser.add_argument("--model_name", help="the inference service name; overrides INFERENCE_NAME")
    parser.add_argument(
        "--models_dir", type=Path, help="serve several services, models at DIR/<isvc>/model.bin"
    )
    parser.add_argument("--isvc", action="append", default=[], help="with --models_dir: a service to serve")
    # KServe passes its own flags (--workers, --grpc_port, ...) to every model server; they do not apply.
    args, _unknown = parser.parse_known_args(argv)
    return args


def main(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> int:
    env = os.environ if env is None else env
    args = parse_args(sys.argv[1:] if argv is None else argv)
    values = read_settings_or_exit(env, REVSCORING)  # every variable checked once, before anything loads
    settings = ServerSettings.from_values(values)
    if args.http_port:
        settings = dataclasses.replace(settings, http_port=args.http_port)
    configure_logging(settings.json_logs, settings.log_level)
    use_readable_corpora()  # before any model reads stopwords or WordNet
    pool = MediaWikiPool(settings.mediawiki)
    workers = pool_from_values(values)  # extraction in worker processes; see workers.py
    cache = build_score_cache(settings.score_cache)
    # One scorer per wiki, behind the KServe routes and ORES's API alike.
    admission = Admission(in_flight_limit(values))  # revisions in flight, every route together
    if workers is not None:
        workers.adapt(admission)  # the bound shrinks while the workers' cores are taken (AdaptiveBound)
    scorers = Scorers(workers or one_thread(), cache, values["MISSING_REVISION_TTL_S"], admission)
    try:
        models = [
            RevscoringModel(find_service(isvc), path, settings, pool, scorers)
            for isvc, path in _services(args, values)
        ]
        for model in models:
            model.load()
    except (UnknownService, ModelFileError, ModelLoadError) as error:
        logger.error(f"Cannot start: {error}")
        return EXIT_BAD_CONFIG
    if workers is not None:
        collect_garbage_less_often()  # before the fork, so the workers collect as seldom
        workers.start()  # fork now: after the models loaded (shared), before the server starts threads
    try:
        serve(
            models,
            settings,
            on_shutdown=_closers(pool, cache),
            routers=[ores_router(scorers)],
            admission=admission,
        )
    finally:
        if workers is not None:
            workers.close()
    return 0


def _closers(pool: MediaWikiPool, cache: ScoreCache | None) -> list:
    return [pool.close] + ([cache.close] if cache is not None else [])


def _services(args: argparse.Namespace, values: Mapping[str, Any]) -> list[tuple[str, Path]]:
    if args.models_dir:
        if not args.isvc:
            raise UnknownService("--models_dir needs at least one --isvc.")
        return [(isvc, args.models_dir / isvc / "model.bin") for isvc in args.isvc]
    isvc = args.model_name or values["INFERENCE_NAME"]
    if not isvc:
        raise UnknownService("No inference service name: set INFERENCE_NAME (e.g. enwiki-damaging).")
    find_service(isvc)  # a bad name is reported before anything about the binary
    return [(isvc, resolve_model_file(values["MODEL_PATH"]))]


if __name__ == "__main__":
    sys.exit(main())
