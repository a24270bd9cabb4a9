"""The outlink transformer's own hops, through a real transformer process: it forwards the tracing headers to
the predictor, re-sends once when the predictor closed a kept-alive connection, and drains on SIGTERM.

The predictor here is a stand-in (testkit/stand_in_predictor.py): a real predictor cannot be made to drop a
kept-alive connection on demand. Requests carry `features_str`, so MediaWiki is not involved.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from reliability_kit import OUTLINK_MODEL, start_processes, transformer_spec
from testkit.servers import ServerProcess
from testkit.stand_in_predictor import ANSWER, StandInPredictor

BODY = {"lang": "en", "page_title": "Stand-in", "features_str": "Q1 Q2 Q3"}
HTTP_TIMEOUT_S = 30
GRACE_S = 15


@pytest.fixture(scope="module")
def predictors() -> Iterator[dict[str, StandInPredictor]]:
    started = {"hops": StandInPredictor().start(), "sigterm": StandInPredictor().start()}
    yield started
    for predictor in started.values():
        predictor.stop()


@pytest.fixture(scope="module")
def transformers(predictors, farm) -> Iterator[dict[str, ServerProcess]]:
    specs = [transformer_spec(f"transformer-{name}", predictor.port, farm.url, SHUTDOWN_GRACE_S=str(GRACE_S))
             for name, predictor in predictors.items()]
    started = dict(zip(predictors, start_processes(specs), strict=True))
    yield started
    for server in started.values():
        server.stop(timeout_s=5)


def test_request_id_and_trace_id_reach_the_predictor(transformers, predictors):
    predictor = predictors["hops"]
    predictor.headers.clear()
    sent = {"x-request-id": "req-7f3a", "x-b3-traceid": "80f198ee56343ba864fe8b2a57d3eff7"}
    response = transformers["hops"].predict(OUTLINK_MODEL, BODY, timeout_s=HTTP_TIMEOUT_S, headers=sent)
    assert response.status_code == 200, response.text
    assert response.json() == ANSWER
    assert response.headers["x-request-id"] == sent["x-request-id"]
    received = predictor.headers[-1]
    assert received["x-request-id"] == sent["x-request-id"]
    assert received["x-b3-traceid"] == sent["x-b3-traceid"]


def test_a_kept_alive_connection_the_predictor_closed_is_retried_on_a_new_one(transformers, predictors):
    predictor = predictors["hops"]
    server = transformers["hops"]
    first = server.predict(OUTLINK_MODEL, BODY, timeout_s=HTTP_TIMEOUT_S)  # leaves a kept-alive connection
    assert first.status_code == 200
    predictor.drop_reused = True
    try:
        connections, requests_seen = predictor.connections, len(predictor.headers)
        response = server.predict(OUTLINK_MODEL, BODY, timeout_s=HTTP_TIMEOUT_S)
    finally:
        predictor.drop_reused = False
    assert response.status_code == 200, response.text
    assert response.json() == ANSWER
    # The request reached the predictor twice: on the stale connection (dropped), then on a new one.
    assert len(predictor.headers) - requests_seen == 2
    assert predictor.connections - connections == 1


def test_sigterm_lets_the_in_flight_request_finish_and_refuses_new_ones(transformers, predictors):
    predictor, server = predictors["sigterm"], transformers["sigterm"]
    predictor.delay_s = 2.0
    result: dict[str, Any] = {}

    def in_flight() -> None:
        result["response"] = server.predict(OUTLINK_MODEL, BODY, timeout_s=HTTP_TIMEOUT_S)

    thread = threading.Thread(target=in_flight)
    thread.start()
    deadline = time.monotonic() + 15
    while not predictor.headers:
        assert time.monotonic() < deadline, "the request never reached the predictor"
        time.sleep(0.05)
    signalled = time.monotonic()
    server.process.send_signal(signal.SIGTERM)
    time.sleep(0.3)
    try:
        refused: Any = server.predict(OUTLINK_MODEL, BODY, timeout_s=HTTP_TIMEOUT_S).status_code
    except requests.ConnectionError:
        refused = "connection refused"
    thread.join(HTTP_TIMEOUT_S)
    code = server.process.wait(30)
    assert result["response"].status_code == 200, result["response"].text
    assert result["response"].json() == ANSWER
    assert refused in (503, "connection refused")
    assert code == 0, server.log_tail()
    assert time.monotonic() - signalled < GRACE_S  # gone before the grace period (Kubernetes' kill) is over
    assert "draining" in server.log_path.read_text()
