"""A recording HTTP forwarder standing in for Lift Wing's ingress (a stand-in: no Istio gateway here).

The `ores` image calls every InferenceService at one endpoint and names the service in the `Host` header;
this forwarder records each call (path, Host, JSON body, start and end times) and passes it to a real
model server. Per path, a call can instead be answered with an HTTP status or delayed.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web


@dataclass
class Call:
    path: str
    host: str
    body: Any
    started: float
    ended: float = 0.0


@dataclass
class Override:
    status: int | None = None  # answer this status instead of forwarding
    delay_s: float = 0.0  # wait this long before forwarding


@dataclass
class RecordingProxy:
    upstream: str
    calls: list[Call] = field(default_factory=list)
    overrides: dict[str, Override] = field(default_factory=dict)  # by path
    port: int = 0

    def __post_init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> RecordingProxy:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)
        return self

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    def clear(self) -> None:
        self.calls.clear()
        self.overrides.clear()

    async def _start(self) -> None:
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120))
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, handle_signals=False, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def _stop(self) -> None:
        if self._runner:
            await self._runner.cleanup()
        if self._session:
            await self._session.close()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        call = Call(
            request.path, request.headers.get("Host", ""), json.loads(raw) if raw else None, time.monotonic()
        )
        self.calls.append(call)
        try:
            override = self.overrides.get(request.path, Override())
            if override.delay_s:
                await asyncio.sleep(override.delay_s)
            if override.status is not None:
                return web.Response(status=override.status, text="injected failure")
            assert self._session is not None
            async with self._session.request(
                request.method,
                f"{self.upstream}{request.path_qs}",
                data=raw,
                headers={"Content-Type": request.headers.get("Content-Type", "application/json")},
            ) as response:
                body = await response.read()
                return web.Response(status=response.status, body=body, content_type=response.content_type)
        finally:
            call.ended = time.monotonic()
