"""Lifecycle: SIGTERM drains in-flight requests and exits 0; unusable model binaries never make a server.

The SIGTERM victims are their own processes (a revscoring server and an outlink predictor, twice each: one
with room to drain, one whose in-flight request outlasts the grace period). A request is kept in flight by
the fault proxy delaying MediaWiki's answer.
"""

from __future__ import annotations

import random
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from reliability_kit import (
    MODEL_OF,
    good,
    predictor_spec,
    revscoring_spec,
    start_processes,
)
from testkit.servers import REPO_ROOT, ServerProcess, free_port, server_environment

pytestmark = pytest.mark.slow

IN_FLIGHT_S = 2.0  # how long MediaWiki takes to answer the in-flight request
SHORT_GRACE_S = 1.0
DRAIN_ENV = {"MEDIAWIKI_TIMEOUT_S": "10", "SHUTDOWN_GRACE_S": "15"}
SHORT_ENV = {"MEDIAWIKI_TIMEOUT_S": "10", "SHUTDOWN_GRACE_S": str(SHORT_GRACE_S)}


@pytest.fixture(scope="module")
def victims(proxy, model_paths) -> Iterator[dict[str, ServerProcess]]:
    specs = {
        "revscoring": revscoring_spec("sigterm-revscoring", model_paths["revscoring"], proxy.url,
                                      **DRAIN_ENV),
        "predictor": predictor_spec("sigterm-predictor", model_paths["outlink"], proxy.url, **DRAIN_ENV),
        "revscoring-short": revscoring_spec("grace-revscoring", model_paths["revscoring"], proxy.url,
                                            **SHORT_ENV),
        "predictor-short": predictor_spec("grace-predictor", model_paths["outlink"], proxy.url, **SHORT_ENV),
    }
    started = dict(zip(specs, start_processes(list(specs.values())), strict=True))
    yield started
    for server in started.values():
        server.stop(timeout_s=5)


def _in_flight(server: ServerProcess, kind: str, body: dict[str, Any]) -> tuple[threading.Thread, dict]:
    result: dict[str, Any] = {}

    def run() -> None:
        started = time.monotonic()
        try:
            result["response"] = server.predict(MODEL_OF[kind], body, timeout_s=60)
        except requests.RequestException as error:
            result["error"] = error
        result["seconds"] = time.monotonic() - started

    thread = threading.Thread(target=run)
    thread.start()
    return thread, result


def _wait_until_mediawiki_is_asked(proxy: Any) -> None:
    """The in-flight request has reached MediaWiki (the proxy), where the delay holds it."""
    deadline = time.monotonic() + 15
    while not proxy.requests:
        assert time.monotonic() < deadline, "the request never reached MediaWiki"
        time.sleep(0.05)
    time.sleep(0.2)


def _new_request_refused(server: ServerProcess, kind: str, body: dict[str, Any]) -> Any:
    try:
        response = server.predict(MODEL_OF[kind], body, timeout_s=10)
    except requests.ConnectionError:
        return "connection refused"
    return response.status_code


@pytest.mark.parametrize("kind", ["revscoring", "predictor"])
def test_sigterm_drains_in_flight_requests_refuses_new_ones_and_exits_0(victims, kind, proxy, servers,
                                                                       enwiki):
    server = victims[kind]
    expected = servers[kind].predict(MODEL_OF[kind], good(kind, enwiki)).json()
    proxy.clear()
    proxy.inject("delay", delay_s=IN_FLIGHT_S, times=1)
    thread, result = _in_flight(server, kind, good(kind, enwiki))
    _wait_until_mediawiki_is_asked(proxy)
    signalled = time.monotonic()
    server.process.send_signal(signal.SIGTERM)
    time.sleep(0.2)
    refused = _new_request_refused(server, kind, good(kind, enwiki))
    thread.join(30)
    code = server.process.wait(30)
    exit_s = time.monotonic() - signalled

    assert refused in (503, "connection refused")
    assert "response" in result, result
    assert result["response"].status_code == 200, result["response"].text
    assert result["response"].json() == expected
    assert code == 0, server.log_tail()
    assert exit_s < IN_FLIGHT_S + 5
    assert "draining" in server.log_path.read_text()


@pytest.mark.parametrize("kind", ["revscoring", "predictor"])
def test_sigterm_with_a_request_outlasting_the_grace_period_still_exits_in_time(victims, kind, proxy, enwiki):
    """Kubernetes kills the pod after its own grace period: the server must be gone before that."""
    server = victims[f"{kind}-short"]
    proxy.clear()
    proxy.inject("delay", delay_s=8, times=-1)
    thread, result = _in_flight(server, kind, good(kind, enwiki))
    _wait_until_mediawiki_is_asked(proxy)
    signalled = time.monotonic()
    server.process.send_signal(signal.SIGTERM)
    try:
        code = server.process.wait(SHORT_GRACE_S + 5)
    finally:
        proxy.clear()
    exit_s = time.monotonic() - signalled
    thread.join(30)
    assert exit_s < SHORT_GRACE_S + 5
    assert code == 0, server.log_tail()
    assert "Grace period over" in server.log_path.read_text()
    # The client of the abandoned request is told, not left hanging.
    assert "error" in result or result["response"].status_code >= 500


# Start-up with an unusable model binary ------------------------------------------------------------------


def _random_bytes(path: Path) -> None:
    path.write_bytes(random.Random(1234).randbytes(64 * 1024))


def _damage(kind: str, damage: str, tmp: Path, model_paths: dict[str, Path]) -> Path:
    path = tmp / f"{kind}-{damage}" / "model.bin"
    path.parent.mkdir(parents=True)
    own = model_paths["revscoring" if kind == "revscoring" else "outlink"]
    if damage == "empty":
        path.write_bytes(b"")
    elif damage == "random":
        _random_bytes(path)
    elif damage == "truncated":
        path.write_bytes(own.read_bytes()[: own.stat().st_size // 2])
    elif damage == "other-kind":  # a fastText file for revscoring, a revscoring file for outlink
        path.write_bytes(model_paths["outlink" if kind == "revscoring" else "revscoring"].read_bytes())
    elif damage == "directory":
        path.mkdir()
    elif damage == "other-type":  # a real revscoring model of another type: multiclass, not binary
        other = model_paths["revscoring"].parents[1] / "enwiki-articlequality" / "model.bin"
        path.write_bytes(other.read_bytes())
    return path  # "missing": never written


# What the message must say (one of), per damage.
REASONS = {
    "missing": ("does not exist", "No such file"),
    "empty": ("too short", "could not be read"),
    "random": ("not a fastText binary", "could not be read as a revscoring model"),
    "truncated": ("truncated",),
    "other-kind": ("not a fastText binary", "could not be read as a revscoring model"),
    # revscoring searches a folder for its one model file (wikiserve.model_files): an empty one has none
    "directory": ("Is a directory", "does not exist", "No model file in"),
    "other-type": ("does not fit a binary model type",),
}
CASES = [(kind, damage) for kind in ("revscoring", "predictor") for damage in REASONS
         if kind == "revscoring" or damage != "other-type"]


def _argv(kind: str, port: int) -> list[str]:
    module = "revscoring_server" if kind == "revscoring" else "outlink_server.predictor"
    return [sys.executable, "-m", module, f"--http_port={port}"]


def _accepts(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _wait_all(runs: list[dict[str, Any]], timeout_s: float = 180.0) -> None:
    """Waits until every process exits, probing each one's port meanwhile (listening: half-ready)."""
    deadline = time.monotonic() + timeout_s
    running = list(runs)
    while running and time.monotonic() < deadline:
        for run in list(running):
            run["listened"] = run.get("listened", False) or _accepts(run["port"])
            if run["process"].poll() is not None:
                running.remove(run)
        time.sleep(0.05)
    for run in running:
        run["process"].kill()


@pytest.fixture(scope="module")
def bad_starts(tmp_path_factory, model_paths, farm) -> dict[tuple[str, str], dict[str, Any]]:
    """Every (server kind, damage) start-up, run in parallel: exit code, output, whether it ever listened."""
    tmp = tmp_path_factory.mktemp("bad-models")
    runs = {}
    for kind, damage in CASES:
        path = _damage(kind, damage, tmp, model_paths)
        port = free_port()
        env = server_environment({"MODEL_PATH": str(path), "WIKI_URL": farm.url, "LOG_FORMAT": "json",
                                  "INFERENCE_NAME": "enwiki-damaging", "HTTP_PORT": str(port)})
        log = tmp / f"{kind}-{damage}.log"
        with open(log, "wb") as output:
            process = subprocess.Popen(_argv(kind, port), env=env, cwd=REPO_ROOT, stdout=output,
                                       stderr=subprocess.STDOUT)
        runs[(kind, damage)] = {"process": process, "port": port, "path": path, "log": log}
    _wait_all(list(runs.values()))
    for run in runs.values():
        run["code"] = run["process"].wait()
        run["output"] = run["log"].read_text(errors="replace")
    return runs


@pytest.mark.parametrize("kind, damage", CASES)
def test_an_unusable_model_binary_fails_start_up_clearly(bad_starts, kind, damage):
    run = bad_starts[(kind, damage)]
    assert run["code"] != 0, run["output"][-2000:]
    assert not run["listened"], "the server listened before failing: a half-ready server"
    assert str(run["path"]) in run["output"], run["output"][-2000:]
    assert "Cannot start" in run["output"], run["output"][-2000:]
    assert any(reason in run["output"] for reason in REASONS[damage]), run["output"][-2000:]
    assert "Traceback" not in run["output"], run["output"][-3000:]  # a message, not a crash
