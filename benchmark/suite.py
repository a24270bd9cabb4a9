"""The scenarios of one target, each measured against a real server process and the replayed farm."""

from __future__ import annotations

import asyncio
import json
import random
import statistics
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from benchmark.loadgen import LoadResult, RequestSpec, run_load
from benchmark.procs import Child, Memory, free_port, start_child
from benchmark.record import Prepared
from benchmark.report import Check, ServiceReport
from benchmark.targets import HEAVY, ORDINARY, Target


@dataclass(frozen=True)
class BenchSettings:
    repo: Path
    state_dir: Path
    concurrencies: tuple[int, ...] = (1, 4, 8, 16, 32)
    run_s: float = 6.0
    warmup_s: float = 1.0
    heavy_concurrency: int = 8
    heavy_run_s: float = 15.0
    latency_ms: float = 50.0
    saturation_concurrency: int = 32
    memory_counts: tuple[int, ...] = (1_000, 10_000)
    soak_total: int = 20_000
    soak_targets: tuple[str, ...] = ("enwiki-damaging",)
    limit_s: float = 8.0
    cores: int = 2

    @property
    def log_dir(self) -> Path:
        return self.state_dir / "logs"


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


@dataclass
class Context:
    """A target's running pieces: the replay stand-in and the request mixes."""

    target: Target
    settings: BenchSettings
    replay: Child
    ordinary: list[RequestSpec]
    heavy_mix: list[RequestSpec]
    report: ServiceReport
    runs: dict[str, LoadResult] = field(default_factory=dict)

    @property
    def replay_url(self) -> str:
        return self.replay.url


def request_mixes(
    target: Target, prepared: Prepared, seed: int = 7
) -> tuple[list[RequestSpec], list[RequestSpec]]:
    """The ordinary mix (shuffled), and the same with every 10th request a heavy one."""
    ordinary = [RequestSpec(target.predict_path, c.encoded(), ORDINARY) for c in prepared.ordinary]
    random.Random(seed).shuffle(ordinary)
    heavy = [RequestSpec(target.predict_path, c.encoded(), HEAVY) for c in prepared.heavy]
    mixed: list[RequestSpec] = []
    if heavy:
        for block in range(len(ordinary)):
            mixed += [ordinary[(block * 9 + i) % len(ordinary)] for i in range(9)] + [
                heavy[block % len(heavy)]
            ]
    return ordinary, mixed


class ServerDied(RuntimeError):
    """The server under test exited during a run: a finding to report, not a benchmark bug."""


async def load(server: Child, *args: Any, **kwargs: Any) -> LoadResult:
    """run_load against `server`, failing with its last log lines when it died meanwhile."""
    result = await run_load(server.url, *args, **kwargs)
    if server.process.poll() is not None:
        raise ServerDied(
            f"{server.name} exited with {server.process.returncode}: "
            + " | ".join(server.log_tail(5).splitlines())[-500:]
        )
    return result


def start_replay(prepared: Prepared, settings: BenchSettings, name: str) -> Child:
    port = free_port()
    replay = start_child(
        f"replay-{name}",
        ["benchmark.replay", f"--recording={prepared.recording_path}", f"--port={port}"],
        {},
        settings.log_dir,
        cwd=settings.repo,
    )
    replay.url = f"http://127.0.0.1:{port}"
    replay.wait_ready(replay.url + "/__stats", timeout_s=60)
    return replay


def start_server(ctx: Context, cpus: set[int] | None = None, label: str = "") -> Child:
    port = free_port()
    target = ctx.target
    server = start_child(
        f"{target.name}{label}",
        target.server_args(port),
        target.server_env(ctx.replay_url, port),
        ctx.settings.log_dir,
        cwd=ctx.settings.repo,
        cpus=cpus,
    )
    server.url = f"http://127.0.0.1:{port}"
    server.wait_ready(server.url + target.ready_path)
    return server


async def set_latency(ctx: Context, ms: float) -> None:
    async with aiohttp.ClientSession() as session:
        async with session.post(ctx.replay_url + "/__latency", params={"ms": str(ms)}) as response:
            response.raise_for_status()


async def replay_stats(ctx: Context) -> dict:
    async with aiohttp.ClientSession() as session:
        async with session.get(ctx.replay_url + "/__stats") as response:
            return await response.json()


async def in_process_limit(ctx: Context, prepared: Prepared) -> dict:
    target = ctx.target
    spec = {
        "kind": target.kind,
        "isvc": target.name,
        "model_path": str(target.model_path),
        "wiki_url": ctx.replay_url,
        "host": target.domain,
        "ordinary": [c.body for c in prepared.ordinary],
        "heavy": [c.body for c in prepared.heavy],
    }
    argv = [
        sys.executable,
        "-m",
        "benchmark.limit",
        f"--spec={json.dumps(spec)}",
        f"--duration={ctx.settings.limit_s}",
        f"--processes={ctx.settings.cores}",
    ]
    say(f"  in-process limit: {ctx.settings.cores} processes x {ctx.settings.limit_s:g} s")
    done = await asyncio.to_thread(
        subprocess.run, argv, cwd=ctx.settings.repo, capture_output=True, text=True
    )
    if done.returncode != 0:
        raise RuntimeError(f"the in-process limit failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


async def memory_run(ctx: Context, server: Child, samples: dict[int, Memory]) -> None:
    """A fresh server's memory after 1,000 and 10,000 (soak: 20,000) requests at saturation concurrency."""
    settings = ctx.settings
    soak = ctx.target.name in settings.soak_targets
    counts = sorted({*settings.memory_counts, *((settings.soak_total,) if soak else ())})

    def sample(done: int) -> None:
        if done in counts and server.process.poll() is None:
            samples[done] = server.memory()

    name = "soak" if soak else "memory"
    say(f"  {name}: {counts[-1]} requests at concurrency {settings.saturation_concurrency}")
    result = await load(
        server,
        ctx.ordinary,
        settings.saturation_concurrency,
        total=counts[-1],
        name=name,
        on_completed=sample,
        progress_s=5.0,
    )
    ctx.runs[name] = result


async def sweep(ctx: Context, server: Child) -> None:
    settings = ctx.settings
    await load(server, ctx.ordinary, 8, duration_s=2.0, name="warm-up", progress_s=0)
    for concurrency in settings.concurrencies:
        result = await load(
            server,
            ctx.ordinary,
            concurrency,
            duration_s=settings.run_s,
            warmup_s=settings.warmup_s,
            name=f"c={concurrency}",
        )
        ctx.report.sweep.append(result)
        say(
            f"  c={concurrency}: {result.throughput:.1f} req/s, p50 {result.percentile_ms(50):.1f} ms, "
            f"p99 {result.percentile_ms(99):.1f} ms, {result.errors} errors"
        )
    ctx.report.distributions.update(
        {f"c={r.concurrency}": r.all_latencies() for r in ctx.report.sweep if r.concurrency in (1, 8, 32)}
    )


async def heavy_runs(ctx: Context, server: Child) -> None:
    """Ordinary requests alone, then with every 10th request a heavy one, at the same concurrency."""
    settings, c = ctx.settings, ctx.settings.heavy_concurrency
    for name, mix in (("ordinary only", ctx.ordinary), ("10% heavy", ctx.heavy_mix)):
        result = await load(
            server,
            mix,
            c,
            duration_s=settings.heavy_run_s,
            warmup_s=settings.warmup_s,
            name=f"{name} c={c}",
        )
        ctx.runs[name] = result
        ctx.report.distributions[f"ordinary, c={c}, {name}"] = result.latencies.get(ORDINARY, [])
        say(
            f"  {name} c={c}: ordinary p99 {result.percentile_ms(99, ORDINARY):.1f} ms, "
            f"heavy p50 {result.percentile_ms(50, HEAVY):.1f} ms, {result.throughput:.1f} req/s, "
            f"{result.errors} errors"
        )


async def latency_runs(ctx: Context, server: Child) -> None:
    settings, c = ctx.settings, ctx.settings.saturation_concurrency
    for ms in (0.0, settings.latency_ms):
        await set_latency(ctx, ms)
        result = await load(
            server,
            ctx.ordinary,
            c,
            duration_s=settings.run_s * 1.5,
            warmup_s=settings.warmup_s,
            name=f"+{ms:g} ms c={c}",
        )
        ctx.runs[f"latency {ms:g}"] = result
        say(
            f"  +{ms:g} ms MediaWiki latency, c={c}: {result.throughput:.1f} req/s, "
            f"p50 {result.percentile_ms(50):.1f} ms"
        )
    await set_latency(ctx, 0.0)


async def one_core_run(ctx: Context) -> None:
    server = await asyncio.to_thread(start_server, ctx, {0}, "-one-core")
    try:
        c = ctx.settings.saturation_concurrency
        await load(server, ctx.ordinary, 8, duration_s=2.0, name="warm-up", progress_s=0)
        result = await load(
            server,
            ctx.ordinary,
            c,
            duration_s=ctx.settings.run_s * 1.5,
            warmup_s=ctx.settings.warmup_s,
            name=f"one core c={c}",
        )
        ctx.runs["one core"] = result
        say(f"  held to one core, c={c}: {result.throughput:.1f} req/s")
    finally:
        server.stop()


def _ratio(a: float, b: float) -> float:
    return a / b if b else float("nan")


def checks(ctx: Context, limit: dict | None, memory: dict[int, Memory]) -> list[Check]:
    name, runs, settings = ctx.target.name, ctx.runs, ctx.settings
    saturation = max(
        (r for r in ctx.report.sweep if r.concurrency >= 8), key=lambda r: r.throughput, default=None
    )
    out: list[Check] = []
    if limit and saturation:
        out.append(
            Check(
                name,
                "1. throughput at saturation / in-process limit",
                _ratio(saturation.throughput, limit["throughput"]),
                0.9,
                detail=f"{saturation.throughput:.1f} (c={saturation.concurrency}) / "
                f"{limit['throughput']:.1f} req/s",
            )
        )
    if "10% heavy" in runs:
        base, mixed = runs["ordinary only"], runs["10% heavy"]
        out.append(
            Check(
                name,
                "2. ordinary p99 with 10% heavy / without",
                _ratio(mixed.percentile_ms(99, ORDINARY), base.percentile_ms(99, ORDINARY)),
                1.5,
                at_least=False,
                detail=f"{mixed.percentile_ms(99, ORDINARY):.0f} / {base.percentile_ms(99, ORDINARY):.0f} "
                f"ms at c={settings.heavy_concurrency}; heavy p50 {mixed.percentile_ms(50, HEAVY):.0f} ms",
            )
        )
    if "latency 0" in runs:
        slow, fast = runs[f"latency {settings.latency_ms:g}"], runs["latency 0"]
        out.append(
            Check(
                name,
                f"3. throughput with +{settings.latency_ms:g} ms MediaWiki latency / without",
                _ratio(slow.throughput, fast.throughput),
                0.9,
                detail=f"{slow.throughput:.1f} / {fast.throughput:.1f} req/s at "
                f"c={settings.saturation_concurrency}",
            )
        )
    if "one core" in runs and "latency 0" in runs:
        two, one = runs["latency 0"], runs["one core"]
        out.append(
            Check(
                name,
                "4. throughput on 2 cores / held to 1 core",
                _ratio(two.throughput, one.throughput),
                1.7,
                detail=f"{two.throughput:.1f} / {one.throughput:.1f} req/s at "
                f"c={settings.saturation_concurrency}",
            )
        )
    out += memory_checks(name, memory, runs)
    return out


def memory_checks(name: str, memory: dict[int, Memory], runs: dict[str, LoadResult]) -> list[Check]:
    if len(memory) < 2:
        return []
    counts = sorted(memory)
    first = memory[counts[0]]
    out = []
    for count in counts[1:]:
        out.append(
            Check(
                name,
                f"5. memory growth {counts[0]:,} -> {count:,} requests (PSS of the process tree)",
                _ratio(memory[count].pss_mb, first.pss_mb),
                1.10,
                at_least=False,
                detail=f"{first.pss_mb:.0f} -> {memory[count].pss_mb:.0f} MB",
            )
        )
    if "soak" in runs:
        soak = runs["soak"]
        out.append(
            Check(
                name,
                f"5. soak: errors in {soak.completed:,} requests at c={soak.concurrency}",
                float(soak.errors),
                0,
                at_least=False,
                detail="; ".join(soak.error_examples[:2]) or "none",
            )
        )
    return out


def memory_facts(memory: dict[int, Memory]) -> dict[str, str]:
    return {
        f"memory after {count:,} requests": f"PSS {m.pss_mb:.0f} MB over {m.processes} processes, "
        f"main process RSS {m.rss_mb:.0f} MB"
        for count, m in sorted(memory.items())
    }


async def bench_target(target: Target, prepared: Prepared, settings: BenchSettings) -> ServiceReport:
    """All scenarios for one target; the server is started fresh where start-up or memory is measured."""
    report = ServiceReport(f"{target.name} ({target.image} image)")
    replay = await asyncio.to_thread(start_replay, prepared, settings, target.name)
    ordinary, heavy_mix = request_mixes(target, prepared)
    ctx = Context(target, settings, replay, ordinary, heavy_mix, report)
    memory: dict[int, Memory] = {}
    limit: dict | None = None
    try:
        limit = await in_process_limit(ctx, prepared)
        report.limit_throughput = limit["throughput"]
        report.facts["in-process, one request (median)"] = _single_times(limit)
        say(f"  in-process limit: {limit['throughput']:.1f} req/s; one request: {_single_times(limit)}")
        await server_scenarios(ctx, memory)
        report.facts.update(memory_facts(memory))
        stats = await replay_stats(ctx)
        report.facts["MediaWiki stand-in"] = (
            f"{stats['hits']:,} answers replayed, {stats['misses']} not recorded"
        )
    except ServerDied as died:
        say(f"  {died}")
        report.facts.update(memory_facts(memory))
        report.checks.append(Check(target.name, "the server stays up", 0.0, 1.0, detail=str(died)))
    finally:
        replay.stop()
    report.checks = checks(ctx, limit, memory) + report.checks
    return report


async def server_scenarios(ctx: Context, memory: dict[int, Memory]) -> None:
    server = await asyncio.to_thread(start_server, ctx)
    ctx.report.facts["start-up to ready"] = f"{server.ready_s:.1f} s"
    try:
        await memory_run(ctx, server, memory)
        await sweep(ctx, server)
        if ctx.heavy_mix:
            await heavy_runs(ctx, server)
        await latency_runs(ctx, server)
    finally:
        server.stop()
    await one_core_run(ctx)


def _single_times(limit: dict) -> str:
    text = f"ordinary {limit['ordinary_ms_median']:.1f} ms"
    if limit.get("heavy_ms_median") is not None:
        text += f", heavy {limit['heavy_ms_median']:.0f} ms"
    return text


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")
