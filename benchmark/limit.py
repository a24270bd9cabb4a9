"""The in-process limit of a target, run in its own process: `python -m benchmark.limit --target-json ...`.

Fetches the MediaWiki data of the mix from the replay stand-in once, with the server's own fetch code,
then runs the server's own work function (extraction + scoring, or the fastText prediction) in a plain
loop in one forked process per core. Prints one JSON object: the throughput, and the single-process time
of each kind of request.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmark.inprocess import measure_limit


def revscoring_work(
    isvc: str, model_path: str, wiki_url: str, host: str, bodies: list[dict]
) -> tuple[Callable[[Any], Any], list[Any]]:
    """score_revision_models and one RevisionJob per body, fetched like the server fetches one revision."""
    from revscoring_server.model import fetch_plan
    from revscoring_server.scoring import RevisionJob, load_model, score_revision_models
    from revscoring_server.services import find_service
    from wikiserve.config import MediaWikiSettings
    from wikiserve.mediawiki import MediaWikiPool

    service = find_service(isvc)
    model = load_model(model_path)  # before the fork: the workers share it, as a server's would
    plan = fetch_plan(model.features, service.type, service.dbname, model_path)

    async def fetch_all() -> list[Any]:
        from revscoring_server.fetch import fetch_dependents, fetch_revisions

        pool = MediaWikiPool(MediaWikiSettings(url=wiki_url, host=host))
        docs = []
        try:
            client = pool.client(service.domain)
            for body in bodies:
                fetched = (await fetch_revisions(client, service.dbname, [body["rev_id"]]))[body["rev_id"]]
                await fetch_dependents(client, [fetched], plan)
                docs.append(fetched.docs)
        finally:
            await pool.close()
        return [RevisionJob(((service.type.name, model_path),), d.rev_id, d) for d in docs]

    return score_revision_models, asyncio.run(fetch_all())


def outlink_work(
    model_path: str, wiki_url: str, bodies: list[dict]
) -> tuple[Callable[[Any], Any], list[Any]]:
    """The predictor's fastText call, on the Q-ids of each body's page fetched like the predictor does."""
    from outlink_server.fasttext_model import TopicModel
    from outlink_server.languages import wikipedias
    from outlink_server.outlinks import fetch_outlinks
    from outlink_server.request import parse_request
    from outlink_server.settings import OutlinkSettings
    from wikiserve.config import MediaWikiSettings
    from wikiserve.mediawiki import MediaWikiPool

    model = TopicModel(Path(model_path))
    wikis = wikipedias()

    async def fetch_all() -> list[str]:
        pool = MediaWikiPool(MediaWikiSettings(url=wiki_url))
        features = []
        try:
            for body in bodies:
                request = parse_request(body, wikis)
                qids = await fetch_outlinks(pool.client(request.domain), request, OutlinkSettings())
                features.append(" ".join(qids))
        finally:
            await pool.close()
        return features

    return model.scores, asyncio.run(fetch_all())


def single_times_ms(work: Callable[[Any], Any], payloads: list[Any], repeat: int = 1) -> list[float]:
    times = []
    for payload in payloads:
        for _ in range(repeat):
            started = time.perf_counter()
            work(payload)
            times.append((time.perf_counter() - started) * 1000.0)
    return times


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmark.limit")
    parser.add_argument(
        "--spec",
        required=True,
        help="JSON: kind, isvc, model_path, wiki_url, host, ordinary (bodies), heavy (bodies)",
    )
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--processes", type=int, default=len(os.sched_getaffinity(0)))
    args = parser.parse_args(argv)
    spec = json.loads(args.spec)

    def make(bodies: list[dict]) -> tuple[Callable[[Any], Any], list[Any]]:
        if spec["kind"] == "revscoring":
            return revscoring_work(spec["isvc"], spec["model_path"], spec["wiki_url"], spec["host"], bodies)
        return outlink_work(spec["model_path"], spec["wiki_url"], bodies)

    work, ordinary = make(spec["ordinary"])
    _, heavy = make(spec["heavy"]) if spec.get("heavy") else (work, [])
    single_times_ms(work, ordinary[:3])  # warm lazy caches before timing
    ordinary_ms = single_times_ms(work, ordinary)
    heavy_ms = single_times_ms(work, heavy)
    limit = measure_limit(work, ordinary, processes=args.processes, duration_s=args.duration)
    # One process as well: how far this machine, as busy as it is right now, lets any work scale.
    alone = measure_limit(work, ordinary, processes=1, duration_s=args.duration / 2)
    result = {
        "throughput": limit.throughput,
        "one_process": alone.throughput,
        "processes": limit.processes,
        "ordinary_ms_median": statistics.median(ordinary_ms),
        "heavy_ms_median": statistics.median(heavy_ms) if heavy_ms else None,
    }
    if spec["kind"] == "outlink":  # the Q-ids, for the predictor's `features_str` requests
        result["features"] = ordinary
    print(json.dumps(result))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
