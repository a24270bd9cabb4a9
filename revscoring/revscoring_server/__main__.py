"""`python -m revscoring_server`: the image entrypoint, one inference service per process, as KServe runs it.

    INFERENCE_NAME=enwiki-damaging python -m revscoring_server --http_port 8080

The binary is the one file in /mnt/models (KServe's storage initializer names it after the object it
downloaded); `MODEL_PATH` names another file, or another folder to search (wikiserve.model_files).

With `--models_dir DIR --isvc a --isvc b ...` it serves several services in one process, each model read
from `DIR/<isvc>/model.bin` (development and tests; `dev/run_all.py` serves everything).
A bad name or binary is logged and the process exits non-zero before it listens.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from revscoring_server.model import RevscoringModel
from revscoring_server.scoring import ModelLoadError
from revscoring_server.services import UnknownService, find_service
from revscoring_server.workers import pool_from_env
from wikiserve.config import ServerSettings
from wikiserve.logs import configure_logging
from wikiserve.mediawiki import MediaWikiPool
from wikiserve.model_files import ModelFileError, resolve_model_file
from wikiserve.server import serve

logger = logging.getLogger("revscoring_server")

EXIT_BAD_CONFIG = 2


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
    try:
        settings = ServerSettings.from_env(env)
    except ValueError as error:
        raise SystemExit(f"Cannot start: {error}") from None
    if args.http_port:
        settings = dataclasses.replace(settings, http_port=args.http_port)
    configure_logging(settings.json_logs, settings.log_level)
    pool = MediaWikiPool(settings.mediawiki)
    workers = pool_from_env(env)  # extraction in worker processes; see workers.py
    try:
        models = [
            RevscoringModel(find_service(isvc), path, settings, pool, executor=workers)
            for isvc, path in _services(args, env)
        ]
    except (UnknownService, ModelFileError, ModelLoadError) as error:
        logger.error(f"Cannot start: {error}")
        return EXIT_BAD_CONFIG
    if workers is not None:
        workers.start()  # fork now: after the models loaded (shared), before the server starts threads
    try:
        serve(models, settings, on_shutdown=[pool.close])  # the pool is shared by all models
    finally:
        if workers is not None:
            workers.close()
    return 0


def _services(args: argparse.Namespace, env: Mapping[str, str]) -> list[tuple[str, Path]]:
    if args.models_dir:
        if not args.isvc:
            raise UnknownService("--models_dir needs at least one --isvc.")
        return [(isvc, args.models_dir / isvc / "model.bin") for isvc in args.isvc]
    isvc = args.model_name or env.get("INFERENCE_NAME")
    if not isvc:
        raise UnknownService("No inference service name: set INFERENCE_NAME (e.g. enwiki-damaging).")
    find_service(isvc)  # a bad name is reported before anything about the binary
    return [(isvc, resolve_model_file(env.get("MODEL_PATH")))]


if __name__ == "__main__":
    sys.exit(main())
