"""`make bench` = `python -m benchmark`: record (if needed), measure every target, write the results.

    python -m benchmark [--targets editquality,articlequality,outlink] [--quick] [--record] [--no-readme]
                        [--strict] [--only memory,heavy,latency,cores,thread,overload]

Results: `.state/bench/results/latest.md` and `latest.png` (plus time-stamped copies); the performance
section of `benchmark/README.md` gets the same table.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import sys
import time
from pathlib import Path

from benchmark.loadgen import RequestSpec, run_load
from benchmark.procs import free_port, start_child
from benchmark.record import Prepared, farm_endpoint, load_prepared, record_and_save
from benchmark.replay import _use_uvloop
from benchmark.report import RunReport, machine_facts, to_markdown, utc_now, write_results
from benchmark.suite import BenchSettings, bench_target, say
from benchmark.targets import Target, default_targets

REPO = Path(__file__).resolve().parent.parent


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmark", description=__doc__.splitlines()[0])
    parser.add_argument("--targets", default="editquality,articlequality,outlink")
    parser.add_argument("--quick", action="store_true", help="short runs, for trying the suite out")
    parser.add_argument("--record", action="store_true", help="record again even if recordings exist")
    parser.add_argument("--no-readme", action="store_true", help="do not update benchmark/README.md")
    parser.add_argument("--strict", action="store_true", help="exit 1 unless every target is met")
    parser.add_argument("--models-dir", type=Path, default=REPO / "models")
    parser.add_argument(
        "--only",
        default="",
        help="scenarios (memory,heavy,latency,cores,thread,overload); the sweep always runs",
    )
    return parser.parse_args(argv)


def make_settings(args: argparse.Namespace) -> BenchSettings:
    settings = BenchSettings(
        REPO,
        REPO / ".state" / "bench",
        cores=len(os.sched_getaffinity(0)),
        only=tuple(name.strip() for name in args.only.split(",") if name.strip()),
    )
    if args.quick:
        settings = dataclasses.replace(
            settings,
            concurrencies=(1, 8, 32),
            run_s=3.0,
            heavy_run_s=6.0,
            memory_counts=(200, 1000),
            soak_total=2000,
            limit_s=3.0,
            overload_s=10.0,
            flood_s=6.0,
        )
    return settings


async def generator_yardstick(settings: BenchSettings) -> str:
    """The load generator against a server that does nothing: its ceiling and CPU cost per request."""
    port = free_port()
    trivial = start_child("trivial", ["benchmark.trivial", f"--port={port}"], {}, settings.log_dir, cwd=REPO)
    try:
        await asyncio.to_thread(trivial.wait_ready, f"http://127.0.0.1:{port}/")
        result = await run_load(
            f"http://127.0.0.1:{port}",
            [RequestSpec("/v1/models/x:predict", b'{"rev_id": 1}')],
            32,
            duration_s=3.0,
            warmup_s=0.5,
            progress_s=0,
        )
    finally:
        trivial.stop()
    cpu_us = result.generator_cpu_s / max(1, result.completed) * 1e6
    return f"{result.throughput:,.0f} req/s against a trivial server at c=32, {cpu_us:.0f} µs CPU per request"


async def prepare_all(targets: list[Target], settings: BenchSettings, force: bool) -> dict[str, Prepared]:
    prepared = (
        {} if force else {t.name: p for t in targets if (p := load_prepared(settings.state_dir, t, REPO))}
    )
    missing = [t for t in targets if t.name not in prepared]
    if missing:
        say(f"recording MediaWiki answers for {', '.join(t.name for t in missing)}")
        with farm_endpoint() as farm_url:
            for target in missing:
                prepared[target.name] = await record_and_save(target, farm_url, settings.state_dir, REPO)
    return prepared


async def run(args: argparse.Namespace) -> RunReport:
    settings = make_settings(args)
    started = time.monotonic()
    report = RunReport(utc_now(), facts=machine_facts(REPO))
    chosen = [name.strip() for name in args.targets.split(",") if name.strip()]
    available = default_targets(REPO, args.models_dir)
    targets = [available[name] for name in chosen]
    report.facts["load generator"] = await generator_yardstick(settings)
    say(f"load generator: {report.facts['load generator']}")
    prepared = await prepare_all(targets, settings, args.record)
    for target in targets:
        say(f"== {target.name} ({target.image} image)")
        report.services.append(await bench_target(target, prepared[target.name], settings))
    report.duration_s = time.monotonic() - started
    return report


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    _use_uvloop()
    report = asyncio.run(run(args))
    settings = make_settings(args)
    table, plot = write_results(
        report, settings.state_dir / "results", None if args.no_readme else REPO / "benchmark" / "README.md"
    )
    print(to_markdown(report))
    say(f"results: {table}" + (f", plot: {plot}" if plot else " (no plot: matplotlib is not installed)"))
    met = all(check.met for service in report.services for check in service.checks)
    return 0 if met or not args.strict else 1


if __name__ == "__main__":
    sys.exit(main())
