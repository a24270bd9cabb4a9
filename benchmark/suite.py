"""The scenarios of one target, each measured against a real server process and the replayed farm."""

from __future__ import annotations

import asyncio
import json
import random
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from benchmark.loadgen import LoadResult, RequestSpec, combine, percentile, run_load
from benchmark.procs import Child, Memory, free_port, start_child, tree_cpu
from benchmark.record import Prepared
from benchmark.report import Check, ServiceReport
from benchmark.targets import HEAVY, ORDINARY, Target


@dataclass(frozen=True)
class BenchSettings:
    repo: Path
    state_dir: Path
    concurrencies: tuple[int, ...] = (1, 4, 8, 16, 32)
    run_s: float = 5.0
    warmup_s: float = 1.0
    heavy_concurrency: int = 8
    heavy_run_s: float = 12.0
    rounds: int = 3  # A/B comparisons alternate this many times
    heavy_rounds: int = 2  # heavy runs are long (clients wait on queued heavy requests at the end)
    latency_ms: float = 50.0
    saturation_concurrency: int = 32
    memory_counts: tuple[int, ...] = (1_000, 10_000)
    soak_total: int = 20_000
    soak_targets: tuple[str, ...] = ("enwiki-damaging",)
    limit_s: float = 8.0
    cores: int = 2
    overload_factor: int = 4  # overload: this many times the concurrency where throughput saturates
    overload_s: float = 60.0
    flood_concurrency: int = 32  # heavy-revision flood: clients sending only >= 500 KB revisions
    flood_s: float = 20.0
    only: tuple[str, ...] = ()  # scenario names to run (empty: all); the sweep always runs

    @property
    def log_dir(self) -> Path:
        return self.state_dir / "logs"

    @property
    def latency_concurrency(self) -> int:
        """Where the +latency comparison runs: twice the saturation concurrency (`latency_runs` says why)."""
        return 2 * self.saturation_concurrency


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
    mediawiki_mix: list[RequestSpec]  # requests that make the server call MediaWiki
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
            mixed += [ordinary[(block * 9 + i) % len(ordinary)] for i in range(9)]
            mixed.append(heavy[block % len(heavy)])
    return ordinary, mixed


def features_mix(target: Target, prepared: Prepared, features: list[str]) -> list[RequestSpec]:
    """Outlink: the same pages with their Q-ids given, as the transformer calls the predictor."""
    bodies = [dict(c.body, features_str=f) for c, f in zip(prepared.ordinary, features, strict=True) if f]
    specs = [RequestSpec(target.predict_path, json.dumps(b, sort_keys=True).encode()) for b in bodies]
    random.Random(7).shuffle(specs)
    return specs


class ServerDied(RuntimeError):
    """The server under test exited during a run: a finding to report, not a benchmark bug."""


async def load(server: Child, *args: Any, **kwargs: Any) -> LoadResult:
    """run_load against `server`, failing with its last log lines when it died meanwhile."""
    result = await run_load(server.url, *args, **kwargs)
    if server.process.poll() is not None:
        tail = " | ".join(server.log_tail(5).splitlines())[-500:]
        raise ServerDied(f"{server.name} exited with {server.process.returncode}: {tail}")
    return result


def start_replay(prepared: Prepared, settings: BenchSettings, name: str) -> Child:
    port = free_port()
    argv = ["benchmark.replay", f"--recording={prepared.recording_path}", f"--port={port}"]
    replay = start_child(f"replay-{name}", argv, {}, settings.log_dir, cwd=settings.repo)
    replay.url = f"http://127.0.0.1:{port}"
    replay.wait_ready(replay.url + "/__stats", timeout_s=60)
    return replay


def start_server(
    ctx: Context, cpus: set[int] | None = None, label: str = "", extra_env: dict[str, str] | None = None
) -> Child:
    port = free_port()
    target = ctx.target
    env = {**target.server_env(ctx.replay_url, port), **(extra_env or {})}
    server = start_child(
        f"{target.name}{label}",
        target.server_args(port),
        env,
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
    target, settings = ctx.target, ctx.settings
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
        f"--duration={settings.limit_s}",
        f"--processes={settings.cores}",
    ]
    say(f"  in-process limit: {settings.cores} processes x {settings.limit_s:g} s")
    done = await asyncio.to_thread(subprocess.run, argv, cwd=settings.repo, capture_output=True, text=True)
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
    ctx.runs[name] = await load(
        server,
        ctx.ordinary,
        settings.saturation_concurrency,
        total=counts[-1],
        name=name,
        on_completed=sample,
        progress_s=5.0,
    )


async def sweep(ctx: Context, server: Child) -> None:
    settings = ctx.settings
    for concurrency in settings.concurrencies:
        cpu_before = tree_cpu(server.process.pid), tree_cpu(ctx.replay.process.pid)
        result = await load(
            server,
            ctx.ordinary,
            concurrency,
            duration_s=settings.run_s,
            warmup_s=settings.warmup_s,
            name=f"c={concurrency}",
        )
        ctx.report.sweep.append(result)
        if concurrency == settings.saturation_concurrency:
            cpu_after = tree_cpu(server.process.pid), tree_cpu(ctx.replay.process.pid)
            ctx.report.facts["CPU per request at saturation"] = cpu_per_request(
                cpu_before, cpu_after, result, settings.warmup_s
            )
        say(
            f"  c={concurrency}: {result.throughput:.1f} req/s, p50 {result.percentile_ms(50):.1f} ms, "
            f"p99 {result.percentile_ms(99):.1f} ms, {result.errors} errors"
        )
    ctx.report.distributions.update(
        {f"c={r.concurrency}": r.all_latencies() for r in ctx.report.sweep if r.concurrency in (1, 8, 32)}
    )


Variant = tuple[str, Callable[[], Awaitable[LoadResult]]]


async def alternate(ctx: Context, variants: list[Variant], times: int | None = None) -> dict[str, LoadResult]:
    """Runs the variants in turn, `times` times, so that a busy moment of the machine hits all alike."""
    rounds: dict[str, list[LoadResult]] = {name: [] for name, _ in variants}
    for number in range(times or ctx.settings.rounds):
        for name, run in variants:
            result = await run()
            rounds[name].append(result)
            say(
                f"  round {number + 1} {name}: {result.throughput:.1f} req/s, "
                f"p99 {result.percentile_ms(99, ORDINARY):.1f} ms, {result.errors} errors"
            )
    combined = {name: combine(results) for name, results in rounds.items()}
    ctx.runs.update(combined)
    return combined


async def heavy_runs(ctx: Context, server: Child) -> None:
    """Ordinary requests alone, then with every 10th request a heavy one, at the same concurrency."""
    settings, c = ctx.settings, ctx.settings.heavy_concurrency

    def variant(name: str, mix: list[RequestSpec], seconds: float) -> Variant:
        return name, lambda: load(
            server,
            mix,
            c,
            duration_s=seconds,
            warmup_s=settings.warmup_s,
            name=f"{name} c={c}",
            progress_s=4.0,
        )

    combined = await alternate(
        ctx,
        [
            variant("ordinary only", ctx.ordinary, settings.run_s),
            variant("10% heavy", ctx.heavy_mix, settings.heavy_run_s),
        ],
        settings.heavy_rounds,
    )
    for name, result in combined.items():
        ctx.report.distributions[f"ordinary requests, c={c}, {name}"] = result.latencies.get(ORDINARY, [])


async def latency_runs(ctx: Context, server: Child) -> None:
    """Without and with added MediaWiki latency, alternating, at twice the saturation concurrency; then the
    latency at the saturation concurrency alone.

    Twice, because Little's law caps what closed-loop clients can get: c clients whose requests each wait
    `calls x latency` for MediaWiki get at most c / (calls x latency) answers a second. For enwiki-damaging
    (two calls) at c=32 that is 320 req/s, below what the server does at saturation: the comparison would
    measure the clients, not the server. At c=64 the cap is 640 req/s."""
    settings, saturation = ctx.settings, ctx.settings.saturation_concurrency
    c = settings.latency_concurrency

    def variant(ms: float, concurrency: int = c) -> Variant:
        async def run() -> LoadResult:
            await set_latency(ctx, ms)
            return await load(
                server,
                ctx.mediawiki_mix,
                concurrency,
                duration_s=settings.run_s,
                warmup_s=settings.warmup_s,
                name=f"+{ms:g} ms c={concurrency}",
                progress_s=0,
            )

        return f"latency {ms:g}", run

    try:
        await alternate(ctx, [variant(0.0), variant(settings.latency_ms)])
        capped = await variant(settings.latency_ms, saturation)[1]()
        ctx.runs[f"latency {settings.latency_ms:g} c={saturation}"] = capped
        ctx.report.facts[f"+{settings.latency_ms:g} ms MediaWiki latency at c={saturation}"] = (
            f"{capped.throughput:.1f} req/s, p50 {capped.percentile_ms(50):.0f} ms (Little's law caps it at "
            f"{saturation} / (MediaWiki calls per request x {settings.latency_ms:g} ms))"
        )
    finally:
        await set_latency(ctx, 0.0)


def ordinary_variant(ctx: Context, key: str, child: Child, concurrency: int, label: str) -> Variant:
    """A run of the ordinary mix against `child` at `concurrency`, for the same settings' duration."""
    settings = ctx.settings
    return key, lambda: load(
        child,
        ctx.ordinary,
        concurrency,
        duration_s=settings.run_s,
        warmup_s=settings.warmup_s,
        name=label,
        progress_s=0,
    )


async def cores_runs(ctx: Context, server: Child) -> None:
    """The same server on both cores and held to core 0, at saturation, alternating."""
    c = ctx.settings.saturation_concurrency
    pinned = await asyncio.to_thread(start_server, ctx, {0}, "-one-core")
    try:
        await load(pinned, ctx.ordinary, 8, duration_s=2.0, name="warm-up", progress_s=0)

        await alternate(
            ctx,
            [
                ordinary_variant(ctx, "two cores", server, c, f"two cores c={c}"),
                ordinary_variant(ctx, "one core", pinned, c, f"one core c={c}"),
            ],
        )
    finally:
        pinned.stop()


async def thread_runs(ctx: Context, server: Child) -> None:
    """The server against one that extracts in a thread of its own process (EXTRACTION_WORKERS=0, scoring as
    in its event loop, without the hop to a worker): at concurrency 1 (latency) and at saturation."""
    settings = ctx.settings
    in_thread = await asyncio.to_thread(start_server, ctx, None, "-thread", {"EXTRACTION_WORKERS": "0"})
    try:
        await load(in_thread, ctx.ordinary, 8, duration_s=2.0, name="warm-up", progress_s=0)

        for c in (1, settings.saturation_concurrency):
            await alternate(
                ctx,
                [
                    ordinary_variant(ctx, f"workers c={c}", server, c, f"workers c={c}"),
                    ordinary_variant(ctx, f"thread c={c}", in_thread, c, f"thread c={c}"),
                ],
            )
    finally:
        in_thread.stop()


def cpu_per_request(
    before: tuple[tuple[float, float], tuple[float, float]],
    after: tuple[tuple[float, float], tuple[float, float]],
    result: LoadResult,
    warmup_s: float,
) -> str:
    """Where the CPU of one request goes: server process, its workers, the MediaWiki stand-in and the load
    generator. The warm-up's requests used CPU too, so they are counted (estimated from the rate)."""
    total = max(1.0, result.completed + result.throughput * warmup_s)

    def per_request(seconds: float) -> float:
        return seconds / total * 1000.0

    (server_before, replay_before), (server_after, replay_after) = before, after
    main_ms = per_request(server_after[0] - server_before[0])
    workers_ms = per_request(server_after[1] - server_before[1])
    replay_ms = per_request(replay_after[0] - replay_before[0])
    generator_ms = result.generator_cpu_s / max(1, result.completed) * 1000.0
    return (
        f"server process {main_ms:.2f} ms, worker processes {workers_ms:.2f} ms, MediaWiki stand-in "
        f"{replay_ms:.2f} ms, load generator {generator_ms:.2f} ms"
    )


def _machine_scaling(limit: dict | None) -> str:
    """The in-process loop's own 2-process / 1-process ratio in the same run: what the machine allowed."""
    if not limit or not limit.get("one_process"):
        return ""
    return f"; in-process loop, 2 processes / 1: {limit['throughput'] / limit['one_process']:.2f}"


def _ratio(a: float, b: float) -> float:
    return a / b if b else float("nan")


def checks(ctx: Context, limit: dict | None, memory: dict[int, Memory]) -> list[Check]:
    name, runs, settings = ctx.target.name, ctx.runs, ctx.settings
    saturation = max(
        (r for r in ctx.report.sweep if r.concurrency >= 8), key=lambda r: r.throughput, default=None
    )
    out: list[Check] = []
    if limit and saturation and ctx.target.kind == "outlink":
        out.append(
            Check(
                name,
                "6. outlink predictor throughput given features_str (req/s)",
                saturation.throughput,
                500,
                detail=f"c={saturation.concurrency}",
            )
        )
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
                f"c={settings.latency_concurrency}",
            )
        )
    if "one core" in runs:
        two, one = runs["two cores"], runs["one core"]
        out.append(
            Check(
                name,
                "4. throughput on 2 cores / held to 1 core",
                _ratio(two.throughput, one.throughput),
                1.7,
                detail=f"{two.throughput:.1f} / {one.throughput:.1f} req/s at "
                f"c={settings.saturation_concurrency}" + _machine_scaling(limit),
            )
        )
    if "thread c=1" in runs:
        out.append(thread_check(name, runs, settings.saturation_concurrency))
    out += memory_checks(name, memory, runs)
    return out


def thread_check(name: str, runs: dict[str, LoadResult], c: int) -> Check:
    """The hop to a worker process must not cost a lone request: p50 at c=1 against a thread server."""
    workers = runs["workers c=1"].percentile_ms(50, ORDINARY)
    thread = runs["thread c=1"].percentile_ms(50, ORDINARY)
    saturated = f"{runs[f'workers c={c}'].throughput:.1f} / {runs[f'thread c={c}'].throughput:.1f} req/s"
    return Check(
        name,
        "8. p50 at c=1 minus that of a server extracting in a thread (ms)",
        workers - thread,
        0.3,
        at_least=False,
        detail=f"{workers:.2f} - {thread:.2f} ms; at c={c}: {saturated}",
    )


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
    ctx = Context(target, settings, replay, ordinary, heavy_mix, ordinary, report)
    memory: dict[int, Memory] = {}
    limit: dict | None = None
    try:
        first = await in_process_limit(ctx, prepared)
        if target.kind == "outlink":  # the predictor behind the transformer: Q-ids given, no MediaWiki
            ctx.ordinary = features_mix(target, prepared, first["features"])
        await server_scenarios(ctx, memory)
        second = await in_process_limit(ctx, prepared)  # before and after: the machine's mood changes
        limit = dict(
            first,
            throughput=(first["throughput"] + second["throughput"]) / 2,
            one_process=(first["one_process"] + second["one_process"]) / 2,
        )
        report.limit_throughput = limit["throughput"]
        report.facts["in-process limit"] = (
            f"{first['throughput']:.1f} req/s before the server runs, "
            f"{second['throughput']:.1f} after; mean {limit['throughput']:.1f}; one process alone "
            f"{limit['one_process']:.1f}"
        )
        report.facts["in-process, one request (median)"] = _single_times(limit)
        stats = await replay_stats(ctx)
        report.facts["MediaWiki stand-in"] = (
            f"{stats['hits']:,} answers replayed, {stats['misses']} not recorded"
        )
    except ServerDied as died:
        say(f"  {died}")
        report.checks.append(Check(target.name, "the server stays up", 0.0, 1.0, detail=str(died)))
    finally:
        replay.stop()
    report.facts.update(memory_facts(memory))
    report.checks = checks(ctx, limit, memory) + report.checks
    return report


async def server_scenarios(ctx: Context, memory: dict[int, Memory]) -> None:
    server = await asyncio.to_thread(start_server, ctx)
    ctx.report.facts["start-up to ready"] = f"{server.ready_s:.1f} s"
    only = ctx.settings.only

    def chosen(name: str) -> bool:
        return not only or name in only

    try:
        if chosen("memory"):
            await memory_run(ctx, server, memory)
        await sweep(ctx, server)
        if ctx.heavy_mix and chosen("heavy"):
            await heavy_runs(ctx, server)
        if chosen("latency"):
            await latency_runs(ctx, server)
        if chosen("cores"):
            await cores_runs(ctx, server)
        if ctx.target.kind != "outlink" and chosen("thread"):
            await thread_runs(ctx, server)
    finally:
        server.stop()
    if ctx.target.kind == "revscoring" and chosen("overload"):
        await overload_scenario(ctx)


async def overload_scenario(ctx: Context) -> None:
    """A server without the score cache (every request extracts: the overload is of the workers, not of
    cache hits), its own saturation found by a sweep, then the overload and the heavy flood."""
    settings = ctx.settings
    # The image's admission bound (MAX_IN_FLIGHT unset: its default), which the other scenarios turn off.
    server = await asyncio.to_thread(start_server, ctx, None, "-overload", {"MAX_IN_FLIGHT": ""})
    try:
        sweep_runs = []
        for concurrency in (c for c in settings.concurrencies if c >= 8):
            result = await load(
                server, ctx.ordinary, concurrency, duration_s=settings.run_s, warmup_s=settings.warmup_s,
                name=f"no cache c={concurrency}", progress_s=0,
            )
            sweep_runs.append(result)
            say(
                f"  no cache c={concurrency}: {result.throughput:.1f} req/s, "
                f"p99 {result.percentile_ms(99):.1f} ms, statuses {dict(sorted(result.statuses.items()))}"
            )
        # Saturation is measured on answered requests, below the admission bound (no 503 in the run).
        unrefused = [r for r in sweep_runs if not r.statuses.get(503)] or sweep_runs[:1]
        saturation = max(unrefused, key=lambda r: r.throughput)
        ctx.report.facts["saturation without the score cache"] = (
            f"c={saturation.concurrency}: {saturation.throughput:.1f} req/s, p50 "
            f"{saturation.percentile_ms(50):.0f} ms, p99 {saturation.percentile_ms(99):.0f} ms"
        )
        await overload_runs(ctx, server, saturation)
        await flood_run(ctx, server, sweep_runs[0])
    finally:
        server.stop()


async def overload_runs(ctx: Context, server: Child, saturation: LoadResult) -> None:
    """Issue 18 §3: `overload_factor` x the saturating concurrency, with health probes throughout; twice:
    clients that wait the 503's Retry-After before retrying (as well-behaved ones do), and clients that
    retry at once (the worst case: every refused client comes straight back)."""
    c = ctx.settings.overload_factor * saturation.concurrency
    say(f"  overload: c={c} ({ctx.settings.overload_factor} x c={saturation.concurrency})")
    for backs_off, label in ((True, "clients wait Retry-After"), (False, "clients retry at once")):
        await _overload_run(ctx, server, saturation, c, backs_off, label)


async def _overload_run(
    ctx: Context, server: Child, saturation: LoadResult, c: int, backs_off: bool, label: str
) -> None:
    settings, report, name = ctx.settings, ctx.report, ctx.target.name
    start_memory = server.memory()
    async with HealthProbe(server.url + ctx.target.ready_path) as health:
        result = await load(
            server, ctx.ordinary, c, duration_s=settings.overload_s, warmup_s=2.0,
            name=f"overload c={c}, {label}", progress_s=10.0, backs_off=backs_off,
        )
    end_memory = server.memory()
    ctx.runs[f"overload, {label}"] = result
    other_5xx = sum(n for status, n in result.statuses.items() if status >= 500 and status != 503)
    other = {status: n for status, n in result.statuses.items() if status not in (200, 503)}
    sat_p99, admitted_p99 = saturation.percentile_ms(99), result.percentile_ms(99, ORDINARY)
    refused_p99 = percentile(result.refused, 99) * 1000.0
    report.facts[f"overload, {label}"] = (
        f"c={c}, {settings.overload_s:g} s: {result.statuses.get(200, 0):,} admitted "
        f"({result.statuses.get(200, 0) / settings.overload_s:.1f}/s), "
        f"{result.statuses.get(503, 0):,} refused (503); other statuses {other or 'none'}; "
        f"admitted p50/p99 {result.percentile_ms(50, ORDINARY):.0f}/{admitted_p99:.0f} ms; refused p50/p99 "
        f"{percentile(result.refused, 50) * 1000:.1f}/{refused_p99:.1f} ms; health probes {health.summary()}"
    )
    not_refusals = "; ".join(e for e in result.error_examples if not e.startswith("HTTP 503"))[:300]
    growth = _ratio(end_memory.pss_mb, start_memory.pss_mb)
    report.checks += [
        Check(name, f"7. overload ({label}): admitted p99 / p99 at saturation", _ratio(admitted_p99, sat_p99),
              2.0, at_least=False,
              detail=f"{admitted_p99:.0f} / {sat_p99:.0f} ms (c={saturation.concurrency})"),
        Check(name, f"7. overload ({label}): refused (503) p99, ms", refused_p99, 50.0, at_least=False,
              detail=f"{len(result.refused):,} refused"),
        Check(name, f"7. overload ({label}): other 5xx answers", float(other_5xx), 0, at_least=False,
              detail=not_refusals or "none"),
        Check(name, f"7. overload ({label}): memory after / before (PSS)", growth, 1.10, at_least=False,
              detail=f"{start_memory.pss_mb:.0f} -> {end_memory.pss_mb:.0f} MB"),
        Check(name, f"7. overload ({label}): health probes failed", float(health.failed), 0, at_least=False,
              detail=health.summary()),
    ]


async def flood_run(ctx: Context, server: Child, base: LoadResult) -> None:
    """Clients sending only heavy revisions, while a few send ordinary ones: the ordinary ones are served.
    `base`: ordinary requests alone, at the ordinary clients' concurrency. Twice, as the overload: heavy
    clients that wait Retry-After, then heavy clients that retry at once."""
    if any(spec.label == HEAVY for spec in ctx.heavy_mix):
        for backs_off, label in ((True, "flood waits Retry-After"), (False, "flood retries at once")):
            await _flood_run(ctx, server, base, backs_off, label)


async def _flood_run(ctx: Context, server: Child, base: LoadResult, backs_off: bool, label: str) -> None:
    settings, name = ctx.settings, ctx.target.name
    heavy = [spec for spec in ctx.heavy_mix if spec.label == HEAVY]
    ordinary_c = base.concurrency
    say(f"  heavy flood: c={settings.flood_concurrency} heavy-only ({label}), with c={ordinary_c} ordinary")
    async with HealthProbe(server.url + ctx.target.ready_path) as health:
        flood, ordinary = await asyncio.gather(
            load(server, heavy, settings.flood_concurrency, duration_s=settings.flood_s, warmup_s=2.0,
                 name="flood", progress_s=0, backs_off=backs_off),
            load(server, ctx.ordinary, ordinary_c, duration_s=settings.flood_s, warmup_s=2.0,
                 name="ordinary during flood", progress_s=5.0),
        )
    served = ordinary.statuses.get(200, 0) / settings.flood_s
    ctx.report.facts[f"heavy flood, {label}"] = (
        f"heavy c={settings.flood_concurrency}: statuses {dict(sorted(flood.statuses.items()))}; ordinary "
        f"c={ordinary_c}: statuses {dict(sorted(ordinary.statuses.items()))}, {served:.1f} served/s, p99 "
        f"{ordinary.percentile_ms(99, ORDINARY):.0f} ms; health probes {health.summary()}; heavy answers "
        f"e.g. {flood.error_examples[:1] or 'none'}"
    )
    ctx.report.checks.append(
        Check(name, f"7. heavy flood ({label}): ordinary served / served alone (c={ordinary_c})",
              _ratio(served, base.throughput), 0.25,
              detail=f"{served:.1f} / {base.throughput:.1f} req/s; health {health.summary()}")
    )


class HealthProbe:
    """Asks the readiness route every `interval_s` while a run goes on; counts failures and the slowest."""

    def __init__(self, url: str, interval_s: float = 0.5, timeout_s: float = 2.0) -> None:
        self.url, self.interval_s, self.timeout_s = url, interval_s, timeout_s
        self.answered = self.failed = 0
        self.slowest_s = 0.0
        self._task: asyncio.Task | None = None

    async def __aenter__(self) -> HealthProbe:
        self._task = asyncio.create_task(self._probe())
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()

    def summary(self) -> str:
        return f"{self.answered} answered 200, {self.failed} failed, slowest {self.slowest_s * 1000:.0f} ms"

    async def _probe(self) -> None:
        timeout = aiohttp.ClientTimeout(total=self.timeout_s)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            while True:
                started = time.perf_counter()
                try:
                    async with session.get(self.url) as response:
                        await response.read()
                        ok = response.status == 200
                except (TimeoutError, aiohttp.ClientError):
                    ok = False
                self.slowest_s = max(self.slowest_s, time.perf_counter() - started)
                self.answered += ok
                self.failed += not ok
                await asyncio.sleep(self.interval_s)


def _single_times(limit: dict) -> str:
    text = f"ordinary {limit['ordinary_ms_median']:.1f} ms"
    if limit.get("heavy_ms_median") is not None:
        text += f", heavy {limit['heavy_ms_median']:.0f} ms"
    return text


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")
