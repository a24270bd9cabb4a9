"""The shared server start-up, exercised through a real KServe ModelServer serving a minimal model."""

import json
import signal
import threading
import time

import pytest
import requests
from testkit.servers import start_server


@pytest.fixture(scope="module")
def echo_server():
    server = start_server(
        "echo", ["testkit.echo_model"], {"MAX_BODY_BYTES": "4096", "SHUTDOWN_GRACE_S": "10"}, ["echo"]
    )
    yield server
    server.stop()


def test_valid_request_gets_a_request_id(echo_server):
    response = echo_server.predict("echo", {"rev_id": 5}, headers={"x-request-id": "abc-123"})
    assert response.status_code == 200 and response.json() == {"rev_id": 5}
    assert response.headers["x-request-id"] == "abc-123"
    assert requests.post(f"{echo_server.url}/v1/models/echo:predict", json={"rev_id": 5}).headers[
        "x-request-id"
    ]


def test_body_without_json_content_type_works(echo_server):
    response = requests.post(
        f"{echo_server.url}/v1/models/echo:predict",
        data='{"rev_id": 7}',
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert response.status_code == 200 and response.json() == {"rev_id": 7}


@pytest.mark.parametrize(
    "body, content_type, status, message",
    [
        ("{bad", "application/json", 400, "request format"),
        ("{bad", "text/plain", 400, "not valid JSON"),
        ("[1]", "application/json", 400, "JSON object"),
        ("", "text/plain", 400, "empty"),
        ('{"rev_id": "5"}', "application/json", 400, "integer"),
        ('{"rev_id": 5, "x": 1}', "application/json", 400, "Unknown field"),
    ],
)
def test_bad_input_is_a_clear_4xx(echo_server, body, content_type, status, message):
    response = requests.post(
        f"{echo_server.url}/v1/models/echo:predict", data=body, headers={"Content-Type": content_type}
    )
    assert response.status_code == status
    assert message in response.json()["error"]


def test_oversized_bodies_are_refused_with_413(echo_server):
    big = json.dumps({"rev_id": 1, "padding": "x" * 5000})
    assert requests.post(f"{echo_server.url}/v1/models/echo:predict", data=big).status_code == 413
    chunked = requests.post(f"{echo_server.url}/v1/models/echo:predict", data=iter([big.encode()]))
    assert chunked.status_code == 413  # no Content-Length: counted while reading


def test_unknown_model_is_404_and_unexpected_errors_hide_details(echo_server):
    assert echo_server.predict("nope", {"rev_id": 1}).status_code == 404
    response = echo_server.predict("echo", {"rev_id": 13})
    assert response.status_code == 500
    assert "secret" not in response.text and "Traceback" not in response.text
    assert "request id" in response.json()["error"]
    assert echo_server.predict("echo", {"rev_id": 14}).status_code == 200  # still healthy


def test_sigterm_finishes_in_flight_requests_and_exits_zero():
    server = start_server("echo-sigterm", ["testkit.echo_model"], {"SHUTDOWN_GRACE_S": "10"}, ["echo"])
    results = {}

    def slow_request():
        results["slow"] = server.predict("echo", {"rev_id": 1, "sleep_s": 1.5})

    worker = threading.Thread(target=slow_request)
    worker.start()
    time.sleep(0.4)
    server.process.send_signal(signal.SIGTERM)
    time.sleep(0.2)
    try:
        refused = server.predict("echo", {"rev_id": 2}, timeout_s=5).status_code
    except requests.ConnectionError:
        refused = "connection refused"
    worker.join(10)
    assert results["slow"].status_code == 200 and results["slow"].json() == {"rev_id": 1}
    assert refused in (503, "connection refused")
    assert server.process.wait(15) == 0
    server.stop()
