"""The MediaWiki API stand-in (replays a recording, with optional added latency) and the recording proxy.

The stand-in answers from memory, so a benchmark measures the model server rather than PHP; the added
latency stands in for a remote MediaWiki. Run it as its own process (the benchmark does):
`python -m benchmark.replay --recording .state/bench/recordings/<name>.json.gz --port N [--latency-ms 50]`.
`GET /__stats` returns hit and miss counts; a miss answers HTTP 404 and is logged, never silently faked.

The stand-in shares the measured server's cores, so what it spends is taken from the server: it is an
asyncio protocol over httptools (the HTTP parser uvicorn uses) that writes each answer, encoded once, in
one call. It did the same with aiohttp's web server for 0.2-0.3 ms of CPU per scored request (two calls),
a third of what the whole harness took (`benchmark/README.md`, issue 20).
"""

from __future__ import annotations

import argparse
import asyncio
import email.utils
import json
import logging
import sys
from dataclasses import dataclass
from http import HTTPStatus
from pathlib import Path
from urllib.parse import parse_qsl

import aiohttp
import httptools
from aiohttp import web

from benchmark.recordings import Recording, Response, request_key

logger = logging.getLogger("benchmark.replay")

STATS_PATH = "/__stats"
LATENCY_PATH = "/__latency"  # POST ?ms=N changes the added latency of a running stand-in
# Hop-by-hop and encoding headers are the proxy's own business; everything else goes through unchanged.
_DROP_REQUEST_HEADERS = {
    "host",
    "content-length",
    "accept-encoding",
    "connection",
    "keep-alive",
    "transfer-encoding",
}


@dataclass
class Counters:
    hits: int = 0
    misses: int = 0
    recorded: int = 0


COUNTERS = web.AppKey("counters", Counters)


async def _key_of(request: web.Request) -> str:
    form = (await request.text()) if request.method == "POST" else ""
    return request_key(request.headers.get("Host", ""), request.path, request.query_string, form)


def _stats(counters: Counters, recording: Recording) -> dict[str, int]:
    return {
        "hits": counters.hits,
        "misses": counters.misses,
        "recorded": counters.recorded,
        "responses": len(recording),
    }


def _stats_response(counters: Counters, recording: Recording) -> web.Response:
    return web.json_response(_stats(counters, recording))


# The headers the farm's MediaWiki sends with an api.php answer besides its type and length, so a client
# parses as much as it would there (the date is the answer's first encoding's).
MEDIAWIKI_HEADERS = (
    ("X-Content-Type-Options", "nosniff"),
    ("X-Frame-Options", "DENY"),
    ("Content-Disposition", "inline; filename=api-result.json"),
    ("Vary", "Accept-Encoding, Treat-as-Untrusted, Cookie"),
    ("Cache-Control", "private, must-revalidate, max-age=0"),
)


def http_answer(
    status: int,
    body: bytes,
    content_type: str,
    keep_alive: bool = True,
    headers: tuple[tuple[str, str], ...] = (),
) -> bytes:
    """A whole HTTP/1.1 response."""
    lines = [f"HTTP/1.1 {status} {HTTPStatus(status).phrase}", f"Content-Type: {content_type}"]
    lines += [f"{name}: {value}" for name, value in headers]
    lines.append(f"Content-Length: {len(body)}")
    if not keep_alive:
        lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def _json_answer(doc: object, status: int = 200) -> bytes:
    return http_answer(status, json.dumps(doc).encode(), "application/json; charset=utf-8")


class Replay:
    """What the stand-in answers: recorded calls from memory, each encoded once; its counters and latency."""

    def __init__(self, recording: Recording, latency_s: float = 0.0) -> None:
        self.recording = recording
        self.latency_s = latency_s
        self.counters = Counters()
        # (host, target, form) as received -> the encoded answer: the normalized key is computed once
        self._answers: dict[tuple[bytes, bytes, bytes], bytes] = {}

    def answer(self, host: bytes, target: bytes, form: bytes) -> bytes:
        """The whole HTTP response to one request (`target`: path and query, as sent)."""
        found = self._answers.get((host, target, form))
        if found is not None:
            self.counters.hits += 1
            return found
        path, _, query = target.decode("latin-1").partition("?")
        if path == STATS_PATH:
            return _json_answer(_stats(self.counters, self.recording))
        if path == LATENCY_PATH:
            self.latency_s = float(dict(parse_qsl(query)).get("ms", "0")) / 1000.0
            return _json_answer({"latency_ms": self.latency_s * 1000.0})
        key = request_key(host.decode("latin-1"), path, query, form.decode("utf-8", errors="replace"))
        response = self.recording.get(key)
        if response is None:
            self.counters.misses += 1
            logger.warning("not recorded: %s", key)
            return _json_answer({"error": {"code": "not-recorded", "info": key}}, status=404)
        self.counters.hits += 1
        date = ("Date", email.utils.formatdate(usegmt=True))
        encoded = http_answer(
            response.status, response.body, response.content_type, headers=(date, *MEDIAWIKI_HEADERS)
        )
        self._answers[(host, target, form)] = encoded
        return encoded


class _ReplayProtocol(asyncio.Protocol):
    """One client connection: parses requests with httptools and writes each answer in one call."""

    def __init__(self, replay: Replay) -> None:
        self.replay = replay
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self._host, self._target, self._body = b"", b"", bytearray()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self._send(http_answer(400, b"bad request", "text/plain", keep_alive=False), keep_alive=False)

    # httptools' callbacks
    def on_message_begin(self) -> None:
        self._host, self._target, self._body = b"", b"", bytearray()

    def on_url(self, url: bytes) -> None:
        self._target += url

    def on_header(self, name: bytes, value: bytes) -> None:
        if name.lower() == b"host":
            self._host = value

    def on_body(self, body: bytes) -> None:
        self._body += body

    def on_message_complete(self) -> None:
        answer = self.replay.answer(self._host, self._target, bytes(self._body))
        keep_alive = self.parser.should_keep_alive()
        if self.replay.latency_s > 0 and not self._target.startswith(b"/__"):
            asyncio.get_running_loop().call_later(self.replay.latency_s, self._send, answer, keep_alive)
        else:
            self._send(answer, keep_alive)

    def _send(self, answer: bytes, keep_alive: bool) -> None:
        if self.transport is None or self.transport.is_closing():
            return
        self.transport.write(answer)
        if not keep_alive:
            self.transport.close()


async def start_replay_server(
    recording: Recording, port: int, latency_s: float = 0.0, host: str = "127.0.0.1"
) -> tuple[asyncio.Server, Replay]:
    """Serves `recording` on host:port in the running loop; `server.close()` stops it."""
    replay = Replay(recording, latency_s)
    server = await asyncio.get_running_loop().create_server(
        lambda: _ReplayProtocol(replay), host, port, backlog=1024
    )
    return server, replay


def make_recording_app(upstream: str, recording: Recording) -> web.Application:
    """A proxy to `upstream` (keeping the Host header) that stores every successful answer in `recording`."""
    counters = Counters()
    sessions: list[aiohttp.ClientSession] = []

    async def handle(request: web.Request) -> web.Response:
        if request.path == STATS_PATH:
            return _stats_response(counters, recording)
        if not sessions:
            sessions.append(aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120)))
        body = await request.read()
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _DROP_REQUEST_HEADERS}
        headers["Host"] = request.headers.get("Host", "")
        url = upstream.rstrip("/") + request.rel_url.path_qs
        async with sessions[0].request(
            request.method, url, data=body or None, headers=headers
        ) as upstream_reply:
            payload = await upstream_reply.read()  # decoded: the replay never needs to gzip
            content_type = upstream_reply.headers.get("Content-Type", "application/json; charset=utf-8")
            status = upstream_reply.status
        if status == 200:
            recording.add(await _key_of(request), Response(status, payload, content_type))
            counters.recorded += 1
        return web.Response(status=status, body=payload, headers={"Content-Type": content_type})

    async def close_session(_: web.Application) -> None:
        for session in sessions:
            await session.close()

    app = web.Application(client_max_size=16 * 1024 * 1024)
    app.router.add_route("*", "/{tail:.*}", handle)
    app.on_cleanup.append(close_session)
    app[COUNTERS] = counters
    return app


async def start_app(app: web.Application, port: int, host: str = "127.0.0.1") -> web.AppRunner:
    """Serves `app` on host:port in the running loop; `await runner.cleanup()` stops it."""
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    await web.TCPSite(runner, host, port, backlog=1024).start()
    return runner


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmark.replay", description=__doc__.splitlines()[0])
    parser.add_argument("--recording", type=Path, required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--latency-ms", type=float, default=0.0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="replay: %(message)s")
    recording = Recording.load(args.recording)
    _use_uvloop()
    print(
        json.dumps({"replay": str(args.recording), "responses": len(recording), "port": args.port}),
        file=sys.stderr,
        flush=True,
    )
    asyncio.run(_serve_forever(recording, args.port, args.latency_ms / 1000.0))


async def _serve_forever(recording: Recording, port: int, latency_s: float) -> None:
    server, _ = await start_replay_server(recording, port, latency_s)
    async with server:
        await server.serve_forever()


def _use_uvloop() -> None:
    try:
        import uvloop
    except ImportError:  # the stand-in still works, just with a slower loop
        return
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


if __name__ == "__main__":
    main()
