"""The worker processes that run extraction off the event loop (revscoring_server.workers)."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path

import pytest

from revscoring_server.fetch import ApiDocs
from revscoring_server.scoring import RevisionJob
from revscoring_server.workers import (
    ExtractionTimeout,
    WorkerCrashed,
    WorkerPool,
    job_text_bytes,
    pool_from_env,
    usable_cores,
)
from wikiserve.config import SettingsError


def _where() -> tuple[int, int]:
    return os.getpid(), os.nice(0)


def _die() -> None:
    os._exit(3)  # what the OOM killer does to a worker, as far as the pool can tell


def _revision_doc(text: str) -> dict:
    return {"query": {"pages": {"1": {"revisions": [{"slots": {"main": {"*": text}}}]}}}}


def test_job_weight_is_the_text_of_the_revision_and_its_parent():
    docs = ApiDocs(rev_id=2, revision=_revision_doc("a" * 700), parent_id=1, parent=_revision_doc("b" * 300))
    assert job_text_bytes((RevisionJob((("damaging", "m.bin"),), 2, docs),)) == 1000
    assert job_text_bytes((RevisionJob((("damaging", "m.bin"),), 3, ApiDocs(rev_id=3, revision={})),)) == 0
    assert job_text_bytes(("not a job",)) == 0


def _cores_this_runner_allows() -> int:
    """Worked out here from the kernel's own files: the CPUs of the affinity set, capped by the cgroup v2
    CPU quota when there is one (a CPU-limited CI runner or container)."""
    cores = len(os.sched_getaffinity(0))
    cpu_max = Path("/sys/fs/cgroup/cpu.max")
    if cpu_max.exists():
        quota, period = cpu_max.read_text().split()[:2]
        if quota != "max":
            cores = min(cores, max(1, -(-int(quota) // int(period))))
    return cores


def test_pool_size_comes_from_the_environment():
    assert pool_from_env({"EXTRACTION_WORKERS": "0"}) is None
    pool = pool_from_env(
        {"EXTRACTION_WORKERS": "3", "HEAVY_REVISION_BYTES": "1234", "EXTRACTION_NICE": "1",
         "HEAVY_EXTRACTION_NICE": "7"}
    )
    assert pool is not None and pool.workers == 3 and pool.heavy_bytes == 1234
    assert (pool.nice, pool.heavy_nice) == (1, 7)
    default = pool_from_env({})
    assert default is not None and default.workers == _cores_this_runner_allows()
    assert (default.heavy_bytes, default.nice, default.heavy_nice) == (150_000, 3, 10)  # documented defaults


@pytest.mark.parametrize(
    "name, value",
    [("EXTRACTION_WORKERS", "-2"), ("HEAVY_REVISION_BYTES", "big"), ("EXTRACTION_NICE", "-1"),
     ("HEAVY_EXTRACTION_NICE", "99")],
)
def test_a_bad_pool_setting_is_refused_naming_it(name, value):
    with pytest.raises(SettingsError, match=name):
        pool_from_env({name: value})


def test_usable_cores_respects_the_container_cpu_limit(tmp_path):
    affinity = len(os.sched_getaffinity(0))
    cpu_max = tmp_path / "cpu.max"
    cpu_max.write_text("max 100000\n")
    assert usable_cores(cpu_max) == affinity
    cpu_max.write_text("50000 100000\n")  # half a core: still one worker
    assert usable_cores(cpu_max) == 1
    cpu_max.write_text(f"{100000 * (affinity + 8)} 100000\n")  # a limit above the affinity changes nothing
    assert usable_cores(cpu_max) == affinity
    assert usable_cores(tmp_path / "missing") == affinity


@pytest.fixture
def pool():
    # weight = the first argument, so a test picks the lane
    workers = WorkerPool(2, heavy_bytes=100, weigh=lambda args: args[0] if args else 0)
    workers.start()
    yield workers
    workers.close()


def _lane_probe(weight: int) -> tuple[int, int]:
    return _where()


async def test_jobs_run_in_other_processes_and_heavy_ones_at_lower_priority(pool):
    ordinary_pid, ordinary_nice = await pool.run(_lane_probe, 1)
    heavy_pid, heavy_nice = await pool.run(_lane_probe, 500)
    assert os.getpid() not in (ordinary_pid, heavy_pid) and ordinary_pid != heavy_pid
    assert ordinary_nice == os.nice(0) + pool.nice
    assert heavy_nice == os.nice(0) + pool.heavy_nice


def _crash(weight: int) -> None:
    _die()


async def test_a_dead_worker_fails_its_request_and_the_pool_recovers(pool):
    with pytest.raises(WorkerCrashed):
        await pool.run(_crash, 1)
    pid, _ = await pool.run(_lane_probe, 1)  # a new set of workers serves the next request
    assert pid != os.getpid()


async def test_extraction_without_workers_runs_in_one_thread_one_job_at_a_time():
    """EXTRACTION_WORKERS=0: never two extractions at once (revscoring's native code is not thread-safe; the
    loop's default pool of several threads crashed the server with SIGSEGV at concurrency 8)."""
    import asyncio
    import threading

    from revscoring_server.executor import one_thread

    executor, spans = one_thread(), []

    def job() -> None:
        started = time.monotonic()
        time.sleep(0.2)
        spans.append((started, time.monotonic(), threading.get_ident()))

    await asyncio.gather(*(executor.run(job) for _ in range(3)))
    spans.sort()
    assert len({thread for _, _, thread in spans}) == 1
    # one after the other: each starts when the one before it has ended
    assert all(later[0] >= earlier[1] for earlier, later in zip(spans, spans[1:], strict=False))
def _sleep(weight: int, seconds: float) -> str:
    time.sleep(seconds)  # Python code: the worker's alarm interrupts it
    return "done"


def _stuck(weight: int, seconds: float) -> str:
    # As native code that never returns to the interpreter: the alarm's Python handler cannot run while the
    # signal is blocked, so only the server side can give the job up.
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM})
    time.sleep(seconds)
    return "done"


async def test_a_job_past_the_deadline_is_interrupted_in_its_worker_which_goes_on():
    workers = WorkerPool(1, heavy_bytes=100, weigh=lambda args: args[0], deadline_s=0.3)
    workers.start()
    try:
        ordinary_pid, _ = await workers.run(_lane_probe, 1)
        started = time.monotonic()
        with pytest.raises(ExtractionTimeout, match="longer than 0.3 s") as caught:
            await workers.run(_sleep, 1, 30.0)
        assert time.monotonic() - started < 10  # not the job's 30 s
        assert caught.value.status == 504 and caught.value.error_type == "TimeoutError"
        assert await workers.run(_sleep, 1, 0.0) == "done"
        # The same worker answers: interrupted, not killed.
        assert (await workers.run(_lane_probe, 1))[0] == ordinary_pid
    finally:
        workers.close()


def _gone(pid: int, timeout_s: float = 10.0) -> bool:
    """Whether process `pid` is gone (killed and reaped by its pool) within `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.05)
    return False


async def test_a_worker_that_cannot_be_interrupted_is_replaced_and_its_lane_goes_on():
    workers = WorkerPool(1, heavy_bytes=100, weigh=lambda args: args[0], deadline_s=0.3, stuck_grace_s=0.5)
    workers.start()
    try:
        stuck_pid, _ = await workers.run(_lane_probe, 500)
        started = time.monotonic()
        with pytest.raises(ExtractionTimeout):
            await workers.run(_stuck, 500, 60.0)
        assert time.monotonic() - started < 20  # given up at 2 x 0.3 + 0.5 s (checked every ~0.3 s)
        new_pid, _ = await workers.run(_lane_probe, 500)  # the heavy lane goes on, with new workers
        assert new_pid != stuck_pid
        assert _gone(stuck_pid)  # the stuck worker was killed
        assert await workers.run(_sleep, 1, 0.0) == "done"  # the ordinary lane was not touched
    finally:
        workers.close()


def _echo(weight: int, blob: bytes) -> bytes:
    return blob[::-1]


def test_large_jobs_and_answers_cross_the_pipes_whole_under_uvloop():
    """The servers run on uvloop, whose watching a pipe makes it non-blocking: a job or an answer larger than
    the pipe's buffer must still go across whole (it first failed as 'A worker process is gone')."""
    import asyncio

    import uvloop

    workers = WorkerPool(1, heavy_bytes=100, weigh=lambda args: args[0])
    workers.start()

    async def several() -> list[bytes]:
        blobs = [os.urandom(3_000_000) for _ in range(3)]
        answers = [await workers.run(_echo, 1, blob) for blob in blobs]  # one after the other: one worker
        # two at once in the heavy lane (as many as it admits for one worker): one waits for the other
        answers += await asyncio.gather(*(workers.run(_echo, 500, blob) for blob in blobs[:2]))
        assert answers == [blob[::-1] for blob in blobs + blobs[:2]]
        return answers

    try:
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runner.run(several())
    finally:
        workers.close()


def test_the_bound_shrinks_while_jobs_queue_longer_than_on_cores_of_their_own_and_grows_back():
    from revscoring_server.workers import AdaptiveBound
    from wikiserve.admission import Admission, Overloaded

    admission = Admission(16)
    bound = AdaptiveBound(admission, workers=2, depth=8, period_s=0.0)  # adjusts at every job
    for _ in range(3):
        bound.observe(waited_s=0.030, cpu_s=0.004)  # within 8 jobs of 4 ms: as on cores of their own
    assert admission.limit == 16
    seen = []
    for _ in range(20):
        bound.observe(waited_s=0.080, cpu_s=0.004)  # twice that: the cores are taken from the workers
        seen.append(admission.limit)
    assert seen[0] < 16 and seen == sorted(seen, reverse=True) and seen[-1] == 4  # down to 2 per worker
    for _ in range(30):
        bound.observe(waited_s=0.001, cpu_s=0.004)  # the queue is gone: back, one at a time
    assert admission.limit == 16
    admission.acquire(16)
    with pytest.raises(Overloaded, match="limit of 16"):  # the bound admits what it says, then refuses
        admission.acquire(1)


async def test_the_pool_reports_each_jobs_wait_and_cpu_time_to_the_bound():
    from wikiserve.admission import Admission

    workers = WorkerPool(1, heavy_bytes=100, weigh=lambda args: args[0])
    workers.start()
    seen: list[tuple[float, float]] = []
    try:
        bound = workers.adapt(Admission(8))
        assert bound is not None and workers.adapt(Admission(0)) is None  # no bound, nothing to adapt
        bound.observe = lambda waited_s, cpu_s: seen.append((waited_s, cpu_s))
        workers._ordinary.on_answer = bound.observe
        import asyncio

        await asyncio.gather(*(workers.run(_spin, 1, 0.2) for _ in range(2)))
    finally:
        workers.close()
    (first_wait, first_cpu), (second_wait, second_cpu) = sorted(seen)
    assert first_cpu >= 0.15 and second_cpu >= 0.15  # the job's own CPU, measured in the worker
    assert first_wait < 0.1 <= second_wait  # one worker: the second job waited for the first


def _spin(weight: int, seconds: float) -> None:
    end = time.process_time() + seconds
    while time.process_time() < end:
        pass


def test_the_workers_exit_when_the_server_is_killed():
    """A worker holds no copy of the server's end of any pipe, so when the server dies (SIGKILL: nothing of it
    runs) every worker, in both lanes, reads an end of file and exits instead of waiting forever."""
    import subprocess
    import sys
    import textwrap

    script = textwrap.dedent(
        """
        import os, sys, time
        from revscoring_server.workers import WorkerPool
        pool = WorkerPool(2, heavy_bytes=100, weigh=lambda args: args[0])
        pool.start()
        # a replacement forked later, as after a crash, inherits the ends of both lanes
        pool._ordinary._replace(pool._ordinary.workers[0])
        print(" ".join(str(w.process.pid) for lane in (pool._ordinary, pool._heavy) for w in lane.workers))
        sys.stdout.flush()
        time.sleep(60)
        """
    )
    server = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        pids = [int(pid) for pid in server.stdout.readline().split()]
        assert len(pids) == 4
        server.kill()
        server.wait(10)
        for pid in pids:
            assert _gone_or_zombie(pid), f"worker {pid} outlived the server"
    finally:
        server.kill()


def _gone_or_zombie(pid: int, timeout_s: float = 10.0) -> bool:
    """Whether process `pid` has exited within `timeout_s` (an orphan is reaped by init; here a zombie of a
    dead parent counts as exited)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{pid}/stat") as stat:
                if stat.read().split(") ")[1].startswith("Z"):
                    return True
        except (FileNotFoundError, ProcessLookupError):
            return True
        time.sleep(0.05)
    return False


def _hold(weight: int, release: str, padding: str = "") -> int:
    """Runs until the file `release` exists (at most 20 s); returns the worker's pid (`padding` makes the
    job as large as wanted)."""
    deadline = time.monotonic() + 20
    while not os.path.exists(release) and time.monotonic() < deadline:
        time.sleep(0.01)
    return os.getpid()


async def _until(condition, timeout_s: float = 10.0) -> None:
    import asyncio

    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        await asyncio.sleep(0.01)


@contextlib.asynccontextmanager
async def _one_running_one_in_its_pipe(tmp_path):
    """A pool of one ordinary worker running a held job, with a second small job already in its pipe; both
    end when the file `release` is written."""
    import asyncio

    workers = WorkerPool(1, heavy_bytes=10**9, weigh=lambda args: args[0])
    workers.start()
    lane = workers._ordinary
    release = str(tmp_path / "release")
    try:
        first = asyncio.ensure_future(workers.run(_hold, 1, release))
        await _until(lambda: len(lane.workers[0].jobs) == 1)
        second = asyncio.ensure_future(workers.run(_hold, 1, release))
        await _until(lambda: len(lane.workers[0].jobs) == 2)
        yield workers, lane, release, first, second
    finally:
        workers.close()


async def test_a_busy_workers_next_small_job_waits_in_its_pipe_and_a_large_one_in_the_queue(tmp_path):
    import asyncio

    from revscoring_server.workers import PIPELINED_JOB_BYTES

    async with _one_running_one_in_its_pipe(tmp_path) as (workers, lane, release, first, second):
        large = asyncio.ensure_future(workers.run(_hold, 1, release, "x" * PIPELINED_JOB_BYTES))
        await asyncio.sleep(0.2)
        # the small one is in the worker's pipe, the large one waits in the lane's queue
        assert len(lane.workers[0].jobs) == 2 and len(lane.queue) == 1
        open(release, "w").close()
        assert await first == await second == await large


async def test_the_job_waiting_in_a_dead_workers_pipe_is_run_by_its_replacement(tmp_path):
    async with _one_running_one_in_its_pipe(tmp_path) as (_, lane, release, first, second):
        victim = lane.workers[0].process.pid
        os.kill(victim, signal.SIGKILL)  # what the OOM killer does, with a job running and one in the pipe
        with pytest.raises(WorkerCrashed):
            await first
        open(release, "w").close()
        assert await second != victim  # never started in the dead worker: run again by the new one
