"""A stand-in for the outlink predictor, speaking HTTP/1.1 over a raw socket so a test controls what a real
predictor cannot be made to do on demand: close a kept-alive connection instead of answering, or answer late.
It records the headers of every request and how many connections were opened."""

from __future__ import annotations

import asyncio
import json
import threading
from typing import Any

ANSWER = {"prediction": {"article": "https://en.wikipedia.org/wiki/Stand-in", "results": []}}


class StandInPredictor:
    def __init__(self) -> None:
        self.headers: list[dict[str, str]] = []
        self.connections = 0
        self.drop_reused = False  # close a kept-alive connection when its second request arrives
        self.delay_s = 0.0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.base_events.Server | None = None
        self.port = 0

    def start(self) -> StandInPredictor:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)
        return self

    async def _start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    def stop(self) -> None:
        async def close() -> None:
            assert self._server is not None
            self._server.close()

        asyncio.run_coroutine_threadsafe(close(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        served = 0
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                headers = _headers(head)
                await reader.readexactly(int(headers.get("content-length", "0")))
                self.headers.append(headers)
                if served and self.drop_reused:
                    return  # a kept-alive connection the predictor closed: no answer
                served += 1
                await asyncio.sleep(self.delay_s)
                body = json.dumps(ANSWER).encode()
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                             + f"content-length: {len(body)}\r\n\r\n".encode() + body)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            return
        finally:
            writer.close()


def _headers(head: bytes) -> dict[str, Any]:
    lines = head.decode("latin-1").split("\r\n")[1:]
    return {name.strip().lower(): value.strip() for name, _, value in (line.partition(":") for line in lines)
            if name}
