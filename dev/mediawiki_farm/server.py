"""Runs the farm with PHP's built-in web server (`php -S`) and a Host-routing router script."""

from __future__ import annotations

import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dev.mediawiki_farm.build import DEFAULT_MW_DIR, FarmError, FarmPaths, load_manifest, setup

DEFAULT_PORT = 8180
DEFAULT_WORKERS = 4
PROBE_HOST = "en.wikipedia.org"


@dataclass
class RunningFarm:
    """A started farm: `url` is the single endpoint; send `Host: <wiki domain>` to pick a wiki."""

    url: str
    port: int
    manifest: dict[str, Any]
    state_dir: Path
    process: subprocess.Popen[bytes] | None = field(repr=False)  # None: reused a farm started elsewhere

    @property
    def api_url(self) -> str:
        return f"{self.url}/w/api.php"


def probe(url: str, host: str = PROBE_HOST, timeout: float = 5.0) -> bool:
    """True when the API answers a siteinfo query for `host`."""
    request = urllib.request.Request(f"{url}/w/api.php?action=query&meta=siteinfo&format=json",
                                     headers={"Host": host})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status == 200 and b'"general"' in response.read()
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return False


def start_server(paths: FarmPaths, port: int, workers: int) -> subprocess.Popen[bytes]:
    """`php -S` in its own process group (so its worker processes are stopped with it)."""
    log = open(paths.state_dir / f"server-{port}.log", "ab")  # noqa: SIM115 - owned by the process
    env = {**os.environ, "PHP_CLI_SERVER_WORKERS": str(workers)}
    try:
        # -q: no access log line per request (the benchmark sends many); PHP errors are still logged.
        command = ["php", "-q", "-S", f"127.0.0.1:{port}", "-t", str(paths.mw_dir), str(paths.router)]
        return subprocess.Popen(command, cwd=paths.mw_dir, env=env, stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    finally:
        log.close()


def stop_server(process: subprocess.Popen[bytes], grace: float = 5.0) -> None:
    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(grace)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def wait_ready(process: subprocess.Popen[bytes], url: str, timeout: float, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise FarmError(f"php -S exited with {process.returncode}; see {log}")
        if probe(url, timeout=2.0):
            return
        time.sleep(0.1)
    raise FarmError(f"the farm did not answer at {url} within {timeout:.0f}s; see {log}")


@contextmanager
def running_farm(port: int = DEFAULT_PORT, state_dir: Path | None = None, workers: int = DEFAULT_WORKERS,
                 mw_dir: Path = DEFAULT_MW_DIR, ready_timeout: float = 30.0,
                 quiet: bool = True, reuse: bool = False) -> Iterator[RunningFarm]:
    """Sets the farm up if needed, serves it on 127.0.0.1:`port`, stops the server on exit (also Ctrl-C).

    With `reuse=True`, a farm already answering on the port (e.g. `python -m dev.mediawiki_farm serve`)
    is used as it is and left running.
    """
    manifest_path = setup(state_dir, mw_dir=mw_dir, quiet=quiet)
    paths = FarmPaths(manifest_path.parent, mw_dir)
    url = f"http://127.0.0.1:{port}"
    if probe(url, timeout=1.0):
        if not reuse:
            raise FarmError(f"something already answers on {url}; stop it or pick another port")
        yield RunningFarm(url, port, load_manifest(paths.state_dir), paths.state_dir, None)
        return
    process = start_server(paths, port, workers)
    try:
        wait_ready(process, url, ready_timeout, paths.state_dir / f"server-{port}.log")
        yield RunningFarm(url, port, load_manifest(paths.state_dir), paths.state_dir, process)
    finally:
        stop_server(process)
