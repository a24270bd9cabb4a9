"""A misbehaving MediaWiki (timeout, garbage, errors, unreachable): a 5xx naming the API, never a hang."""

from __future__ import annotations

import signal
import sys
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from threading import Thread
from typing import Any

import pytest
from testkit.servers import ServerProcess, free_port


class BadMediaWiki:
    """A real HTTP server that answers the Action API badly, in the way `mode` says."""

    def __init__(self) -> None:
        self.mode = "garbage"
        upstream = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                if upstream.mode == "hang":
                    time.sleep(4)
                status, body = (
                    (500, b"oops") if upstream.mode == "error" else (200, b"<html>not the API</html>")
                )
                self.send_response(status)
                self.send_header("Content-Type", "text/html")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        Thread(target=self.server.serve_forever, daemon=True).start()


ENV = {"MEDIAWIKI_TIMEOUT_S": "1", "MEDIAWIKI_ATTEMPTS": "2", "MEDIAWIKI_BACKOFF_CAP_S": "0.1"}


@pytest.fixture(scope="module")
def servers(tiny_models) -> Iterator[dict[str, Any]]:
    """One server against the bad MediaWiki, one against a port nobody listens on (started together)."""
    upstream = BadMediaWiki()
    common = {**ENV, "INFERENCE_NAME": "enwiki-damaging", "MODEL_PATH": str(tiny_models["binary"])}
    started = {}
    for name, wiki_url in (("bad", upstream.url), ("unreachable", f"http://127.0.0.1:{free_port()}")):
        port = free_port()
        started[name] = ServerProcess(
            f"revscoring-{name}-wiki",
            [sys.executable, "-m", "revscoring_server", f"--http_port={port}"],
            {**common, "WIKI_URL": wiki_url},
            port,
        )
    try:
        for server in started.values():
            server.wait_ready(["enwiki-damaging"])
        yield {**started, "upstream": upstream}
    finally:
        for server in started.values():  # SIGTERM both first: they shut down in parallel
            server.process.send_signal(signal.SIGTERM)
        for server in started.values():
            server.stop()
        upstream.server.shutdown()


@pytest.mark.parametrize(
    "mode, status, fragment",
    [
        ("hang", 504, "did not answer within 1 s"),
        ("garbage", 502, "answered with invalid JSON"),
        ("error", 503, "answered HTTP 500"),
    ],
)
def test_a_misbehaving_mediawiki_is_a_5xx_naming_the_api(servers, mode, status, fragment):
    servers["upstream"].mode = mode
    started = time.monotonic()
    response = servers["bad"].predict("enwiki-damaging", {"rev_id": 12345}, timeout_s=30)
    assert response.status_code == status, response.text
    assert "MediaWiki API" in response.json()["error"] and fragment in response.json()["error"]
    assert time.monotonic() - started < 10  # two attempts of at most 1 s each, plus a short backoff


def test_an_unreachable_mediawiki_is_a_503(servers):
    response = servers["unreachable"].predict("enwiki-damaging", {"rev_id": 12345}, timeout_s=30)
    assert response.status_code == 503, response.text
    assert "MediaWiki API" in response.json()["error"] and "unreachable" in response.json()["error"]
