"""The in-process limit: the same work a server does per request, in a plain loop, one process per core.

The payloads (MediaWiki data already fetched) are prepared once in the parent; the worker processes are
forked, so `work` and the payloads need not be picklable. No HTTP, no event loop, no queueing: what the
CPU can do with this model and these revisions, which a server can at best approach.
"""

from __future__ import annotations

import multiprocessing
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class LimitResult:
    processes: int
    duration_s: float
    completed: int

    @property
    def throughput(self) -> float:
        return self.completed / self.duration_s if self.duration_s > 0 else 0.0


def _loop(
    work: Callable[[Any], Any],
    payloads: Sequence[Any],
    start: Any,
    duration_s: float,
    warmup: int,
    results: Any,
) -> None:
    for payload in payloads[:warmup]:
        work(payload)  # first calls fill lazy caches (tokenizers, dictionaries) that a server has warm
    start.wait()
    began = time.perf_counter()
    deadline = began + duration_s
    done = 0
    while time.perf_counter() < deadline:
        work(payloads[done % len(payloads)])
        done += 1
    results.put((done, time.perf_counter() - began))


def measure_limit(
    work: Callable[[Any], Any],
    payloads: Sequence[Any],
    *,
    processes: int | None = None,
    duration_s: float = 10.0,
    warmup: int = 3,
) -> LimitResult:
    """Runs `work(payload)` over `payloads` (cycling) in `processes` forked processes for `duration_s`.

    A loop finishes the call it is in when time is up, so each process's rate is done / its own elapsed
    time; the processes start together and their rates add up.
    """
    processes = processes or len(os.sched_getaffinity(0))
    context = multiprocessing.get_context("fork")
    start, results = context.Event(), context.Queue()
    workers = [
        context.Process(target=_loop, args=(work, payloads, start, duration_s, warmup, results), daemon=True)
        for _ in range(processes)
    ]
    for worker in workers:
        worker.start()
    time.sleep(0.2)
    start.set()
    rates = []
    for _ in workers:
        done, elapsed = results.get(timeout=duration_s * 3 + 600)
        rates.append(done / elapsed)
    for worker in workers:
        worker.join()
    return LimitResult(processes, duration_s, round(sum(rates) * duration_s))
