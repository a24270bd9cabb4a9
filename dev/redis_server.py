"""A real Redis (Debian's redis-server, requirements/apt-dev.txt) on a free port, for the shared score cache:
the tests start their own, and `make run REDIS=1` starts one beside the farm (REDIS_URL points at it)."""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class RedisProcess:
    def __init__(self, port: int, process: subprocess.Popen, workdir: str) -> None:
        self.port = port
        self.url = f"redis://127.0.0.1:{port}/0"
        self.process = process
        self.workdir = workdir

    def command(self, *words: str) -> str:
        """One command over Redis's inline protocol, e.g. `command("DBSIZE")`; the first reply line."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=5) as sock:
            sock.sendall((" ".join(words) + "\r\n").encode())
            return sock.recv(65536).decode().split("\r\n")[0]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        shutil.rmtree(self.workdir, ignore_errors=True)


def start_redis(port: int | None = None, timeout_s: float = 10.0) -> RedisProcess:
    """redis-server on 127.0.0.1 and a free port, no persistence; ready when it answers PING."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError("redis-server is not installed: run `make setup` (requirements/apt-dev.txt).")
    port = port or free_port()
    workdir = tempfile.mkdtemp(prefix="redis-test-")
    argv = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    argv += ["--dir", workdir, "--logfile", ""]
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    server = RedisProcess(port, process, workdir)
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if server.command("PING") == "+PONG":
                return server
        except OSError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            server.stop()
            raise RuntimeError(f"redis-server did not start on port {port}")
        time.sleep(0.05)


@contextmanager
def running_redis(port: int | None = None) -> Iterator[RedisProcess]:
    server = start_redis(port)
    try:
        yield server
    finally:
        server.stop()
