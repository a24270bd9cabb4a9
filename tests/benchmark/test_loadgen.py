import asyncio
import io
import math

from aiohttp import web

from benchmark.loadgen import RequestSpec, _retry_after_s, percentile, run_load
from benchmark.procs import free_port
from benchmark.replay import start_app


def test_percentile_is_nearest_rank():
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == 50.0
    assert percentile(values, 99) == 99.0
    assert percentile(values, 100) == 100.0
    assert percentile([3.0], 90) == 3.0
    assert math.isnan(percentile([], 50))


async def _server(handler):
    app = web.Application()
    app.router.add_post("/{tail:.*}", handler)
    port = free_port()
    return await start_app(app, port), f"http://127.0.0.1:{port}"


async def test_counts_every_request_and_separates_labels_and_errors():
    seen = []
    in_flight = {"now": 0, "max": 0}

    async def handler(request):
        body = await request.json()
        seen.append(body["n"])
        in_flight["now"] += 1
        in_flight["max"] = max(in_flight["max"], in_flight["now"])
        await asyncio.sleep(0.002)
        in_flight["now"] -= 1
        if body["n"] == 2:
            return web.json_response({"error": "bad"}, status=500)
        return web.json_response({"ok": True})

    runner, url = await _server(handler)
    specs = [
        RequestSpec("/p", b'{"n": 0}', "ordinary"),
        RequestSpec("/p", b'{"n": 1}', "heavy"),
        RequestSpec("/p", b'{"n": 2}', "ordinary"),
    ]
    try:
        result = await run_load(url, specs, concurrency=4, total=90, progress_s=0)
    finally:
        await runner.cleanup()
    assert len(seen) == 90 == result.completed
    assert sorted(seen) == [0] * 30 + [1] * 30 + [2] * 30
    assert result.errors == 30 and "HTTP 500" in result.error_examples[0]
    assert len(result.latencies["ordinary"]) == 30 and len(result.latencies["heavy"]) == 30
    assert in_flight["max"] == 4  # closed loop: never more than `concurrency` requests at once
    assert result.throughput > 0 and result.generator_cpu_s > 0


async def test_duration_mode_excludes_warmup_and_reports_progress():
    async def handler(request):
        await request.read()
        await asyncio.sleep(0.01)
        return web.json_response({})

    runner, url = await _server(handler)
    stream = io.StringIO()
    try:
        result = await run_load(
            url,
            [RequestSpec("/p", b"{}")],
            concurrency=2,
            duration_s=0.6,
            warmup_s=0.3,
            progress_s=0.2,
            name="probe",
            stream=stream,
        )
    finally:
        await runner.cleanup()
    assert result.elapsed_s == 0.6
    # two clients, >= 10 ms each: at most ~2 * 0.6 / 0.01 = 120 counted requests
    assert 20 <= result.completed <= 125
    assert all(latency >= 0.01 for latency in result.latencies["ordinary"])
    assert "probe:" in stream.getvalue()


async def test_completion_callback_sees_every_count():
    counts = []

    async def handler(request):
        await request.read()
        return web.json_response({})

    runner, url = await _server(handler)
    try:
        await run_load(
            url, [RequestSpec("/p", b"{}")], concurrency=3, total=25, progress_s=0, on_completed=counts.append
        )
    finally:
        await runner.cleanup()
    assert counts == list(range(1, 26))


def test_combine_pools_latencies_and_takes_the_median_rate():
    from benchmark.loadgen import LoadResult, combine

    rounds = [LoadResult(8, 1.0, 100, 1, {"ordinary": [0.01] * 99}),
              LoadResult(8, 1.0, 50, 0, {"ordinary": [0.02] * 50, "heavy": [1.0]}),
              LoadResult(8, 2.0, 400, 0, {"ordinary": [0.005] * 400})]
    merged = combine(rounds)
    assert merged.throughput == 100.0  # rates 100, 50, 200: the median
    assert merged.completed == 550 and merged.errors == 1
    assert len(merged.latencies["ordinary"]) == 549 and merged.latencies["heavy"] == [1.0]


async def test_a_request_outliving_the_window_keeps_its_latency_but_not_its_count():
    async def handler(request):
        body = await request.json()
        await asyncio.sleep(0.5 if body["slow"] else 0.01)
        return web.json_response({})

    runner, url = await _server(handler)
    specs = [RequestSpec("/p", b'{"slow": true}', "heavy")] + [RequestSpec("/p", b'{"slow": false}')] * 60
    try:
        result = await run_load(url, specs, concurrency=2, duration_s=0.3, progress_s=0)
    finally:
        await runner.cleanup()
    assert len(result.latencies["heavy"]) == 1 and result.latencies["heavy"][0] >= 0.5
    # the slow one (and the ordinary one in flight at the deadline) finished too late to count
    assert len(result.latencies["ordinary"]) - 1 <= result.completed <= len(result.latencies["ordinary"])


def test_retry_after_is_read_as_seconds_capped():
    assert _retry_after_s("1") == 1.0
    assert _retry_after_s("60") == 5.0  # capped: a benchmark client never sleeps out a whole run
    assert _retry_after_s(None) == 0.0
    assert _retry_after_s("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # a date is not waited for


async def test_a_client_reconnects_after_a_close_and_waits_retry_after_when_it_backs_off():
    answered = []

    async def handler(request):
        await request.read()
        answered.append(request.remote)
        if len(answered) == 1:  # refused, and the connection closed
            headers = {"Retry-After": "1", "Connection": "close"}
            return web.json_response({"error": "busy"}, status=503, headers=headers)
        return web.json_response({})

    runner, url = await _server(handler)
    try:
        started = asyncio.get_running_loop().time()
        result = await run_load(
            url, [RequestSpec("/p", b"{}")], concurrency=1, total=3, progress_s=0, backs_off=True
        )
        elapsed = asyncio.get_running_loop().time() - started
    finally:
        await runner.cleanup()
    assert result.statuses == {503: 1, 200: 2}  # answered again on a new connection
    assert result.errors == 1 and "HTTP 503" in result.error_examples[0] and len(result.refused) == 1
    assert elapsed >= 1.0  # the client waited the second it was told to


async def test_a_server_that_never_answers_is_an_error_at_the_timeout_not_a_hang():
    async def handler(request):
        await asyncio.sleep(2)
        return web.json_response({})

    runner, url = await _server(handler)
    try:
        result = await run_load(
            url, [RequestSpec("/p", b"{}")], concurrency=2, total=2, progress_s=0, timeout_s=0.3
        )
    finally:
        await runner.cleanup()
    assert result.errors == 2 and result.statuses == {0: 2}
    assert all("TimeoutError" in example for example in result.error_examples)
