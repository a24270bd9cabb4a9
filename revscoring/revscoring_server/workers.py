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
import pickle
import signal
import sys
import time
from collections import deque
from collections.abc import Callable, Mapping
from multiprocessing.connection import Connection
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
# How long admitted work may wait for a worker before AdaptiveBound lowers the bound: this many jobs' CPU
# time. Measured (benchmark/README.md, "Overload"): with 8 (the bound's own depth), clients retrying at once
# kept the bound near 10 and admitted p99 at 1.96x that at saturation; with 4, 1.80x, and nothing was
# refused at saturation (c=8).
QUEUE_WAIT_JOBS = 4
# Heavy revisions (>= HEAVY_REVISION_BYTES) in flight per heavy worker: one being tokenized, one waiting.
# Past it a heavy revision is refused (after its first fetch; scorer.KnownHeavy) instead of holding the bound
# the ordinary requests need.
HEAVY_IN_FLIGHT_PER_WORKER = 2
# A job is written to a busy worker's pipe (to start the moment its current job ends) only up to this size:
# the write must not block the event loop, and a socket pair's buffer holds over 200 KB (net.core.wmem_default
# 212992). Larger jobs wait for an idle worker.
PIPELINED_JOB_BYTES = 64_000
CRASHED = ("A feature-extraction worker process died (out of memory?) while serving this or a concurrent "
           "request; retry.")
# After the deadline, a job stuck in native code (SIGALRM cannot interrupt it) is given up this long later,
# counted from the job's start (when its worker is idle, or when the job before it in the pipe ends).
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


def _start_worker(increment: int) -> None:
    """Runs first in every forked worker."""
    # A worker forked while the server runs inherits its event loop's signal handling, which would only
    # write the signal to a pipe nobody reads here. SIGTERM kills a worker again; Ctrl-C in a terminal
    # (SIGINT to the whole process group) is the server's to handle: it drains, its workers finish the jobs
    # in flight and exit when it closes their pipes.
    signal.set_wakeup_fd(-1)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
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


class _Worker:
    """One worker process and the server's end of its pipe. `jobs` were sent to it, in order: the first is
    running, the one after it (if any) waits in the pipe, so the worker starts it the moment it is done."""

    def __init__(self, process: multiprocessing.process.BaseProcess, conn: Connection) -> None:
        self.process = process
        self.conn = conn
        self.jobs: deque[_Job] = deque()
        self.give_up: asyncio.TimerHandle | None = None
        self.loop: asyncio.AbstractEventLoop | None = None  # the loop watching its pipe while it has jobs


class _Job:
    """A function call waiting for, or running in, a worker; `done` is resolved in the submitting loop."""

    __slots__ = ("function", "args", "done", "loop", "queued_at", "waited_s", "payload")

    def __init__(
        self, function: Callable[..., Any], args: tuple[Any, ...], loop: asyncio.AbstractEventLoop
    ) -> None:
        self.function = function
        self.args = args
        self.loop = loop
        self.done: asyncio.Future = loop.create_future()
        self.queued_at = time.monotonic()
        self.waited_s = 0.0  # from being queued to starting in a worker
        self.payload: bytes | None = None  # pickled once, when first offered to a worker


def _serve_jobs(
    conn: Connection, nice_increment: int, inherited: list[Connection], deadline_s: float
) -> None:
    """A worker's life: run each job the pipe brings, send back ("ok", result) or ("error", exception)."""
    _start_worker(nice_increment)
    for server_end in inherited:  # the server's ends (of this pipe and the others), copied by the fork
        server_end.close()
    while True:
        try:
            function, args = pickle.loads(conn.recv_bytes())
        except (EOFError, OSError):  # the server is gone
            return
        started = time.process_time()
        try:
            outcome: tuple[str, Any] = ("ok", run_with_deadline(deadline_s, function, *args))
        except Exception as error:  # noqa: BLE001 - the server raises it where the job was awaited
            outcome = ("error", error)
        cpu_s = time.process_time() - started  # the job's own cost, whatever else ran on the core meanwhile
        try:
            payload = pickle.dumps((*outcome, cpu_s), pickle.HIGHEST_PROTOCOL)
        except Exception as error:  # noqa: BLE001 - an unpicklable result or exception
            failure = RuntimeError(f"The job's outcome could not be sent: {error!r}")
            payload = pickle.dumps(("error", failure, cpu_s))
        conn.send_bytes(payload)


class _Lane:
    """`size` worker processes at one priority, fed by the event loop through one pipe each: a job is pickled
    and written to an idle worker's pipe (a small one also to a busy worker's, to run next), and its answer
    read when the pipe becomes readable. No threads: the ProcessPoolExecutor this replaces moved every job
    through a queue-feeding thread and a managing thread, and their hand-offs of the GIL cost the server
    process more CPU than the HTTP request did (issue 20)."""

    def __init__(
        self,
        size: int,
        nice: int,
        deadline_s: float,
        give_up_s: float,
        heavy: bool,
        server_ends: Callable[[], list[Connection]] = list,
    ) -> None:
        self.on_answer: Callable[[float, float], None] | None = None  # (queue wait, job CPU) of each job
        self.server_ends = server_ends  # the server's ends of every worker's pipe, in both lanes
        self.size = size
        self.nice = nice
        self.deadline_s = deadline_s
        self.give_up_s = give_up_s
        self.heavy = heavy
        self.workers: list[_Worker] = []
        self.queue: deque[_Job] = deque()

    def start(self) -> None:
        for _ in range(self.size):
            self.workers.append(self._fork())

    def _fork(self) -> _Worker:
        ours, theirs = multiprocessing.Pipe(duplex=True)
        # The fork copies the server's end of every other worker's pipe; the worker closes them, so that when
        # the server is gone (even killed), each worker reads an end of file and exits.
        inherited = [ours, *self.server_ends(), *(worker.conn for worker in self.workers)]
        process = multiprocessing.get_context("fork").Process(  # fork: the worker inherits the loaded models
            target=_serve_jobs,
            args=(theirs, self.nice, inherited, self.deadline_s),
            name=f"{'heavy' if self.heavy else 'ordinary'}-extraction",
            daemon=True,
        )
        process.start()
        theirs.close()  # the worker's end lives in the worker only: its death is an end of file here
        return _Worker(process, ours)

    def submit(self, job: _Job) -> None:
        self.queue.append(job)
        self._dispatch()

    def _dispatch(self) -> None:
        """Every idle worker gets the next job; then every busy one a small next job, written to its pipe now
        so that it starts without waiting for this loop to read the answer and write again (that wait left
        the workers idle: throughput at saturation rose 8-11% without it; benchmark/README.md)."""
        for depth, small_only in ((1, False), (2, True)):
            for worker in list(self.workers):
                if len(worker.jobs) < depth and not self._take(worker, small_only):
                    break

    def _take(self, worker: _Worker, small_only: bool) -> bool:
        """Sends the queue's next job to `worker`; False when there is none (or it is too big to wait in a
        pipe: it then waits for an idle worker, in its turn)."""
        while self.queue:
            job = self.queue[0]
            if job.done.done():  # its request went away while it waited
                self.queue.popleft()
                continue
            if job.payload is None:
                try:
                    job.payload = pickle.dumps((job.function, job.args), pickle.HIGHEST_PROTOCOL)
                except Exception as error:  # noqa: BLE001 - the caller's to see
                    self.queue.popleft()
                    job.done.set_exception(error)
                    continue
            if small_only and len(job.payload) > PIPELINED_JOB_BYTES:
                return False
            self.queue.popleft()
            self._send(worker, job)
            return True
        return False

    def _send(self, worker: _Worker, job: _Job) -> None:
        assert job.payload is not None
        try:
            worker.conn.send_bytes(job.payload)  # blocking: an idle worker reads it, a small one fits
        except OSError:  # the worker died: its jobs are dealt with, and a new one takes this job
            index = self.workers.index(worker)
            self._lost(worker, WorkerCrashed(CRASHED))
            worker = self.workers[index]
            try:
                worker.conn.send_bytes(job.payload)
            except OSError:
                job.done.set_exception(WorkerCrashed("No feature-extraction worker could be started; retry."))
                return
        worker.jobs.append(job)
        if len(worker.jobs) == 1:
            worker.loop = job.loop
            job.loop.add_reader(worker.conn.fileno(), self._answered, worker)
            # uvloop (libuv) makes a watched descriptor non-blocking; answers are read, and jobs written,
            # whole, with blocking calls (the worker writes its answer at once, and reads while idle).
            os.set_blocking(worker.conn.fileno(), True)
            self._started(worker)

    def _started(self, worker: _Worker) -> None:
        """The worker's first job starts now: its wait ends, and its deadline runs."""
        job = worker.jobs[0]
        job.waited_s = time.monotonic() - job.queued_at
        worker.give_up = job.loop.call_later(self.give_up_s, self._stuck, worker)

    def _answered(self, worker: _Worker) -> None:
        self._stop_timer(worker)
        try:
            status, value, cpu_s = pickle.loads(worker.conn.recv_bytes())
        except (EOFError, OSError):  # the worker died (out of memory? killed?) with its job
            self._lost(worker, WorkerCrashed(CRASHED))
            self._dispatch()
            return
        job = worker.jobs.popleft()
        if worker.jobs:
            self._started(worker)  # the next job was in the pipe: it runs now
        else:
            self._unwatch(worker)
        if isinstance(value, ExtractionTimeout):
            metrics.EXTRACTION_TIMEOUTS.labels(how="interrupted").inc()
        if self.on_answer is not None:
            self.on_answer(job.waited_s, cpu_s)
        if not job.done.done():
            if status == "ok":
                job.done.set_result(value)
            else:
                job.done.set_exception(value)
        self._dispatch()

    def _stop_timer(self, worker: _Worker) -> None:
        if worker.give_up is not None:
            worker.give_up.cancel()
            worker.give_up = None

    def _unwatch(self, worker: _Worker) -> None:
        if worker.loop is not None:
            worker.loop.remove_reader(worker.conn.fileno())
            worker.loop = None

    def _stuck(self, worker: _Worker) -> None:
        """The job did not end within `give_up_s`: stuck in native code, where the alarm's Python handler
        cannot run. Its worker is killed and replaced; the lane's other workers go on."""
        logger.error(
            "A worker did not stop at the extraction deadline; replacing it",
            extra={"heavy_lane": self.heavy, "deadline_s": self.deadline_s},
        )
        metrics.EXTRACTION_TIMEOUTS.labels(how="worker_replaced").inc()
        worker.give_up = None
        self._lost(worker, ExtractionTimeout(timeout_message(self.deadline_s)))
        self._dispatch()

    def _lost(self, worker: _Worker, error: ServingError) -> None:
        """`worker` is dead or given up: its running job fails with `error`, the one waiting in its pipe
        (which never started) goes back to the head of the queue, and a new worker takes its place."""
        self._stop_timer(worker)
        self._unwatch(worker)
        jobs, worker.jobs = list(worker.jobs), deque()
        if jobs and not jobs[0].done.done():
            jobs[0].done.set_exception(error)
        self.queue.extendleft(reversed(jobs[1:]))
        self._replace(worker)

    def _replace(self, worker: _Worker) -> None:
        if worker not in self.workers:
            return
        logger.error("A worker process is gone; starting another", extra={"heavy_lane": self.heavy})
        worker.process.kill()
        worker.process.join(5)  # reaped: nothing is left of it
        worker.conn.close()
        index = self.workers.index(worker)
        self.workers[index] = self._fork()

    def close(self) -> None:
        for worker in self.workers:
            self._stop_timer(worker)
            self._unwatch(worker)
            self.queue.extend(worker.jobs)
            worker.conn.close()  # the worker reads its end of file and exits
        for worker in self.workers:
            worker.process.join(1)
            if worker.process.is_alive():
                worker.process.kill()
                worker.process.join(1)
        for job in self.queue:
            if not job.done.done():
                job.done.cancel()
        self.workers, self.queue = [], deque()


class AdaptiveBound:
    """Keeps the admission bound where the admitted work waits for a worker no longer than it would if the
    workers had their cores to themselves.

    The bound (IN_FLIGHT_PER_WORKER per worker, or MAX_IN_FLIGHT) was chosen for workers that get their
    cores. When something else takes CPU from them (the same server answering thousands of refusals a
    second to clients that retry at once, other pods' work, a noisy neighbour), each job takes longer in
    wall time and the same number of admitted requests waits longer: Little's law. So the ordinary lane
    reports each job's queue wait and its CPU time (measured in the worker: what the job costs on a core of
    its own); while the mean wait passes what a full queue of such jobs would take on an unshared core
    (`depth` jobs), the bound shrinks by a sixth each `period_s`, down to two revisions per worker; while it
    is under half of that, it grows back by one, up to the configured bound. A request waiting on a slow
    MediaWiki holds a slot but does not queue for a worker, so a slow upstream alone never lowers it.
    """

    def __init__(self, admission: Admission, workers: int, depth: float, period_s: float = 0.25) -> None:
        self.admission = admission
        self.ceiling = admission.limit
        self.floor = min(self.ceiling, 2 * workers)
        self.depth = depth
        self.period_s = period_s
        self._waits = 0.0
        self._cpu = 0.0
        self._jobs = 0
        self._since = time.monotonic()

    def observe(self, waited_s: float, cpu_s: float) -> None:
        """One ordinary job's wait for a worker and its CPU time; adjusts the bound once a period."""
        self._waits += waited_s
        self._cpu += cpu_s
        self._jobs += 1
        now = time.monotonic()
        if now - self._since >= self.period_s:
            self._adjust(self._waits / self._jobs, self._cpu / self._jobs)
            self._waits, self._cpu, self._jobs, self._since = 0.0, 0.0, 0, now

    def _adjust(self, mean_wait_s: float, mean_cpu_s: float) -> None:
        limit = self.admission.limit
        target_s = self.depth * mean_cpu_s
        if mean_wait_s > target_s:
            limit = max(self.floor, limit - max(1, limit // 6))
        elif mean_wait_s < target_s / 2:
            limit = min(self.ceiling, limit + 1)
        if limit != self.admission.limit:
            self.admission.limit = limit
            metrics.ADMISSION_LIMIT.set(limit)


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
        self.give_up_s = deadline_s + stuck_grace_s
        self.inline_bytes = min(INLINE_BYTES, heavy_bytes)
        self.heavy_admission = Admission(HEAVY_IN_FLIGHT_PER_WORKER * self.workers, "heavy revisions")
        self._ordinary = _Lane(self.workers, nice, deadline_s, self.give_up_s, False, self._server_ends)
        self._heavy = _Lane(self.workers, heavy_nice, deadline_s, self.give_up_s, True, self._server_ends)
        self._started = False

    def _server_ends(self) -> list[Connection]:
        return [worker.conn for lane in (self._ordinary, self._heavy) for worker in lane.workers]

    def start(self) -> None:
        """Forks every worker now (call after loading the models, before serving)."""
        # Without this, the first full garbage collection in a worker writes to every object it inherited
        # and so copies the pages holding them: each worker grew by ~90 MB within 3,000 requests. Frozen
        # objects are left alone by the collector, so the workers keep sharing the loaded models.
        gc.collect()
        gc.freeze()
        self._ordinary.start()
        self._heavy.start()
        self._started = True
        logger.info(
            "Worker processes started",
            extra={
                "workers": self.workers,
                "nice": self.nice,
                "heavy_nice": self.heavy_nice,
                "heavy_bytes": self.heavy_bytes,
            },
        )

    def adapt(self, admission: Admission) -> AdaptiveBound | None:
        """Makes `admission`'s bound follow the ordinary lane's queueing (AdaptiveBound); not without one."""
        if not admission.limit:
            return None
        bound = AdaptiveBound(admission, self.workers, depth=QUEUE_WAIT_JOBS)
        self._ordinary.on_answer = bound.observe
        metrics.ADMISSION_LIMIT.set(admission.limit)
        return bound

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

    async def run(self, function: Callable[..., T], *args: Any) -> T:
        """`function(*args)` in a worker of its lane, stopped at the deadline. Raises ExtractionTimeout,
        WorkerCrashed, or Overloaded when the heavy lane already has all the work it may hold."""
        heavy = self.weigh(args) >= self.heavy_bytes
        if heavy:
            with self.heavy_admission.admitted(1):
                return await self._run_in(self._heavy, function, *args)
        return await self._run_in(self._ordinary, function, *args)

    async def _run_in(self, lane: _Lane, function: Callable[..., T], *args: Any) -> T:
        if not self._started:
            self.start()
        job = _Job(function, args, asyncio.get_running_loop())
        lane.submit(job)
        return await job.done

    def close(self) -> None:
        self._ordinary.close()
        self._heavy.close()
        self._started = False
        gc.unfreeze()
