"""`make run`: every inference service of the seed table in one process on http://127.0.0.1:8080.

Reads MediaWiki at `WIKI_URL` when set; otherwise starts the local farm and stops it again on exit.
KServe's V2 gRPC protocol is served on `GRPC_PORT` (default 8081, as in the outlink predictor's image;
0 turns it off).
ORES's API (`/v3/scores/`) is served beside the KServe routes for every wiki. The score cache is in-process
unless `REDIS_URL` is set; `REDIS=1` (`make run REDIS=1`) starts a local redis-server for it.
Ctrl-C or SIGTERM drains in-flight requests, stops the server, then the farm.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from dataclasses import replace
from pathlib import Path

from dev.seed_table import OUTLINK_ISVC, REPO_ROOT, load_rows
from revscoring_server.executor import one_thread
from revscoring_server.ores.local import ores_router
from revscoring_server.scorer import Scorers
from revscoring_server.workers import in_flight_limit, pool_from_values
from wikiserve.admission import Admission
from wikiserve.config import ServerSettings, read_settings_or_exit
from wikiserve.mediawiki import MediaWikiPool
from wikiserve.score_cache import build_score_cache
from wikiserve.server import serve

logger = logging.getLogger("dev.run_all")
DEFAULT_GRPC_PORT = 8081  # KServe's


def build_models(
    settings: ServerSettings,
    models_dir: Path,
    pool: MediaWikiPool,
    scorers: Scorers,
) -> list:
    """One model object per row of the seed table, loading each binary from `models_dir/<isvc>/model.bin`."""
    from outlink_server.predictor import build_model as build_outlink
    from revscoring_server.model import build_model as build_revscoring

    models = []
    rows = load_rows()
    for number, row in enumerate(rows, start=1):
        path = models_dir / row.isvc / "model.bin"
        print(f"[{number}/{len(rows)}] loading {row.isvc}", file=sys.stderr, flush=True)
        if row.isvc == OUTLINK_ISVC:
            models.append(build_outlink(path, settings, pool))
        else:
            models.append(build_revscoring(row.isvc, path, settings, pool, scorers))
    return models


def main() -> None:
    values = read_settings_or_exit(os.environ, None)  # both families' variables: it serves both
    settings = ServerSettings.from_values(values)
    if values["GRPC_PORT"] is None:
        settings = replace(settings, grpc_port=DEFAULT_GRPC_PORT)
    models_dir = Path(os.environ.get("MODELS_DIR", REPO_ROOT / "models"))
    with contextlib.ExitStack() as stack:
        if not settings.mediawiki.url:
            from dev.mediawiki_farm import running_farm

            farm = stack.enter_context(running_farm())
            # One endpoint for every wiki; the Host header (the wiki's domain) picks the wiki.
            settings = replace(settings, mediawiki=replace(settings.mediawiki, url=farm.url, host=None))
        if os.environ.get("REDIS") == "1" and not settings.score_cache.redis_url:
            from dev.redis_server import running_redis

            redis = stack.enter_context(running_redis())
            print(f"score cache: Redis at {redis.url}", file=sys.stderr, flush=True)
            settings = replace(settings, score_cache=replace(settings.score_cache, redis_url=redis.url))
        pool = MediaWikiPool(settings.mediawiki)
        # Feature extraction runs in worker processes, as in the images (it is not thread-safe).
        workers = pool_from_values(values)
        cache = build_score_cache(settings.score_cache)
        # One scorer per wiki, behind the KServe routes and ORES's API alike.
        admission = Admission(in_flight_limit(values))  # as the image: revisions in flight, every route
        scorers = Scorers(workers or one_thread(), cache, values["MISSING_REVISION_TTL_S"], admission)
        models = build_models(settings, models_dir, pool, scorers)
        if workers is not None:
            workers.start()  # forked after every model loaded: the workers share them
            stack.callback(workers.close)
        closers = [pool.close] + ([cache.close] if cache is not None else [])
        # ORES's API (/v3/scores/) for every wiki, beside the KServe routes.
        serve(models, settings, on_shutdown=closers, routers=[ores_router(scorers)])


if __name__ == "__main__":
    main()
