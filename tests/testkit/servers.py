"""Start real model servers as subprocesses, the way KServe runs them, and talk to them over HTTP."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import requests

REPO_ROOT = Path(__file__).resolve().parents[2]
LOG_DIR = REPO_ROOT / ".state" / "test-logs"
SOURCE_PATHS = tuple(
    REPO_ROOT / folder for folder in ("tests", "python", "revscoring", "outlink-topic-model")
)


# What a server process gets from the caller's environment; everything else is what the test passes. A
# developer's LOG_LEVEL=DEBUG or WIKI_URL in the shell must not change what a test sees.
INHERITED_VARIABLES = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "NLTK_DATA")


def server_environment(env: Mapping[str, str]) -> dict[str, str]:
    """The complete environment of a server subprocess: a few inherited basics plus `env`."""
    inherited = {name: os.environ[name] for name in INHERITED_VARIABLES if name in os.environ}
    # The checkout's own source folders come first (the venv's .pth file may name another checkout's, e.g.
    # a git worktree sharing the venv); tests/ is added for test-only servers.
    return {**inherited, "PYTHONPATH": os.pathsep.join(str(path) for path in SOURCE_PATHS), **env}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ServerProcess:
    """A model server subprocess listening on `port`; its output goes to a log file under .state/test-logs."""

    def __init__(self, name: str, argv: Sequence[str], env: Mapping[str, str], port: int) -> None:
        self.name = name
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        LOG_DIR.mkdir(parents=True, exist_ok=True)
        self.log_path = LOG_DIR / f"{name}-{port}.log"
        self._log = open(self.log_path, "wb")
        self.process = subprocess.Popen(
            list(argv), env=server_environment(env), cwd=REPO_ROOT, stdout=self._log, stderr=subprocess.STDOUT
        )

    def wait_ready(self, model_names: Sequence[str], timeout_s: float = 120.0) -> None:
        """Waits until every model answers ready on `GET /v1/models/<name>`; fails with the server's log."""
        deadline = time.monotonic() + timeout_s
        pending = list(model_names)
        while pending:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.process.returncode}:\n{self.log_tail()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.name} not ready after {timeout_s} s:\n{self.log_tail()}")
            try:
                if requests.get(f"{self.url}/v1/models/{pending[0]}", timeout=2).status_code == 200:
                    pending.pop(0)
                    continue
            except requests.RequestException:
                pass
            time.sleep(0.2)

    def predict(
        self, model: str, body: object, timeout_s: float = 60.0, **kwargs: object
    ) -> requests.Response:
        return requests.post(f"{self.url}/v1/models/{model}:predict", json=body, timeout=timeout_s, **kwargs)

    def log_tail(self, lines: int = 60) -> str:
        self._log.flush()
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self, timeout_s: float = 30.0) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()
        return self.process.returncode


def start_server(
    name: str,
    module_args: Sequence[str],
    env: Mapping[str, str],
    model_names: Sequence[str],
    port: int | None = None,
    timeout_s: float = 120.0,
) -> ServerProcess:
    """Starts `python -m <module_args...>` with `env` (and --http_port); waits until its models are ready."""
    port = port or free_port()
    argv = [sys.executable, "-m", *module_args, f"--http_port={port}"]
    server = ServerProcess(name, argv, {**env, "HTTP_PORT": str(port)}, port)
    try:
        server.wait_ready(model_names, timeout_s)
    except Exception:
        server.stop()
        raise
    return server
