"""Subprocesses of a benchmark run: start (optionally held to some cores), wait until ready, measure, stop."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def http_ok(url: str, timeout_s: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            return response.status == 200
    except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
        return False


@dataclass
class Child:
    """A started subprocess; `ready_s` is the time from start until its readiness URL answered 200."""

    name: str
    process: subprocess.Popen[bytes]
    log_path: Path
    url: str = ""
    ready_s: float = float("nan")
    started: float = field(default_factory=time.monotonic)

    def wait_ready(self, probe_url: str, timeout_s: float = 180.0) -> float:
        deadline = self.started + timeout_s
        while not http_ok(probe_url):
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.process.returncode}:\n{self.log_tail()}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"{self.name} not ready after {timeout_s:.0f} s:\n{self.log_tail()}")
            time.sleep(0.05)
        self.ready_s = time.monotonic() - self.started
        return self.ready_s

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def memory(self) -> Memory:
        return tree_memory(self.process.pid)

    def stop(self, grace_s: float = 30.0) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(grace_s)
            except subprocess.TimeoutExpired:
                _kill_tree(self.process.pid)
                self.process.wait()


def start_child(
    name: str,
    module_args: Sequence[str],
    env: Mapping[str, str],
    log_dir: Path,
    *,
    cwd: Path,
    cpus: set[int] | None = None,
) -> Child:
    """`python -m <module_args>` with `env` added; with `cpus`, it and its children run there only."""
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{name}.log"
    # This checkout's source folders first: the venv's .pth may name another checkout's (a worktree).
    sources = os.pathsep.join(str(REPO / part) for part in ("python", "revscoring", "outlink-topic-model"))
    full_env = {**os.environ, "PYTHONPATH": sources, **env}

    def restrict() -> None:  # runs in the child before exec; children inherit the affinity
        if cpus is not None:
            os.sched_setaffinity(0, cpus)

    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", *module_args],
            env=full_env,
            cwd=cwd,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            preexec_fn=restrict,
        )
    return Child(name, process, log_path)


@dataclass(frozen=True)
class Memory:
    """Memory of a process tree. `pss_mb` shares pages between the processes fairly (copy-on-write after a
    fork is counted once in total); `rss_mb` is the main process alone, as `ps` shows it."""

    rss_mb: float
    pss_mb: float
    processes: int


def tree_memory(pid: int) -> Memory:
    root = psutil.Process(pid)
    processes = [root, *root.children(recursive=True)]
    pss = 0
    for process in processes:
        try:
            pss += process.memory_full_info().pss
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return Memory(root.memory_info().rss / 2**20, pss / 2**20, len(processes))


def _kill_tree(pid: int) -> None:
    try:
        root = psutil.Process(pid)
        for process in [*root.children(recursive=True), root]:
            process.kill()
    except psutil.NoSuchProcess:
        pass


def tree_cpu(pid: int) -> tuple[float, float]:
    """CPU seconds (user + system) used so far by the process `pid` and by its live children."""
    try:
        root = psutil.Process(pid)
        own = root.cpu_times()
        children = 0.0
        for child in root.children(recursive=True):
            try:
                times = child.cpu_times()
                children += times.user + times.system
            except psutil.NoSuchProcess:
                continue
        return own.user + own.system, children
    except psutil.NoSuchProcess:
        return 0.0, 0.0
