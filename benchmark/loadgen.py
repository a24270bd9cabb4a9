"""Closed-loop HTTP load: `concurrency` clients, each sending its next request as soon as the last answered.

One process; each client has one keep-alive HTTP/1.1 connection (opened again if the server closes it).
Latencies are kept per label (e.g. "ordinary" and "heavy"), so the latency of one kind of request can be
judged in a mix. The generator's own CPU time is measured too.

The generator shares the measured server's cores, so what it spends is taken from the server: a client is
an asyncio protocol over httptools (the HTTP parser uvicorn uses) that sends each request, encoded once,
in one write. With aiohttp's client it took about twice the CPU per request (issue 20).
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
from urllib.parse import urlsplit

import httptools


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
    requests: Sequence[bytes]  # specs[i] as HTTP/1.1 bytes, encoded once for every client
    measure_from: float
    deadline: float
    total: int | None
    result: LoadResult
    issued: int = 0
    done_in_window: int = 0
    on_completed: Callable[[int], None] | None = None
    first_done: float | None = None
    last_done: float = 0.0

    def next_index(self) -> int | None:
        """The index in `specs` of the next request to send, or None when the run is over."""
        now = time.perf_counter()
        if now >= self.deadline or (self.total is not None and self.issued >= self.total):
            return None
        index = self.issued % len(self.specs)
        self.issued += 1
        return index

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


@dataclass
class _Answer:
    status: int
    body: bytes
    retry_after: str | None


class _Connection(asyncio.Protocol):
    """One keep-alive connection: writes a request and parses its answer with httptools."""

    def __init__(self) -> None:
        self.parser = httptools.HttpResponseParser(self)
        self.transport: asyncio.Transport | None = None
        self.waiter: asyncio.Future[_Answer] | None = None
        self._body = bytearray()
        self._retry_after: str | None = None

    @property
    def usable(self) -> bool:
        return self.transport is not None and not self.transport.is_closing()

    async def exchange(self, request: bytes) -> _Answer:
        self.waiter = asyncio.get_running_loop().create_future()
        self._body.clear()
        self._retry_after = None
        assert self.transport is not None
        self.transport.write(request)
        return await self.waiter

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as error:
            self._fail(ConnectionError(f"unreadable answer: {error}"))
            self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(ConnectionError(f"connection closed: {exc or 'by the server'}"))

    # httptools' callbacks
    def on_header(self, name: bytes, value: bytes) -> None:
        if name.lower() == b"retry-after":
            self._retry_after = value.decode("latin-1")

    def on_body(self, body: bytes) -> None:
        self._body += body

    def on_message_complete(self) -> None:
        if not self.parser.should_keep_alive():
            self.close()
        if self.waiter is not None and not self.waiter.done():
            answer = _Answer(self.parser.get_status_code(), bytes(self._body), self._retry_after)
            self.waiter.set_result(answer)

    def _fail(self, error: Exception) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(error)


def encode_request(host: str, path: str, body: bytes) -> bytes:
    """A whole HTTP/1.1 POST of a JSON body."""
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode("latin-1") + body


async def _client(base_url: str, run: _Run, backs_off: bool, timeout_s: float) -> None:
    address = urlsplit(base_url)
    host, port = address.hostname or "127.0.0.1", address.port or 80
    connection: _Connection | None = None
    try:
        while (index := run.next_index()) is not None:
            spec, request = run.specs[index], run.requests[index]
            started = time.perf_counter()
            error: str | None = None
            status = 0
            wait_s = 0.0
            try:
                async with asyncio.timeout(timeout_s):
                    if connection is None or not connection.usable:
                        _, connection = await asyncio.get_running_loop().create_connection(
                            _Connection, host, port
                        )
                    answer = await connection.exchange(request)
                status = answer.status
                if status != 200:
                    error = f"HTTP {status}: {answer.body[:200].decode('utf-8', 'replace')}"
                if backs_off and status == 503:
                    wait_s = _retry_after_s(answer.retry_after)
            except (TimeoutError, OSError) as failure:
                error = f"{type(failure).__name__}: {failure}"
                if connection is not None:
                    connection.close()  # its answer may still come: never read it as the next one's
                    connection = None
            run.record(spec, started, time.perf_counter(), error, status)
            if wait_s:
                await asyncio.sleep(wait_s)
    finally:
        if connection is not None:
            connection.close()


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
    requests = [encode_request(urlsplit(base_url).netloc, spec.path, spec.body) for spec in specs]
    result = LoadResult(concurrency, 0.0)
    run = _Run(specs, requests, measure_from, deadline, total, result, on_completed=on_completed)
    cpu_before = _cpu_seconds()
    reporter = asyncio.create_task(_progress(run, name, progress_s, stream)) if progress_s > 0 else None
    try:
        await asyncio.gather(*(_client(base_url, run, backs_off, timeout_s) for _ in range(concurrency)))
    finally:
        if reporter is not None:
            reporter.cancel()
    result.generator_cpu_s = _cpu_seconds() - cpu_before
    if duration_s is not None and math.isfinite(deadline) and time.perf_counter() >= deadline:
        result.elapsed_s = duration_s
    else:  # stopped by count: the window is from the start of measurement to the last answer
        result.elapsed_s = max(1e-9, run.last_done - measure_from)
    return result


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime
