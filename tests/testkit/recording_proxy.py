"""A recording HTTP forwarder standing in for Lift Wing's ingress (a stand-in: no Istio gateway here).

The `ores` image calls every InferenceService at one endpoint and names the service in the `Host` header;
this forwarder records each call (path, Host, JSON body, start and end times) and passes it to a real
model server. Per path, a call can instead be answered with an HTTP status or delayed.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from testkit.loopback_forwarder import LoopbackForwarder


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


class RecordingProxy(LoopbackForwarder):
    upstream_timeout_s = 120.0

    def __init__(self, upstream: str) -> None:
        super().__init__(upstream)
        self.calls: list[Call] = []
        self.overrides: dict[str, Override] = {}  # by path

    def clear(self) -> None:
        self.calls.clear()
        self.overrides.clear()

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
