"""A fault-injecting proxy in front of the MediaWiki farm (a stand-in: real MediaWiki can't fail on demand).

Requests pass through to the farm unchanged until a fault is injected; then the next `times` matching requests
get the fault instead: a delay, a refused/reset connection, an HTTP error status (429 with Retry-After),
invalid JSON, a truncated body, a MediaWiki API error (`maxlag`, `ratelimited`, ...), or a continuation that
breaks mid-way. It runs in a background thread so subprocess model servers and in-process clients can
both use it.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from aiohttp import web

from testkit.loopback_forwarder import LoopbackForwarder

FAULT_KINDS = ("delay", "reset", "status", "invalid_json", "truncated", "api_error", "drop_continuation")


@dataclass
class Fault:
    kind: str
    times: int = 1  # how many matching requests get it; -1: all of them
    delay_s: float = 0.0
    status: int = 500
    retry_after: str | None = None
    api_code: str = "internal_api_error_DBQueryError"
    match: Callable[[dict[str, str]], bool] | None = None
    hits: int = field(default=0, init=False)


class FaultyMediaWiki(LoopbackForwarder):
    def __init__(self, upstream: str = "http://127.0.0.1:8180") -> None:
        super().__init__(upstream)
        self.requests: list[dict[str, str]] = []
        self._faults: list[Fault] = []
        self._lock = threading.Lock()

    def inject(self, kind: str, **options: object) -> Fault:
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault {kind!r}; known: {FAULT_KINDS}")
        if kind == "drop_continuation":
            options.setdefault("match", _is_continuation)
        fault = Fault(kind, **options)  # type: ignore[arg-type]
        with self._lock:
            self._faults.append(fault)
        return fault

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()
            self.requests.clear()

    def _next_fault(self, params: dict[str, str]) -> Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.times != -1 and fault.hits >= fault.times:
                    continue
                if fault.match is None or fault.match(params):
                    fault.hits += 1
                    return fault
        return None

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        params = dict(request.query)
        if request.method == "POST":
            params.update({k: str(v) for k, v in (await request.post()).items()})
        with self._lock:
            self.requests.append(params)
        fault = self._next_fault(params)
        if fault is None:
            return await self._forward(request)
        return await self._apply(fault, request)

    async def _apply(self, fault: Fault, request: web.Request) -> web.StreamResponse:
        if fault.kind == "delay":
            await asyncio.sleep(fault.delay_s)
            return await self._forward(request)
        if fault.kind == "reset":
            request.transport.close()  # type: ignore[union-attr]
            raise asyncio.CancelledError
        if fault.kind == "status":
            headers = {"Retry-After": fault.retry_after} if fault.retry_after is not None else {}
            return web.Response(
                status=fault.status,
                text="<html>upstream trouble</html>",
                headers=headers,
                content_type="text/html",
            )
        if fault.kind == "invalid_json":
            return web.Response(text="<?php Fatal error: not JSON", content_type="application/json")
        if fault.kind == "truncated":
            return await self._truncated(request)
        if fault.kind == "api_error":
            error = {"error": {"code": fault.api_code, "info": f"Injected {fault.api_code}"}}
            return web.json_response(error, headers={"MediaWiki-API-Error": fault.api_code})
        return await self._drop_continuation(request)

    async def _truncated(self, request: web.Request) -> web.StreamResponse:
        body = json.dumps({"batchcomplete": True, "query": {"pages": []}}).encode()
        response = web.StreamResponse(
            headers={"Content-Type": "application/json", "Content-Length": str(len(body) * 2)}
        )
        await response.prepare(request)
        await response.write(body)
        request.transport.close()  # type: ignore[union-attr]
        return response

    async def _drop_continuation(self, request: web.Request) -> web.StreamResponse:
        """Answers a continued query (one carrying a continuation token) with a reset connection."""
        request.transport.close()  # type: ignore[union-attr]
        raise asyncio.CancelledError

    async def _forward(self, request: web.Request) -> web.Response:
        assert self._session is not None
        headers = {
            k: v for k, v in request.headers.items() if k.lower() in ("host", "user-agent", "content-type")
        }
        body = await request.read()
        async with self._session.request(
            request.method, self.upstream + request.path_qs, headers=headers, data=body or None
        ) as upstream:
            payload = await upstream.read()
            return web.Response(
                status=upstream.status, body=payload, content_type=upstream.content_type or "application/json"
            )


def _is_continuation(params: dict[str, str]) -> bool:
    return any(key.endswith("continue") and value for key, value in params.items())
