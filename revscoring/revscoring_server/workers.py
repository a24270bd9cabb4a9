"""Worker processes for the CPU-bound part of a request: feature extraction and scoring.

Why processes, not threads: extraction is pure Python, so threads share one core (the GIL), and some of
revscoring's native dependencies are not thread-safe (concurrent extraction in threads corrupted the heap
under load: "corrupted double-linked list"). Each worker runs one job at a time.

Two lanes. Ordinary jobs go to `workers` processes (default: one per usable core). Jobs whose wikitext is
large (`heavy_bytes`, revision plus parent) go to as many other processes running at a lower CPU priority
(`nice`): tokenizing a 500 KB article takes about a second, and it must not hold up the ordinary requests
queued behind it; the heavy lane uses the CPU the ordinary one leaves. The ordinary workers run slightly
below the server process too: the server process is the one serial stage (HTTP, MediaWiki calls, handing
out jobs) and when it waits for a core, every worker soon waits for work.

`start()` forks the workers, after the models are loaded and before the server starts its threads: the
workers share the loaded models' memory (copy-on-write; `gc.freeze()` keeps it shared) and find them in
`scoring`'s per-process registry. The event loop only ships the job (plain data) and awaits the answer.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import math
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Executor, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any, TypeVar

from revscoring_server.executor import OffLoopExecutor
from revscoring_server.scoring import RevisionJob
from wikiserve import metrics
from wikiserve.admission import Admission, Overloaded
from wikiserve.config import REVSCORING, default, read_settings
from wikiserve.errors import ServingError

logger = logging.getLogger(__name__)

T = TypeVar("T")
DEFAULT_HEAVY_BYTES: int = default("HEAVY_REVISION_BYTES")
DEFAULT_NICE: int = default("EXTRACTION_NICE")
DEFAULT_HEAVY_NICE: int = default("HEAVY_EXTRACTION_NICE")
DEFAULT_DEADLINE_S: float = default("EXTRACTION_TIMEOUT_S")
# Wikitext (revision + parent) up to which a job of the only request being served runs in the server process:
# about 10 ms of extraction at most, so the event loop stays responsive (health checks, new requests).
INLINE_BYTES = 20_000


# Revisions in flight per ordinary worker when MAX_IN_FLIGHT is unset. Past saturation, more work in flight
# adds only queueing: latency grows as in-flight / throughput (Little's law). The benchmark saturates two
# workers at about 4 requests per worker (replayed MediaWiki, no added latency), so 8 per worker keeps the
# latency of admitted work within about twice its latency at saturation. A request waiting on MediaWiki
# holds no worker, so with production's slower MediaWiki the saturating concurrency is higher and 8 errs
# towards refusing; MAX_IN_FLIGHT raises it. Without a bound, at 512 clients each waited 6 s.
IN_FLIGHT_PER_WORKER = 8
# Heavy revisions (>= HEAVY_REVISION_BYTES) in flight per heavy worker: one being tokenized, one waiting.
# Past it a heavy revision is refused (after its first fetch; scorer.KnownHeavy) instead of holding the bound
# the ordinary requests need.
HEAVY_IN_FLIGHT_PER_WORKER = 2
# After the deadline, a job stuck in native code (SIGALRM cannot interrupt it) is given up this long later;
# the job before it in the worker's queue may itself have used a whole deadline, hence twice the deadline.
STUCK_GRACE_S = 2.0


class WorkerCrashed(ServingError):
    status = 503


class ExtractionTimeout(ServingError):
    """A revision's extraction passed EXTRACTION_TIMEOUT_S (ORES's `TimeoutError`; 504 for one revision)."""

    status = 504
    error_type = "TimeoutError"


class _DeadlinePassed(BaseException):
    """Raised by the alarm in a worker. Not an Exception: revscoring's solver wraps every Exception of a
    feature into its own error and goes on, which would turn the deadline into a feature error."""


def _expire(signum: int, frame: Any) -> None:
    raise _DeadlinePassed


def run_with_deadline(deadline_s: float, function: Callable[..., T], *args: Any) -> T:
    """Runs `function(*args)` in this (worker) process, interrupted by SIGALRM after `deadline_s`."""
    previous = signal.signal(signal.SIGALRM, _expire)
    signal.setitimer(signal.ITIMER_REAL, deadline_s)
    try:
        return function(*args)
    except _DeadlinePassed:
        raise ExtractionTimeout(timeout_message(deadline_s)) from None
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def timeout_message(deadline_s: float) -> str:
    return f"Feature extraction took longer than {deadline_s:g} s and was stopped."


CGROUP_CPU_MAX = Path("/sys/fs/cgroup/cpu.max")  # cgroup v2: "<quota> <period>" or "max <period>"


def usable_cores(cpu_max: Path = CGROUP_CPU_MAX) -> int:
    """Cores this process may use: its CPU affinity (taskset, cpusets), capped by the container's CPU
    limit. In Kubernetes the affinity is the whole node; the limit is a CFS quota, and one worker per
    node core would only queue on the quota."""
    cores = len(os.sched_getaffinity(0))
    try:
        quota, period = cpu_max.read_text().split()[:2]
    except (OSError, ValueError):
        return cores
    if quota == "max":
        return cores
    return max(1, min(cores, math.ceil(int(quota) / int(period))))


def job_text_bytes(args: tuple[Any, ...]) -> int:
    """Size of the wikitext a RevisionJob will tokenize: the revision's and its parent's."""
    job = args[0] if args else None
    if not isinstance(job, RevisionJob):
        return 0
    return _text_length(job.docs.revision) + _text_length(job.docs.parent)


def _text_length(doc: dict[str, Any] | None) -> int:
    if not doc:
        return 0
    total = 0
    for page in (doc.get("query") or {}).get("pages", {}).values():
        for revision in page.get("revisions") or []:
            main = (revision.get("slots") or {}).get("main") or {}
            total += len(main.get("*") or "")
    return total


def _noop() -> int:
    return os.getpid()


def _start_worker(increment: int) -> None:
    """Runs first in every forked worker."""
    os.nice(increment)  # relative to the server process, which forked this worker
    _reopen_inherited_corpus_files()


def _reopen_inherited_corpus_files() -> None:
    """Forked workers share the parent's open files, read positions included. NLTK's WordNet reader (under
    draftquality's SentiWordNet features) keeps its data files open and reads them with seek + readline, so
    two workers reading at once read each other's lines (found as a 500 on a farm revision). The warm-up
    opened them before the fork; each worker drops its copies and reopens them on first use."""
    corpus = sys.modules.get("nltk.corpus")
    reader = getattr(corpus, "wordnet", None)
    # Only a loaded reader: touching an attribute of NLTK's lazy loader would load the corpus.
    if type(reader).__name__ != "WordNetCorpusReader":
        return
    for handle in reader._data_file_map.values():
        handle.close()  # this worker's descriptor only; the parent's stays open
    reader._data_file_map = {}


def pool_from_env(env: Mapping[str, str]) -> WorkerPool | None:
    """The pool the image runs with, from the environment (validated: see `wikiserve.config`)."""
    return pool_from_values(read_settings(env, REVSCORING))


def pool_from_values(values: Mapping[str, Any]) -> WorkerPool | None:
    """EXTRACTION_WORKERS: ordinary worker processes (unset: one per usable core; 0: no processes, extraction
    in a thread of the server process). HEAVY_REVISION_BYTES: from how many characters of wikitext (revision
    + parent) a job goes to the low-priority lane. EXTRACTION_NICE, HEAVY_EXTRACTION_NICE: the lanes'
    priorities below the server process."""
    workers = values["EXTRACTION_WORKERS"]
    if workers is None:
        workers = usable_cores()
    if workers <= 0:
        return None
    return WorkerPool(
        workers,
        heavy_bytes=values["HEAVY_REVISION_BYTES"],
        nice=values["EXTRACTION_NICE"],
        heavy_nice=values["HEAVY_EXTRACTION_NICE"],
        deadline_s=values["EXTRACTION_TIMEOUT_S"],
    )


def in_flight_limit(values: Mapping[str, Any]) -> int:
    """MAX_IN_FLIGHT, or IN_FLIGHT_PER_WORKER per ordinary worker (a thread counts as one worker)."""
    if values["MAX_IN_FLIGHT"] is not None:
        return values["MAX_IN_FLIGHT"]
    workers = values["EXTRACTION_WORKERS"]
    if workers is None:
        workers = usable_cores()
    return IN_FLIGHT_PER_WORKER * max(1, workers)


class WorkerPool(OffLoopExecutor):
    """The `executor.run(function, *args)` seam, backed by forked worker processes in two lanes."""

    def __init__(
        self,
        workers: int | None = None,
        heavy_bytes: int = DEFAULT_HEAVY_BYTES,
        nice: int = DEFAULT_NICE,
        heavy_nice: int = DEFAULT_HEAVY_NICE,
        weigh: Callable[[tuple[Any, ...]], int] = job_text_bytes,
        deadline_s: float = DEFAULT_DEADLINE_S,
        stuck_grace_s: float = STUCK_GRACE_S,
    ) -> None:
        super().__init__(None)
        self.workers = max(1, workers or usable_cores())
        self.heavy_bytes = heavy_bytes
        self.nice = nice
        self.heavy_nice = heavy_nice
        self.weigh = weigh
        self.deadline_s = deadline_s
        self.give_up_s = 2 * deadline_s + stuck_grace_s
        self.inline_bytes = min(INLINE_BYTES, heavy_bytes)
        self.heavy_admission = Admission(HEAVY_IN_FLIGHT_PER_WORKER * self.workers, "heavy revisions")
        self._lock = threading.Lock()
        self._ordinary: ProcessPoolExecutor | None = None
        self._heavy: ProcessPoolExecutor | None = None
        # Jobs handed to a lane and not answered: future -> (heavy lane?, when first seen running or None).
        self._pending: dict[Future, tuple[bool, float | None]] = {}
        self._given_up: set[Future] = set()
        self._closed = threading.Event()
        self._watchdog: threading.Thread | None = None

    def _new_pool(self, heavy: bool) -> ProcessPoolExecutor:
        context = multiprocessing.get_context("fork")  # fork: the workers inherit the loaded models
        if heavy:
            return ProcessPoolExecutor(
                self.workers, mp_context=context, initializer=_start_worker, initargs=(self.heavy_nice,)
            )
        return ProcessPoolExecutor(
            self.workers, mp_context=context, initializer=_start_worker, initargs=(self.nice,)
        )

    def start(self) -> None:
        """Forks every worker now (call after loading the models, before serving)."""
        # Without this, the first full garbage collection in a worker writes to every object it inherited
        # and so copies the pages holding them: each worker grew by ~90 MB within 3,000 requests. Frozen
        # objects are left alone by the collector, so the workers keep sharing the loaded models.
        gc.collect()
        gc.freeze()
        self._ordinary, self._heavy = self._new_pool(False), self._new_pool(True)
        wait([pool.submit(_noop) for pool in (self._ordinary, self._heavy) for _ in range(self.workers)])
        self._start_watchdog()
        logger.info(
            "Worker processes started",
            extra={
                "workers": self.workers,
                "nice": self.nice,
                "heavy_nice": self.heavy_nice,
                "heavy_bytes": self.heavy_bytes,
            },
        )

    def may_run_here(self, job: Any) -> bool:
        """A light job may run in the server process itself when it is the only request being served: the
        workers extract in other processes, so the server's own thread is the only one extracting there."""
        return self.weigh((job,)) <= self.inline_bytes

    def is_heavy(self, job: Any) -> bool:
        return self.weigh((job,)) >= self.heavy_bytes

    def heavy_lane_full(self) -> bool:
        return self.heavy_admission.full()

    def heavy_refusal(self) -> Overloaded:
        return self.heavy_admission.refusal()

    def _lane(self, heavy: bool) -> ProcessPoolExecutor:
        with self._lock:
            if self._ordinary is None or self._heavy is None:
                self._ordinary, self._heavy = self._new_pool(False), self._new_pool(True)
            return self._heavy if heavy else self._ordinary

    async def run(self, function: Callable[..., T], *args: Any) -> T:
        """`function(*args)` in a worker of its lane, stopped at the deadline. Raises ExtractionTimeout,
        WorkerCrashed, or Overloaded when the heavy lane already has all the work it may hold."""
        heavy = self.weigh(args) >= self.heavy_bytes
        if heavy:
            with self.heavy_admission.admitted(1):
                return await self._run_in(True, function, *args)
        return await self._run_in(False, function, *args)

    async def _run_in(self, heavy: bool, function: Callable[..., T], *args: Any) -> T:
        if self._watchdog is None:
            self._start_watchdog()
        pool = self._lane(heavy)
        future = pool.submit(run_with_deadline, self.deadline_s, function, *args)
        self._pending[future] = (heavy, None)
        try:
            return await asyncio.wrap_future(future)
        except ExtractionTimeout:
            metrics.EXTRACTION_TIMEOUTS.labels(how="interrupted").inc()
            raise
        except BrokenProcessPool:
            self._replace(pool, heavy)
            if future in self._given_up:
                raise ExtractionTimeout(timeout_message(self.deadline_s)) from None
            raise WorkerCrashed(
                "A feature-extraction worker process died (out of memory?) while serving "
                "this or a concurrent request; retry."
            ) from None
        finally:
            self._pending.pop(future, None)
            self._given_up.discard(future)

    def _start_watchdog(self) -> None:
        self._watchdog = threading.Thread(target=self._watch, name="extraction-watchdog", daemon=True)
        self._watchdog.start()

    def _watch(self) -> None:
        """Gives up the jobs a worker did not answer within `give_up_s` of starting them (stuck in native
        code, where SIGALRM's handler cannot run): their lane gets new workers and goes on."""
        period = min(1.0, self.give_up_s / 4)
        while not self._closed.wait(period):
            now = time.monotonic()
            for future, (heavy, since) in list(self._pending.items()):
                if since is None:
                    if future.running():  # handed to a worker (or next in its queue)
                        self._pending[future] = (heavy, now)
                elif now - since > self.give_up_s and not future.done():
                    self._give_up(future, heavy)

    def _give_up(self, future: Future, heavy: bool) -> None:
        logger.error(
            "A worker did not stop at the extraction deadline; replacing the lane's workers",
            extra={"heavy_lane": heavy, "deadline_s": self.deadline_s},
        )
        metrics.EXTRACTION_TIMEOUTS.labels(how="lane_replaced").inc()
        self._given_up.add(future)
        self._pending.pop(future, None)
        with self._lock:  # later jobs go to new workers at once
            stuck = self._heavy if heavy else self._ordinary
            if heavy:
                self._heavy = self._new_pool(True)
            else:
                self._ordinary = self._new_pool(False)
        if stuck is not None:
            # Killing its workers fails every job still in the old pool with BrokenProcessPool (not a
            # cancellation, which would look like the client going away): the stuck one answers as a
            # timeout, the others as WorkerCrashed. The pool keeps its processes in a private attribute.
            for process in list((getattr(stuck, "_processes", None) or {}).values()):
                process.kill()
            stuck.shutdown(wait=False)

    def _replace(self, broken: Executor, heavy: bool) -> None:
        """A dead worker breaks its whole pool: start a new one so later requests are served again."""
        with self._lock:
            current = self._heavy if heavy else self._ordinary
            if current is broken:
                logger.error("A worker process died; starting new workers", extra={"heavy_lane": heavy})
                if heavy:
                    self._heavy = self._new_pool(True)
                else:
                    self._ordinary = self._new_pool(False)
        broken.shutdown(wait=False, cancel_futures=True)

    def close(self) -> None:
        self._closed.set()
        for pool in (self._ordinary, self._heavy):
            if pool is not None:
                pool.shutdown(wait=False, cancel_futures=True)
        gc.unfreeze()
