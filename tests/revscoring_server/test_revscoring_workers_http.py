"""The worker processes through a real server: the heavy lane under load, and a worker killed mid-request.

One revscoring server (enwiki-damaging, the demo model, the farm) with one ordinary and one heavy worker.
Which worker does what is read from the kernel (/proc): each worker's nice value (the heavy lane runs at
the larger one) and the CPU time it used.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from testkit.servers import ServerProcess, start_server

ISVC = "enwiki-damaging"
ORDINARY_NICE, HEAVY_NICE = 2, 9  # set below and read back from /proc: the lanes are told apart by them


@pytest.fixture(scope="module")
def server(farm: Any, demo_models: Path) -> ServerProcess:
    env = {
        "INFERENCE_NAME": ISVC,
        "MODEL_PATH": str(demo_models / ISVC / "model.bin"),
        "WIKI_URL": farm.url,
        "EXTRACTION_WORKERS": "1",
        "EXTRACTION_NICE": str(ORDINARY_NICE),
        "HEAVY_EXTRACTION_NICE": str(HEAVY_NICE),
        "SCORE_CACHE_SIZE": "0",  # every request extracts: the lanes are what is watched
        "MAX_IN_FLIGHT": "0",  # nine requests at once on one worker: the lanes, not the admission bound
    }
    started = start_server("revscoring-workers", ["revscoring_server"], env, [ISVC])
    yield started
    assert started.stop() == 0, started.log_tail()


@pytest.fixture(scope="module")
def large(server: ServerProcess, farm: Any) -> tuple[int, dict[str, Any]]:
    """The farm's large revision and the server's answer for it, asked for alone."""
    rev_id = farm.manifest["enwiki"]["special"]["large_rev_id"]
    response = server.predict(ISVC, {"rev_id": rev_id}, timeout_s=120)
    assert response.status_code == 200, response.text
    return rev_id, response.json()


def _children(pid: int) -> list[int]:
    children: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        children += [int(child) for child in (task / "children").read_text().split()]
    return children


def _stat(pid: int) -> tuple[int, float]:
    """(nice, CPU seconds used) of a process, from /proc/<pid>/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return int(fields[16]), (int(fields[11]) + int(fields[12])) / ticks


def workers(server: ServerProcess) -> dict[str, dict[int, float]]:
    """The server's worker processes by lane: {"ordinary": {pid: cpu_s}, "heavy": {pid: cpu_s}}."""
    base_nice, _ = _stat(server.process.pid)
    lanes: dict[str, dict[int, float]] = {"ordinary": {}, "heavy": {}}
    for pid in _children(server.process.pid):
        try:
            nice, cpu = _stat(pid)
        except FileNotFoundError:
            continue  # exited meanwhile
        if nice == base_nice + ORDINARY_NICE:
            lanes["ordinary"][pid] = cpu
        elif nice == base_nice + HEAVY_NICE:
            lanes["heavy"][pid] = cpu
    return lanes


def _cpu_used(before: dict[int, float], after: dict[int, float]) -> float:
    return sum(after[pid] - before.get(pid, 0.0) for pid in after)


def test_the_large_revision_is_scored_in_the_heavy_lane_under_load(server, farm, large):
    (large, expected_large), ordinary = large, farm.manifest["enwiki"]["special"]["good_rev_id"]
    expected_ordinary = server.predict(ISVC, {"rev_id": ordinary}, timeout_s=60)
    assert expected_ordinary.status_code == 200, expected_ordinary.text
    lanes = workers(server)
    assert len(lanes["ordinary"]) == 1 and len(lanes["heavy"]) == 1, lanes  # EXTRACTION_WORKERS=1 per lane
    with ThreadPoolExecutor(9) as pool:
        heavy = pool.submit(server.predict, ISVC, {"rev_id": large}, timeout_s=120)
        light = [pool.submit(server.predict, ISVC, {"rev_id": ordinary}, timeout_s=120) for _ in range(8)]
        answers = [future.result() for future in light]
        heavy_answer = heavy.result()
    after = workers(server)
    assert heavy_answer.status_code == 200, heavy_answer.text
    assert heavy_answer.json() == expected_large
    assert all(a.status_code == 200 and a.json() == expected_ordinary.json() for a in answers)
    heavy_cpu = _cpu_used(lanes["heavy"], after["heavy"])
    ordinary_cpu = _cpu_used(lanes["ordinary"], after["ordinary"])
    # The 500 KB revision's tokenizing took its CPU in the heavy lane; the eight small ones in the other.
    assert heavy_cpu > 0.2, (heavy_cpu, ordinary_cpu)
    assert heavy_cpu > ordinary_cpu, (heavy_cpu, ordinary_cpu)


def _busy_worker(server: ServerProcess, lane: str, timeout_s: float = 30) -> int:
    """The worker of `lane` that is using CPU now (it has the job)."""
    deadline = time.monotonic() + timeout_s
    before = workers(server)[lane]
    while time.monotonic() < deadline:
        time.sleep(0.1)
        now = workers(server)[lane]
        for pid, cpu in now.items():
            if cpu - before.get(pid, cpu) >= 0.05:
                return pid
        before = now
    raise AssertionError(f"no {lane} worker became busy")


def test_a_worker_killed_mid_request_is_a_503_then_the_replaced_pool_answers(server, large):
    large, expected = large
    result: dict[str, Any] = {}
    request = threading.Thread(
        target=lambda: result.setdefault("response", server.predict(ISVC, {"rev_id": large}, timeout_s=120))
    )
    request.start()
    victim = _busy_worker(server, "heavy")
    os.kill(victim, signal.SIGKILL)  # what the OOM killer does
    request.join(120)
    response = result["response"]
    assert response.status_code == 503, response.text
    assert "worker process died" in response.json()["error"] and "Traceback" not in response.text
    again = server.predict(ISVC, {"rev_id": large}, timeout_s=120)
    assert again.status_code == 200, again.text
    assert again.json() == expected
    assert victim not in workers(server)["heavy"]
    assert server.process.poll() is None
