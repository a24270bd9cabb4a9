"""The shared MediaWiki client against the real farm, through the fault-injecting proxy (a stand-in)."""

import asyncio
import email.utils
import time

import pytest
from testkit.faulty_mediawiki import FaultyMediaWiki
from testkit.servers import free_port

from wikiserve.config import MediaWikiSettings
from wikiserve.errors import InvalidRequest, MediaWikiError, MediaWikiTimeout, MediaWikiUnavailable
from wikiserve.mediawiki import MediaWikiPool, _retry_after_seconds

TIMEOUT_S = 0.5
ATTEMPTS = 3


@pytest.fixture(scope="module")
def proxy(farm):
    faulty = FaultyMediaWiki(farm.url).start()
    yield faulty
    faulty.stop()


@pytest.fixture
def faults(proxy):
    proxy.clear()
    yield proxy
    proxy.clear()


def call(url: str, **params) -> dict:
    """One `get` through a fresh pool, as a server would make it, reading enwiki."""
    settings = MediaWikiSettings(
        url=url, timeout_s=TIMEOUT_S, attempts=ATTEMPTS, backoff_base_s=0.01, backoff_cap_s=0.2
    )

    async def run() -> dict:
        pool = MediaWikiPool(settings)
        try:
            return await pool.client("en.wikipedia.org").get(**params)
        finally:
            await pool.close()

    return asyncio.run(run())


def enwiki_rev_id(farm) -> int:
    return farm.manifest["enwiki"]["pages"][0]["rev_ids"][-1]


def test_a_good_call_reaches_the_right_wiki(farm, faults):
    doc = call(faults.url, action="query", meta="siteinfo")
    assert doc["query"]["general"]["lang"] == "en"
    assert faults.requests[-1]["formatversion"] == "2"


@pytest.mark.parametrize(
    "fault, error, kind",
    [
        ({"kind": "status", "status": 500}, MediaWikiUnavailable, "http_5xx"),
        ({"kind": "status", "status": 502}, MediaWikiUnavailable, "http_5xx"),
        ({"kind": "status", "status": 503}, MediaWikiUnavailable, "http_5xx"),
        ({"kind": "status", "status": 429, "retry_after": "0"}, MediaWikiUnavailable, "rate_limited"),
        ({"kind": "invalid_json"}, MediaWikiError, "bad_response"),
        ({"kind": "truncated"}, MediaWikiError, "bad_response"),
        ({"kind": "reset"}, MediaWikiUnavailable, "unavailable"),
        ({"kind": "delay", "delay_s": TIMEOUT_S * 4}, MediaWikiTimeout, "timeout"),
        ({"kind": "api_error", "api_code": "maxlag"}, MediaWikiUnavailable, "api_maxlag"),
        ({"kind": "api_error", "api_code": "ratelimited"}, MediaWikiUnavailable, "api_ratelimited"),
        ({"kind": "api_error", "api_code": "readonly"}, MediaWikiUnavailable, "api_readonly"),
        (
            {"kind": "api_error", "api_code": "internal_api_error_DBConnectionError"},
            MediaWikiUnavailable,
            "api_internal_api_error",
        ),
    ],
)
def test_transient_faults_are_retried_then_fail_with_a_5xx(farm, faults, fault, error, kind):
    faults.inject(times=-1, **fault)
    started = time.monotonic()
    with pytest.raises(error) as raised:
        call(faults.url, action="query", meta="siteinfo")
    elapsed = time.monotonic() - started
    assert raised.value.status >= 500 and raised.value.kind == kind
    assert "MediaWiki API" in raised.value.message
    # aiohttp itself re-sends once when a reused keep-alive connection turns out closed.
    assert ATTEMPTS <= len(faults.requests) <= (2 * ATTEMPTS if fault["kind"] == "reset" else ATTEMPTS)
    assert elapsed < ATTEMPTS * (TIMEOUT_S + 0.2) + 1.0  # bounded: timeout x attempts plus capped backoff


def test_a_transient_fault_that_clears_is_invisible(farm, faults):
    faults.inject("status", status=503, times=2)
    assert call(faults.url, action="query", meta="siteinfo")["query"]["general"]["lang"] == "en"
    assert len(faults.requests) == 3


def test_retry_after_is_honoured_but_capped(farm, faults):
    faults.inject("status", status=429, retry_after="30", times=1)
    started = time.monotonic()
    call(faults.url, action="query", meta="siteinfo")
    assert time.monotonic() - started < 1.5  # capped at backoff_cap_s, not 30 s


def test_retry_after_as_an_http_date_is_honoured(farm, faults):
    """Retry-After may be an HTTP date (RFC 9110): the wait lasts until then (capped), not our own backoff."""
    settings = MediaWikiSettings(url=faults.url, timeout_s=2, attempts=2, backoff_base_s=0.01,
                                 backoff_cap_s=5)
    when = email.utils.formatdate(time.time() + 3, usegmt=True)  # whole seconds: 2 to 3 s from now
    faults.inject("status", status=429, retry_after=when, times=1)

    async def run() -> dict:
        pool = MediaWikiPool(settings)
        try:
            return await pool.client("en.wikipedia.org").get(action="query", meta="siteinfo")
        finally:
            await pool.close()

    started = time.monotonic()
    assert asyncio.run(run())["query"]["general"]["lang"] == "en"
    waited = time.monotonic() - started
    assert len(faults.requests) == 2
    assert 1.5 <= waited < 5, waited  # our own backoff would have waited about 0.01 s


@pytest.mark.parametrize(
    "value, expected",
    [("7", 7.0), ("-3", 0.0), ("Sun, 06 Nov 1994 08:49:37 GMT", 0.0), ("soon", None), (None, None)],
)
def test_retry_after_values(value, expected):
    assert _retry_after_seconds(value) == expected
    now = 1_000_000_000.0
    assert _retry_after_seconds(email.utils.formatdate(now + 42, usegmt=True), now=now) == 42.0


@pytest.mark.parametrize("status", [400, 403, 404, 410])
def test_http_4xx_other_than_429_is_a_502_and_not_retried(farm, faults, status):
    """MediaWiki refusing our call is not the client's fault (its request was valid) nor worth retrying."""
    faults.inject("status", status=status, times=-1)
    with pytest.raises(MediaWikiError) as raised:
        call(faults.url, action="query", meta="siteinfo")
    assert raised.value.status == 502 and raised.value.kind == "http_4xx"
    assert f"HTTP {status}" in raised.value.message and "MediaWiki API" in raised.value.message
    assert len(faults.requests) == 1


@pytest.mark.parametrize("code", ["nosuchrevid", "badrevids", "missingtitle", "nosuchpageid"])
def test_permanent_api_errors_are_4xx_and_not_retried(farm, faults, code):
    faults.inject("api_error", api_code=code, times=-1)
    with pytest.raises(InvalidRequest, match=code):
        call(faults.url, action="query", meta="siteinfo")
    assert len(faults.requests) == 1


def test_unknown_api_errors_are_502_and_not_retried(farm, faults):
    faults.inject("api_error", api_code="badvalue", times=-1)
    with pytest.raises(MediaWikiError) as raised:
        call(faults.url, action="query", meta="siteinfo")
    assert raised.value.status == 502 and len(faults.requests) == 1


def test_refused_connections_fail_fast_with_503():
    started = time.monotonic()
    port = free_port()
    with pytest.raises(MediaWikiUnavailable, match="unreachable") as raised:
        call(f"http://127.0.0.1:{port}", action="query", meta="siteinfo")
    assert time.monotonic() - started < 2
    # The client is told the wiki, never the internal endpoint (nor the connection error naming it).
    assert "127.0.0.1" not in raised.value.message and str(port) not in raised.value.message
    assert "/w/api.php" not in raised.value.message and "MediaWiki API of " in raised.value.message


def test_error_messages_name_the_wiki_not_the_endpoint(farm, faults):
    for fault, options in (("status", {"status": 404}), ("invalid_json", {}), ("truncated", {})):
        faults.clear()
        faults.inject(fault, times=-1, **options)
        with pytest.raises(MediaWikiError) as raised:
            call(faults.url, action="query", meta="siteinfo")
        message = raised.value.message
        assert faults.url.split("://")[1] not in message and "http://" not in message
        assert "MediaWiki API of " in raised.value.message, raised.value.message


def test_continuation_dropped_mid_way_is_an_error(farm, faults):
    async def walk() -> int:
        pool = MediaWikiPool(
            MediaWikiSettings(url=faults.url, timeout_s=TIMEOUT_S, attempts=2, backoff_base_s=0.01)
        )
        try:
            pages = 0
            async for _ in pool.client("en.wikipedia.org").query_continued(list="allpages", aplimit=2):
                pages += 1
            return pages
        finally:
            await pool.close()

    assert asyncio.run(walk()) > 1  # the farm has more than two pages: continuation really happens
    faults.inject("drop_continuation", times=-1)
    with pytest.raises(MediaWikiUnavailable):
        asyncio.run(walk())


def test_the_next_good_call_after_faults_succeeds(farm, faults):
    faults.inject("reset", times=-1)
    with pytest.raises(MediaWikiUnavailable):
        call(faults.url, action="query", meta="siteinfo")
    faults.clear()
    doc = call(faults.url, action="query", prop="revisions", revids=str(enwiki_rev_id(farm)))
    assert doc["query"]["pages"][0]["revisions"][0]["revid"] == enwiki_rev_id(farm)
