"""A real local HTTP endpoint standing in for EventGate (which cannot run here): it records the event
batches POSTed to it, as EventGate's `POST /v1/events` receives them."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class EventReceiver:
    """A real local HTTP endpoint standing in for EventGate: records POSTed event batches.

    Set `status` to make it refuse events (e.g. 500) to check that predictions do not depend on it.
    """

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.status = 201
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if receiver.status < 300:
                    receiver.events.extend(json.loads(body))
                self.send_response(receiver.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1/events"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def wait_for(self, rev_id: int, timeout_s: float = 10.0) -> dict[str, Any]:
        return self.wait_until(lambda event: event.get("rev_id") == rev_id, f"rev_id {rev_id}", timeout_s)

    def wait_until(self, matches: Callable[[dict[str, Any]], bool], what: str,
                   timeout_s: float = 10.0) -> dict[str, Any]:
        """The first received event for which `matches` is true; fails after `timeout_s`."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for event in list(self.events):
                if matches(event):
                    return event
            time.sleep(0.05)
        raise AssertionError(f"no event for {what} received; got {self.events}")

    def matching(self, matches: Callable[[dict[str, Any]], bool]) -> list[dict[str, Any]]:
        return [event for event in list(self.events) if matches(event)]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
