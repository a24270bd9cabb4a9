"""Closed-loop HTTP load: `concurrency` clients, each sending its next request as soon as the last answered.

One process, one aiohttp session with one keep-alive connection per client. Latencies are kept per label
(e.g. "ordinary" and "heavy"), so the latency of one kind of request can be judged in a mix. The
generator's own CPU time is measured too, to show it is not what limits a run.
"""

from __future__ import annotations

import asyncio
import math
import resource
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TextIO

import aiohttp


@dataclass(frozen=True)
class RequestSpec:
    """One request of the mix: POST `body` (JSON bytes) to `path`; `label` groups its latencies."""

    path: str
    body: bytes
    label: str = "ordinary"


@dataclass
class LoadResult:
    concurrency: int
    elapsed_s: float
    completed: int = 0
    errors: int = 0
    latencies: dict[str, list[float]] = field(default_factory=dict)
    error_examples: list[str] = field(default_factory=list)
    generator_cpu_s: float = 0.0
    statuses: dict[int, int] = field(default_factory=dict)  # HTTP status -> answers (0: no answer)
    refused: list[float] = field(default_factory=list)  # latencies of 503 answers (admission control)

    @property
    def throughput(self) -> float:
        return self.completed / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def all_latencies(self) -> list[float]:
        return [value for values in self.latencies.values() for value in values]

    def percentile_ms(self, q: float, label: str | None = None) -> float:
        values = self.latencies.get(label, []) if label else self.all_latencies()
        return percentile(values, q) * 1000.0

    def summary(self) -> dict[str, float]:
        return {
            "concurrency": self.concurrency,
            "throughput": self.throughput,
            "completed": self.completed,
            "errors": self.errors,
            "p50_ms": self.percentile_ms(50),
            "p90_ms": self.percentile_ms(90),
            "p99_ms": self.percentile_ms(99),
        }


def combine(rounds: Sequence[LoadResult]) -> LoadResult:
    """Several runs of one variant as one: latencies pooled; throughput is the median of the rounds'
    (a noisy neighbour slows one round, not the comparison)."""
    if not rounds:
        raise ValueError("nothing to combine")
    latencies: dict[str, list[float]] = {}
    for result in rounds:
        for label, values in result.latencies.items():
            latencies.setdefault(label, []).extend(values)
    completed = sum(r.completed for r in rounds)
    rate = statistics.median(r.throughput for r in rounds)
    return LoadResult(
        rounds[0].concurrency,
        completed / rate if rate else 0.0,
        completed,
        sum(r.errors for r in rounds),
        latencies,
        [e for r in rounds for e in r.error_examples][:5],
        sum(r.generator_cpu_s for r in rounds),
    )


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (no interpolation: every reported value was actually observed)."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100.0 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


@dataclass
class _Run:
    """State shared by the clients of one run."""

    specs: Sequence[RequestSpec]
    measure_from: float
    deadline: float
    total: int | None
    result: LoadResult
    issued: int = 0
    done_in_window: int = 0
    on_completed: Callable[[int], None] | None = None
    first_done: float | None = None
    last_done: float = 0.0

    def next_spec(self) -> RequestSpec | None:
        now = time.perf_counter()
        if now >= self.deadline or (self.total is not None and self.issued >= self.total):
            return None
        spec = self.specs[self.issued % len(self.specs)]
        self.issued += 1
        return spec

    def record(
        self, spec: RequestSpec, started: float, finished: float, error: str | None, status: int = 200
    ) -> None:
        if started < self.measure_from:
            return  # warm-up
        result = self.result
        result.statuses[status] = result.statuses.get(status, 0) + 1
        if status == 503:
            result.refused.append(finished - started)
        if error is None:
            # A request that outlived the window still tells its latency (a slow kind must not vanish
            # from the percentiles because it is slow), but it does not count towards throughput.
            result.latencies.setdefault(spec.label, []).append(finished - started)
        if finished > self.deadline:
            return
        if error is not None:
            result.errors += 1
            if len(result.error_examples) < 5:
                result.error_examples.append(error)
        result.completed += 1
        self.first_done = self.first_done or finished
        self.last_done = finished
        if self.on_completed is not None:
            self.on_completed(result.completed)


async def _client(session: aiohttp.ClientSession, base_url: str, run: _Run, backs_off: bool) -> None:
    headers = {"Content-Type": "application/json"}
    while (spec := run.next_spec()) is not None:
        started = time.perf_counter()
        error: str | None = None
        status = 0
        wait_s = 0.0
        try:
            async with session.post(base_url + spec.path, data=spec.body, headers=headers) as response:
                body = await response.read()
                status = response.status
                if response.status != 200:
                    error = f"HTTP {response.status}: {body[:200].decode('utf-8', 'replace')}"
                if backs_off and status == 503:
                    wait_s = _retry_after_s(response.headers.get("Retry-After"))
        except (TimeoutError, aiohttp.ClientError) as failure:
            error = f"{type(failure).__name__}: {failure}"
        run.record(spec, started, time.perf_counter(), error, status)
        if wait_s:
            await asyncio.sleep(wait_s)


def _retry_after_s(value: str | None, cap_s: float = 5.0) -> float:
    """A 503's Retry-After in seconds (at most `cap_s`; 0 when absent or not a number of seconds)."""
    try:
        return min(cap_s, max(0.0, float(value or 0)))
    except ValueError:
        return 0.0


async def _progress(run: _Run, name: str, interval_s: float, stream: TextIO) -> None:
    started = time.perf_counter()
    last_count, last_time = 0, started
    while True:
        await asyncio.sleep(interval_s)
        now = time.perf_counter()
        count = run.result.completed
        rate = (count - last_count) / (now - last_time)
        print(
            f"  {name}: {now - started:5.1f}s  {count:6d} done  {rate:7.1f} req/s  "
            f"{run.result.errors} errors",
            file=stream,
            flush=True,
        )
        last_count, last_time = count, now


async def run_load(
    base_url: str,
    specs: Sequence[RequestSpec],
    concurrency: int,
    *,
    duration_s: float | None = None,
    total: int | None = None,
    warmup_s: float = 0.0,
    name: str = "load",
    progress_s: float = 2.0,
    timeout_s: float = 300.0,
    on_completed: Callable[[int], None] | None = None,
    stream: TextIO = sys.stderr,
    backs_off: bool = False,
) -> LoadResult:
    """Runs `concurrency` closed-loop clients over `specs` (in order, cycling).

    Stops after `duration_s` of measurement (following `warmup_s` whose requests are not counted) or after
    `total` requests, whichever comes first. Throughput counts requests that both started and finished
    inside the measurement window. With `backs_off`, a client answered 503 waits its `Retry-After` (as a
    well-behaved client does) before its next request; without, it sends the next one at once.
    """
    if not specs or concurrency < 1 or (duration_s is None and total is None):
        raise ValueError("need specs, concurrency >= 1 and a duration or a total")
    start = time.perf_counter()
    measure_from = start + warmup_s
    deadline = measure_from + duration_s if duration_s is not None else math.inf
    run = _Run(specs, measure_from, deadline, total, LoadResult(concurrency, 0.0), on_completed=on_completed)
    connector = aiohttp.TCPConnector(limit=concurrency, limit_per_host=concurrency)
    cpu_before = _cpu_seconds()
    reporter = asyncio.create_task(_progress(run, name, progress_s, stream)) if progress_s > 0 else None
    try:
        async with aiohttp.ClientSession(
            connector=connector, timeout=aiohttp.ClientTimeout(total=timeout_s)
        ) as session:
            await asyncio.gather(*(_client(session, base_url, run, backs_off) for _ in range(concurrency)))
    finally:
        if reporter is not None:
            reporter.cancel()
    result = run.result
    result.generator_cpu_s = _cpu_seconds() - cpu_before
    if duration_s is not None and math.isfinite(deadline) and time.perf_counter() >= deadline:
        result.elapsed_s = duration_s
    else:  # stopped by count: the window is from the start of measurement to the last answer
        result.elapsed_s = max(1e-9, run.last_done - measure_from)
    return result


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime
