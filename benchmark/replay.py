"""The MediaWiki API stand-in (replays a recording, with optional added latency) and the recording proxy.

The stand-in answers from memory, so a benchmark measures the model server rather than PHP; the added
latency stands in for a remote MediaWiki. Run it as its own process (the benchmark does):
`python -m benchmark.replay --recording .state/bench/recordings/<name>.json.gz --port N [--latency-ms 50]`.
`GET /__stats` returns hit and miss counts; a miss answers HTTP 404 and is logged, never silently faked.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from dataclasses import dataclass
from pathlib import Path

import aiohttp
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


def _stats_response(counters: Counters, recording: Recording) -> web.Response:
    return web.json_response(
        {
            "hits": counters.hits,
            "misses": counters.misses,
            "recorded": counters.recorded,
            "responses": len(recording),
        }
    )


def make_replay_app(recording: Recording, latency_s: float = 0.0) -> web.Application:
    """Answers every recorded call from memory after `latency_s`; unknown calls get 404."""
    counters = Counters()
    latency = [latency_s]  # mutable: POST /__latency changes it between runs without a restart

    async def handle(request: web.Request) -> web.Response:
        if request.path == STATS_PATH:
            return _stats_response(counters, recording)
        if request.path == LATENCY_PATH:
            latency[0] = float(request.query.get("ms", "0")) / 1000.0
            return web.json_response({"latency_ms": latency[0] * 1000.0})
        key = await _key_of(request)
        if latency[0] > 0:
            await asyncio.sleep(latency[0])
        found = recording.get(key)
        if found is None:
            counters.misses += 1
            logger.warning("not recorded: %s", key)
            return web.json_response({"error": {"code": "not-recorded", "info": key}}, status=404)
        counters.hits += 1
        return web.Response(
            status=found.status, body=found.body, headers={"Content-Type": found.content_type}
        )

    app = web.Application(client_max_size=16 * 1024 * 1024)
    app.router.add_route("*", "/{tail:.*}", handle)
    app[COUNTERS] = counters
    return app


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
    app = make_replay_app(recording, args.latency_ms / 1000.0)
    print(
        json.dumps({"replay": str(args.recording), "responses": len(recording), "port": args.port}),
        file=sys.stderr,
        flush=True,
    )
    web.run_app(app, host="127.0.0.1", port=args.port, access_log=None, print=None, backlog=1024)


def _use_uvloop() -> None:
    try:
        import uvloop
    except ImportError:  # the stand-in still works, just with a slower loop
        return
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


if __name__ == "__main__":
    main()
