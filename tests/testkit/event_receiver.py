"""A real local HTTP endpoint standing in for EventGate (which cannot run here): it records the event
batches POSTed to it, as EventGate's `POST /v1/events` receives them."""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class EventReceiver:
    """A real local HTTP endpoint standing in for EventGate: records POSTed event batches.

    Set `status` to make it refuse events (e.g. 500), `hang_s` to make it answer late, or use `refusing()` to
    close its port, to check that predictions do not depend on it.
    """

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.status = 201
        self.hang_s = 0.0
        self.port = 0
        self._listen()
        self.url = f"http://127.0.0.1:{self.port}/v1/events"

    def _listen(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                time.sleep(receiver.hang_s)
                if receiver.status < 300:
                    receiver.events.extend(json.loads(body))
                self.send_response(receiver.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        class Server(ThreadingHTTPServer):
            daemon_threads = True  # a hanging answer must not hold up closing the receiver

        self.server = Server(("127.0.0.1", self.port), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @contextlib.contextmanager
    def refusing(self) -> Iterator[None]:
        """EventGate unreachable: nothing listens on its port until the block ends."""
        self.close()
        try:
            yield
        finally:
            self._listen()

    def wait_for(self, rev_id: int, timeout_s: float = 10.0) -> dict[str, Any]:
        return self.wait_until(lambda event: event.get("rev_id") == rev_id, f"rev_id {rev_id}", timeout_s)

    def wait_until(self, matches: Callable[[dict[str, Any]], bool], what: str,
                   timeout_s: float = 10.0, since: int = 0) -> dict[str, Any]:
        """The first event received after the first `since` ones for which `matches` is true (the receiver is
        shared by the session: `since=len(receiver.events)` ignores earlier tests' events)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for event in list(self.events)[since:]:
                if matches(event):
                    return event
            time.sleep(0.05)
        raise AssertionError(f"no event for {what} received; got {self.events}")

    def matching(self, matches: Callable[[dict[str, Any]], bool]) -> list[dict[str, Any]]:
        return [event for event in list(self.events) if matches(event)]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
