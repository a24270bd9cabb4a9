"""MediaWiki faults, through the real revscoring server and the real outlink predictor.

Both read the farm through the fault proxy with a 1 s timeout, 3 attempts and a 0.5 s backoff cap. For each
fault: the status (transient: retried with capped exponential backoff, then 5xx; permanent: 4xx at once),
the number of attempts MediaWiki saw, the spacing of the retries, a bounded total time, the error metric
of that kind, and afterwards a healthy server whose next good request succeeds.
"""

from __future__ import annotations

import email.utils
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from reliability_kit import (
    MODEL_OF,
    MW_ATTEMPTS,
    MW_BACKOFF_BASE_S,
    MW_BACKOFF_CAP_S,
    MW_TIMEOUT_S,
    RecordingProxy,
    good,
    is_ready,
    metric_samples,
    metric_sum,
)
from testkit.servers import ServerProcess

KINDS = ("revscoring", "predictor")
SLACK_S = 2.5  # process scheduling on a busy CI machine, the farm's own latency, the response
API_ERROR_CODES = ["maxlag", "ratelimited", "readonly", "internal_api_error_DBQueryError",
                   "internal_api_error_MWException"]

# id, fault kind, options, expected status, fragment of the error, metric `kind` label
TRANSIENT = [
    ("timeout", "delay", {"delay_s": 3 * MW_TIMEOUT_S}, 504, "did not answer within", "timeout"),
    ("http-500", "status", {"status": 500}, 503, "HTTP 500", "http_5xx"),
    ("http-502", "status", {"status": 502}, 503, "HTTP 502", "http_5xx"),
    ("http-503", "status", {"status": 503}, 503, "HTTP 503", "http_5xx"),
    ("http-429", "status", {"status": 429, "retry_after": "1"}, 503, "HTTP 429", "rate_limited"),
    ("connection-reset", "reset", {}, 503, "MediaWiki API", "unavailable"),
    ("invalid-json", "invalid_json", {}, 502, "invalid JSON", "bad_response"),
    ("truncated-body", "truncated", {}, 502, "truncated", "bad_response"),
] + [
    (f"api-{code}", "api_error", {"api_code": code}, 503, f"'{code}'",
     "api_internal_api_error" if code.startswith("internal_api_error_") else f"api_{code}")
    for code in API_ERROR_CODES
]


@pytest.fixture(params=KINDS)
def kind(request: pytest.FixtureRequest, baseline: dict[str, Any]) -> str:
    return request.param


def _recovers(server: ServerProcess, kind: str, enwiki: dict[str, Any], proxy: RecordingProxy,
              expected: dict[str, Any]) -> None:
    """The fault is gone: the server is ready and the next good request gets the usual answer."""
    proxy.clear()
    assert server.process.poll() is None
    assert is_ready(server, MODEL_OF[kind])
    response = server.predict(MODEL_OF[kind], good(kind, enwiki))
    assert response.status_code == 200, response.text
    assert response.json() == expected


def _attempt_starts(arrivals: list[float]) -> list[float]:
    """aiohttp itself re-sends a request at once when a kept-alive connection is reset under it (a stale
    connection, to aiohttp), so one attempt of the client can reach MediaWiki twice within milliseconds."""
    starts: list[float] = []
    for arrival in arrivals:
        if not starts or arrival - starts[-1] > 0.05:
            starts.append(arrival)
    assert len(arrivals) <= 2 * len(starts), arrivals
    return starts


def _backoff_window(retry: int) -> tuple[float, float]:
    """wikiserve's backoff before retry `retry` (1-based): jitter in [0.5, 1] x min(cap, base 2^(n-1))."""
    ceiling = min(MW_BACKOFF_CAP_S, MW_BACKOFF_BASE_S * 2 ** (retry - 1))
    return 0.5 * ceiling, ceiling


@pytest.mark.parametrize("fault, options, status, fragment, metric_kind", [case[1:] for case in TRANSIENT],
                         ids=[case[0] for case in TRANSIENT])
def test_transient_faults_are_retried_with_backoff_then_5xx(servers, kind, enwiki, proxy, baseline, fault,
                                                             options, status, fragment, metric_kind):
    server = servers[kind]
    before = metric_samples(server)
    proxy.inject(fault, times=-1, **options)
    started = time.monotonic()
    response = server.predict(MODEL_OF[kind], good(kind, enwiki), timeout_s=60)
    elapsed = time.monotonic() - started

    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert "MediaWiki API" in error and fragment in error, error
    per_attempt = MW_TIMEOUT_S if fault == "delay" else 0.0
    assert elapsed < MW_ATTEMPTS * per_attempt + (MW_ATTEMPTS - 1) * MW_BACKOFF_CAP_S + SLACK_S
    arrivals = _attempt_starts(proxy.arrivals) if fault == "reset" else proxy.arrivals
    assert len(arrivals) == MW_ATTEMPTS, proxy.requests  # retried, then given up
    gaps = [later - earlier - per_attempt for earlier, later in zip(arrivals, arrivals[1:], strict=False)]
    for retry, gap in enumerate(gaps, start=1):
        low, high = _backoff_window(retry)
        if fault == "status" and options["status"] == 429:
            low = high = min(float(options["retry_after"]), MW_BACKOFF_CAP_S)  # Retry-After, capped
        assert low - 0.05 <= gap <= high + 0.75, (retry, gaps)  # above: scheduling noise only
    errors = metric_sum(metric_samples(server), "mediawiki_request_errors_total", kind=metric_kind)
    assert errors - metric_sum(before, "mediawiki_request_errors_total", kind=metric_kind) == MW_ATTEMPTS
    _recovers(server, kind, enwiki, proxy, baseline[kind])


@pytest.mark.parametrize("fault, options", [
    ("delay", {"delay_s": 3 * MW_TIMEOUT_S}),
    ("status", {"status": 503}),
    ("status", {"status": 429, "retry_after": "0"}),
    ("api_error", {"api_code": "maxlag"}),
    ("invalid_json", {}),
    ("reset", {}),
], ids=["timeout", "http-503", "http-429", "maxlag", "invalid-json", "reset"])
def test_a_fault_that_clears_within_the_attempts_is_invisible(servers, kind, enwiki, proxy, baseline, fault,
                                                              options):
    proxy.inject(fault, times=MW_ATTEMPTS - 1, **options)
    response = servers[kind].predict(MODEL_OF[kind], good(kind, enwiki))
    assert response.status_code == 200, response.text
    assert response.json() == baseline[kind]


def test_retry_after_is_capped(servers, kind, enwiki, proxy, baseline):
    proxy.inject("status", status=429, retry_after="120", times=-1)
    started = time.monotonic()
    response = servers[kind].predict(MODEL_OF[kind], good(kind, enwiki))
    assert response.status_code == 503, response.text
    assert time.monotonic() - started < (MW_ATTEMPTS - 1) * MW_BACKOFF_CAP_S + SLACK_S
    _recovers(servers[kind], kind, enwiki, proxy, baseline[kind])


def test_retry_after_as_an_http_date_is_honoured_and_capped(servers, kind, enwiki, proxy, baseline):
    proxy.inject("status", status=429, retry_after=email.utils.formatdate(time.time() + 30, usegmt=True),
                 times=1)
    response = servers[kind].predict(MODEL_OF[kind], good(kind, enwiki))
    assert response.status_code == 200, response.text
    assert response.json() == baseline[kind]
    first, second = proxy.arrivals[:2]
    # The date is 30 s away: the wait is the cap, not the ~0.1-0.2 s backoff used without a hint.
    assert MW_BACKOFF_CAP_S - 0.05 <= second - first <= MW_BACKOFF_CAP_S + 0.75, second - first


@pytest.mark.parametrize("status", [403, 404])
def test_mediawiki_4xx_other_than_429_is_a_502_without_retries(servers, kind, enwiki, proxy, baseline,
                                                              status):
    proxy.inject("status", status=status, times=-1)
    response = servers[kind].predict(MODEL_OF[kind], good(kind, enwiki))
    assert response.status_code == 502, response.text
    assert "MediaWiki API" in response.json()["error"] and f"HTTP {status}" in response.json()["error"]
    assert len(proxy.requests) == 1
    _recovers(servers[kind], kind, enwiki, proxy, baseline[kind])


@pytest.mark.parametrize("code", ["nosuchrevid", "badrevids", "missingtitle", "nosuchpageid"])
def test_permanent_api_errors_are_4xx_without_retries(servers, kind, enwiki, proxy, baseline, code):
    proxy.inject("api_error", api_code=code, times=-1)
    response = servers[kind].predict(MODEL_OF[kind], good(kind, enwiki))
    assert 400 <= response.status_code < 500, response.text
    assert code in response.json()["error"] or "does not exist" in response.json()["error"]
    assert len(proxy.requests) == 1  # a fact about the revision: asking again cannot change it
    _recovers(servers[kind], kind, enwiki, proxy, baseline[kind])


def test_refused_connections_are_503_within_the_bound(servers, kind, enwiki, proxy, baseline):
    with proxy.refusing():
        started = time.monotonic()
        response = servers[kind].predict(MODEL_OF[kind], good(kind, enwiki))
        elapsed = time.monotonic() - started
    assert response.status_code == 503, response.text
    assert "MediaWiki API" in response.json()["error"] and "unreachable" in response.json()["error"]
    assert elapsed < (MW_ATTEMPTS - 1) * MW_BACKOFF_CAP_S + SLACK_S
    assert proxy.requests == []  # nothing got through: the listener was closed
    _recovers(servers[kind], kind, enwiki, proxy, baseline[kind])


def test_a_continuation_dropped_mid_way_is_a_5xx_not_a_partial_answer(servers, enwiki, proxy):
    """The outlink predictor pages through links (20 per call here); the second page never arrives."""
    body = {"lang": "en", "page_title": enwiki["special"]["many_links_title"], "debug": True}
    expected = servers["predictor"].predict(MODEL_OF["predictor"], body)
    assert expected.status_code == 200, expected.text
    proxy.clear()
    proxy.inject("drop_continuation", times=-1)
    started = time.monotonic()
    response = servers["predictor"].predict(MODEL_OF["predictor"], body)
    assert response.status_code in (502, 503), response.text
    assert "MediaWiki API" in response.json()["error"]
    continued = [params for params in proxy.requests if "gplcontinue" in params]
    # The continuation itself was retried, then the request failed (each attempt may reach the proxy twice:
    # aiohttp re-sends at once on a reset keep-alive connection, see _attempt_starts).
    assert MW_ATTEMPTS <= len(continued) <= 2 * MW_ATTEMPTS, proxy.requests
    assert time.monotonic() - started < (MW_ATTEMPTS - 1) * MW_BACKOFF_CAP_S + SLACK_S
    proxy.clear()
    again = servers["predictor"].predict(MODEL_OF["predictor"], body)
    assert again.status_code == 200 and again.json() == expected.json()


def test_probes_and_metrics_answer_while_mediawiki_hangs(servers, kind, enwiki, proxy, baseline):
    """Requests stuck on MediaWiki must not block the event loop: Kubernetes' probes keep passing."""
    proxy.inject("delay", delay_s=3 * MW_TIMEOUT_S, times=-1)
    with ThreadPoolExecutor(8) as pool:
        stuck = [pool.submit(servers[kind].predict, MODEL_OF[kind], good(kind, enwiki)) for _ in range(8)]
        deadline = time.monotonic() + 10
        while len(proxy.requests) < 8 and time.monotonic() < deadline:
            time.sleep(0.05)
        for _ in range(5):
            started = time.monotonic()
            assert is_ready(servers[kind], MODEL_OF[kind])
            assert metric_samples(servers[kind])
            assert time.monotonic() - started < 1.0
        statuses = [future.result().status_code for future in stuck]
    assert statuses == [504] * 8
    _recovers(servers[kind], kind, enwiki, proxy, baseline[kind])
