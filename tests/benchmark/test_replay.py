import asyncio
import contextlib
import time

import aiohttp
from aiohttp import web

from benchmark.procs import free_port
from benchmark.recordings import Recording, Response, request_key
from benchmark.replay import make_recording_app, start_app, start_replay_server

API = "/w/api.php"
TIMEOUT = aiohttp.ClientTimeout(total=30)  # every HTTP call a test makes has a limit


@contextlib.asynccontextmanager
async def _replaying(recording, latency_s=0.0):
    """The stand-in on a free port, as `python -m benchmark.replay` serves it: yields its URL."""
    port = free_port()
    server, _ = await start_replay_server(recording, port, latency_s)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.close()
        await server.wait_closed()


async def _get(url, host, params):
    async with aiohttp.ClientSession(timeout=TIMEOUT) as session:
        async with session.get(url + API, params=params, headers={"Host": host}) as response:
            return response.status, await response.read()


async def test_replay_answers_recorded_calls_and_counts_misses():
    recording = Recording()
    key = request_key("en.wikipedia.org", API, "action=query&revids=7&prop=revisions|info")
    recording.add(key, Response(200, b'{"ok": 7}'))
    async with _replaying(recording) as url:
        status, body = await _get(
            url, "en.wikipedia.org", {"prop": "info|revisions", "revids": "7", "action": "query"}
        )
        assert (status, body) == (200, b'{"ok": 7}')
        status, _ = await _get(
            url, "de.wikipedia.org", {"action": "query", "revids": "7", "prop": "revisions|info"}
        )
        assert status == 404
        async with aiohttp.ClientSession(timeout=TIMEOUT) as session:
            stats = await (await session.get(url + "/__stats")).json()
        assert (stats["hits"], stats["misses"]) == (1, 1)


async def test_replay_adds_the_configured_latency():
    recording = Recording()
    recording.add(request_key("h", API, "a=1"), Response(200, b"{}"))
    async with _replaying(recording, latency_s=0.15) as url:
        started = time.perf_counter()
        await asyncio.gather(*(_get(url, "h", {"a": "1"}) for _ in range(5)))
        elapsed = time.perf_counter() - started
    assert 0.15 <= elapsed < 0.6  # concurrent calls wait in parallel, not one after the other


async def test_recording_proxy_feeds_the_replay():
    calls = []

    async def upstream_handler(request):
        calls.append((request.headers["Host"], request.query_string))
        if request.query.get("revids") == "404":
            return web.json_response({"error": "gone"}, status=503)
        return web.json_response({"host": request.headers["Host"], "revids": request.query["revids"]})

    upstream = web.Application()
    upstream.router.add_get(API, upstream_handler)
    upstream_port, proxy_port = free_port(), free_port()
    upstream_runner = await start_app(upstream, upstream_port)
    recording = Recording()
    proxy_runner = await start_app(
        make_recording_app(f"http://127.0.0.1:{upstream_port}", recording), proxy_port
    )
    try:
        proxied = await _get(
            f"http://127.0.0.1:{proxy_port}", "fr.wikipedia.org", {"action": "query", "revids": "3"}
        )
        failed = await _get(
            f"http://127.0.0.1:{proxy_port}", "fr.wikipedia.org", {"action": "query", "revids": "404"}
        )
    finally:
        await proxy_runner.cleanup()
        await upstream_runner.cleanup()
    assert calls[0][0] == "fr.wikipedia.org"
    assert proxied[0] == 200 and failed[0] == 503
    assert len(recording) == 1  # failures are passed through but never recorded
    async with _replaying(recording) as url:
        replayed = await _get(url, "fr.wikipedia.org", {"revids": "3", "action": "query"})
    assert replayed == proxied
    assert len(calls) == 2  # the replay did not reach the upstream


async def test_latency_can_be_changed_while_running():
    recording = Recording()
    recording.add(request_key("h", API, "a=1"), Response(200, b"{}"))
    async with _replaying(recording) as url:
        started = time.perf_counter()
        await _get(url, "h", {"a": "1"})
        fast = time.perf_counter() - started
        async with aiohttp.ClientSession(timeout=TIMEOUT) as session:
            async with session.post(url + "/__latency", params={"ms": "200"}) as response:
                assert (await response.json())["latency_ms"] == 200.0
        started = time.perf_counter()
        await _get(url, "h", {"a": "1"})
        slow = time.perf_counter() - started
    assert fast < 0.1 <= 0.2 <= slow


async def test_replay_answers_each_call_of_a_kept_alive_connection_and_closes_when_asked():
    recording = Recording()
    recording.add(request_key("h", API, "a=1"), Response(200, b'{"n": 1}'))
    recording.add(request_key("h", API, "a=2"), Response(200, b'{"n": 2}'))
    async with _replaying(recording) as url:
        async with aiohttp.ClientSession(timeout=TIMEOUT) as session:  # one pooled connection
            for n in (1, 2, 1):
                async with session.get(url + API, params={"a": str(n)}, headers={"Host": "h"}) as response:
                    assert await response.json() == {"n": n}
        host, port = url.removeprefix("http://").split(":")
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(b"GET /w/api.php?a=2 HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
        raw = await asyncio.wait_for(reader.read(), timeout=10)  # EOF: the stand-in closed it
        writer.close()
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK") and body == b'{"n": 2}'


async def test_replay_answers_a_malformed_request_with_400():
    async with _replaying(Recording()) as url:
        host, port = url.removeprefix("http://").split(":")
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(b"NOT HTTP AT ALL\r\n\r\n")
        raw = await asyncio.wait_for(reader.read(), timeout=10)
        writer.close()
    assert raw.startswith(b"HTTP/1.1 400 ")
