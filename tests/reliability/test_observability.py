"""Observability: JSON log lines carrying the request id, and Prometheus metrics that move with the work.

(The MediaWiki error counter by kind is checked for every fault in test_mediawiki_faults.py, the EventGate
counters with the TLS checks in test_security.py.)
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import pytest
from reliability_kit import MODEL_OF, log_lines, metric_delta, metric_samples
from testkit.servers import ServerProcess

KINDS = ("revscoring", "predictor", "transformer")
LOG_FIELDS = {"time", "level", "logger", "message", "request_id"}


def good(kind: str, enwiki: dict[str, Any]) -> dict[str, Any]:
    if kind == "revscoring":
        return {"rev_id": enwiki["special"]["good_rev_id"]}
    return {"lang": "en", "page_title": enwiki["special"]["redirect_target"]}


def _records(server: ServerProcess) -> list[dict[str, Any]]:
    """Every line of the server's log, each of which must be a JSON object with the standard fields."""
    records = []
    for number, line in enumerate(log_lines(server), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError:
            pytest.fail(f"{server.name} log line {number} is not JSON: {line[:300]}")
        assert isinstance(record, dict) and LOG_FIELDS <= set(record), line[:300]
        records.append(record)
    return records


def _wait_for_records(server: ServerProcess, request_id: str, count: int = 1) -> list[dict[str, Any]]:
    deadline = time.monotonic() + 5
    while True:
        found = [record for record in _records(server) if record["request_id"] == request_id]
        if len(found) >= count or time.monotonic() > deadline:
            return found
        time.sleep(0.1)


@pytest.mark.parametrize("kind", KINDS)
def test_log_lines_are_json_and_carry_the_request_id_sent(servers, kind, enwiki, proxy):
    server = servers[kind]
    refused_id, retried_id = f"rel-{uuid.uuid4()}", f"rel-{uuid.uuid4()}"
    refused = server.predict(MODEL_OF[kind], {**good(kind, enwiki), "bogus": 1},
                             headers={"x-request-id": refused_id})
    assert refused.status_code == 400 and refused.headers["x-request-id"] == refused_id
    proxy.inject("status", status=503, times=1)  # one retry: a warning, then success
    retried = server.predict(MODEL_OF[kind], good(kind, enwiki), headers={"x-request-id": retried_id})
    assert retried.status_code == 200 and retried.headers["x-request-id"] == retried_id

    refused_lines = _wait_for_records(server, refused_id)
    assert refused_lines and refused_lines[0]["status"] == 400, refused_lines
    retry_lines = _wait_for_records(server, retried_id)
    assert any(record["logger"] == "wikiserve.mediawiki" and record.get("attempt") == 1
               for record in retry_lines), retry_lines


@pytest.mark.parametrize("kind", KINDS)
def test_a_request_without_an_id_gets_one_that_its_log_lines_carry(servers, kind, enwiki):
    response = servers[kind].predict(MODEL_OF[kind], {**good(kind, enwiki), "bogus": 1})
    assert response.status_code == 400
    request_id = response.headers.get("x-request-id", "")
    assert len(request_id) >= 16
    assert _wait_for_records(servers[kind], request_id)


@pytest.mark.parametrize("kind", KINDS)
def test_mediawiki_latency_is_measured(servers, kind, enwiki):
    before = metric_samples(servers[kind])
    response = servers[kind].predict(MODEL_OF[kind], good(kind, enwiki))
    assert response.status_code == 200, response.text
    after = metric_samples(servers[kind])
    calls = metric_delta(before, after, "mediawiki_request_duration_seconds_count", action="query")
    assert calls >= 1
    assert metric_delta(before, after, "mediawiki_request_duration_seconds_sum", action="query") > 0


def test_mediawiki_errors_are_counted_by_kind(servers, enwiki, proxy):
    before = metric_samples(servers["revscoring"])
    proxy.inject("status", status=429, retry_after="0", times=1)
    proxy.inject("api_error", api_code="maxlag", times=1)
    response = servers["revscoring"].predict(MODEL_OF["revscoring"], good("revscoring", enwiki))
    assert response.status_code == 200, response.text
    after = metric_samples(servers["revscoring"])
    assert metric_delta(before, after, "mediawiki_request_errors_total", kind="rate_limited") == 1
    assert metric_delta(before, after, "mediawiki_request_errors_total", kind="api_maxlag") == 1
    assert metric_delta(before, after, "mediawiki_request_errors_total", kind="timeout") == 0


def test_feature_extraction_time_is_measured(servers, enwiki):
    """Extraction runs in worker processes: its histogram must still reach the server's /metrics."""
    before = metric_samples(servers["revscoring"])
    for rev_key in ("good_rev_id", "anon_rev_id", "newcomer_rev_id"):
        body = {"rev_id": enwiki["special"][rev_key]}
        response = servers["revscoring"].predict(MODEL_OF["revscoring"], body)
        assert response.status_code == 200, response.text
    after = metric_samples(servers["revscoring"])
    name = "feature_extraction_duration_seconds"  # one model in this server: any `model` label value
    assert metric_delta(before, after, f"{name}_count") == 3
    assert metric_delta(before, after, f"{name}_sum") > 0
