"""The shared server start-up, exercised through a real KServe ModelServer serving a minimal model."""

import json
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid

import pytest
import requests
from kserve.errors import ModelNotFound
from testkit.servers import start_server

from wikiserve import server

HTTP_TIMEOUT_S = 30


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
    generated = requests.post(
        f"{echo_server.url}/v1/models/echo:predict", json={"rev_id": 5}, timeout=HTTP_TIMEOUT_S
    )
    assert generated.headers["x-request-id"]


def test_body_without_json_content_type_works(echo_server):
    response = requests.post(
        f"{echo_server.url}/v1/models/echo:predict",
        data='{"rev_id": 7}',
        headers={"Content-Type": "application/x-www-form-urlencoded"},
        timeout=HTTP_TIMEOUT_S,
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
        f"{echo_server.url}/v1/models/echo:predict", data=body, headers={"Content-Type": content_type},
        timeout=HTTP_TIMEOUT_S,
    )
    assert response.status_code == status
    assert message in response.json()["error"]


def test_oversized_bodies_are_refused_with_413(echo_server):
    big = json.dumps({"rev_id": 1, "padding": "x" * 5000})
    url = f"{echo_server.url}/v1/models/echo:predict"
    assert requests.post(url, data=big, timeout=HTTP_TIMEOUT_S).status_code == 413
    chunked = requests.post(url, data=iter([big.encode()]), timeout=HTTP_TIMEOUT_S)
    assert chunked.status_code == 413  # no Content-Length: counted while reading


def test_unknown_model_is_404_and_unexpected_errors_hide_details(echo_server):
    assert echo_server.predict("nope", {"rev_id": 1}).status_code == 404
    response = echo_server.predict("echo", {"rev_id": 13})
    assert response.status_code == 500
    assert "secret" not in response.text and "Traceback" not in response.text
    assert "request id" in response.json()["error"]
    assert echo_server.predict("echo", {"rev_id": 14}).status_code == 200  # still healthy


def test_a_model_that_is_not_ready_is_503_naming_it(echo_server):
    """KServe's ModelNotReady (a registered model still loading) is a 503, not a 500 or a traceback."""
    response = echo_server.predict("not-ready", {"rev_id": 1}, timeout_s=HTTP_TIMEOUT_S)
    assert response.status_code == 503, response.text
    assert "not-ready" in response.json()["error"] and "Traceback" not in response.text
    probe = requests.get(f"{echo_server.url}/v1/models/not-ready", timeout=HTTP_TIMEOUT_S)
    assert probe.status_code == 503
    assert echo_server.predict("echo", {"rev_id": 3}).status_code == 200


def _get(server, path: str) -> requests.Response:
    return requests.get(f"{server.url}{path}", timeout=HTTP_TIMEOUT_S)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_stop_signal_drains_in_flight_requests_and_exits_zero(sig):
    """SIGTERM (Kubernetes) and SIGINT (Ctrl-C) both drain. While draining: the in-flight request finishes,
    new requests and the readiness probe get 503, the liveness probe and /metrics still answer."""
    server = start_server(f"echo-{sig.name}", ["testkit.echo_model"], {"SHUTDOWN_GRACE_S": "10"}, ["echo"])
    try:
        results = {}

        def slow_request():
            results["slow"] = server.predict("echo", {"rev_id": 1, "sleep_s": 2.5}, timeout_s=HTTP_TIMEOUT_S)

        worker = threading.Thread(target=slow_request)
        worker.start()
        time.sleep(0.5)
        server.process.send_signal(sig)
        time.sleep(0.3)
        during = {
            "predict": server.predict("echo", {"rev_id": 2}, timeout_s=HTTP_TIMEOUT_S),
            "ready": _get(server, "/v1/models/echo"),
            "live": _get(server, "/"),
            "v2-live": _get(server, "/v2/health/live"),
            "metrics": _get(server, "/metrics"),
        }
        worker.join(HTTP_TIMEOUT_S)
        assert results["slow"].status_code == 200 and results["slow"].json() == {"rev_id": 1}
        assert during["predict"].status_code == 503 and "shutting down" in during["predict"].json()["error"]
        assert during["ready"].status_code == 503
        assert during["live"].status_code == 200 and during["v2-live"].status_code == 200
        assert during["metrics"].status_code == 200 and "# TYPE" in during["metrics"].text
        assert server.process.wait(15) == 0
        assert "draining" in server.log_path.read_text()
    finally:
        server.stop()


@pytest.mark.parametrize("value", ["b3a1f5c2-7d0e-4c89-9c1a-0f6e2d9b8a71", "80f198ee56343ba864fe8b2a57d3eff7",
                                   "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "x" * 128])
def test_request_ids_that_look_like_ids_are_kept(value):
    assert server.request_id_from(value) == value == server.request_id_from(value.encode())


@pytest.mark.parametrize("value", [None, "", "x" * 129, "a b", "<script>", "id\n", "é", "a,b"])
def test_other_request_ids_are_replaced_by_a_uuid(value):
    replaced = server.request_id_from(value)
    assert replaced != value and str(uuid.UUID(replaced)) == replaced


def test_messages_are_bounded_and_model_names_shortened():
    assert len(server.bounded("x" * 5000)) == server.MAX_MESSAGE_CHARS
    assert server.bounded("short") == "short"
    message = server.kserve_message(ModelNotFound("m" * 5000))
    assert message.startswith("Model with name mmm") and message.endswith("does not exist.")
    assert len(message) < 200


READ_TIMEOUT_S = 1.0


@pytest.fixture(scope="module")
def hurried_echo():
    server = start_server("echo-read-deadline", ["testkit.echo_model"],
                          {"REQUEST_READ_TIMEOUT_S": str(READ_TIMEOUT_S)}, ["echo"])
    yield server
    server.stop()


def _half_sent(url: str, part: str) -> socket.socket:
    """A connection that sends part of a request and then nothing (a slowloris client)."""
    host, port = url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=30)
    head = f"POST /v1/models/echo:predict HTTP/1.1\r\nHost: {host}\r\n"
    if part == "headers":
        sock.sendall(head.encode())  # the blank line that ends the headers never comes
    elif part == "body":
        sock.sendall(f"{head}Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"rev".encode())
    return sock  # "nothing": connected, not a byte sent


def _closed_within(sock: socket.socket, timeout_s: float) -> tuple[bool, bytes]:
    """Whether the server closed `sock` within `timeout_s`, and what it sent before closing."""
    sock.settimeout(timeout_s)
    received = b""
    try:
        while chunk := sock.recv(4096):
            received += chunk
    except TimeoutError:
        return False, received
    return True, received


def test_slow_clients_are_dropped_at_the_read_deadline_and_others_are_served(hurried_echo):
    slow = [_half_sent(hurried_echo.url, part) for part in ("nothing", "headers", "body") for _ in range(4)]
    try:
        started = time.monotonic()
        # Meanwhile, ordinary clients are answered.
        assert hurried_echo.predict("echo", {"rev_id": 3}).json() == {"rev_id": 3}
        outcomes = [_closed_within(sock, 10 * READ_TIMEOUT_S) for sock in slow]
        elapsed = time.monotonic() - started
    finally:
        for sock in slow:
            sock.close()
    assert all(closed for closed, _ in outcomes), outcomes
    assert elapsed < 5 * READ_TIMEOUT_S, elapsed  # dropped at the deadline, not at the 30 s keep-alive
    for _, answer in outcomes:
        assert answer.startswith(b"HTTP/1.1 408 "), answer
        assert b"did not arrive within 1 s" in answer
    assert hurried_echo.predict("echo", {"rev_id": 4}).json() == {"rev_id": 4}


def test_a_body_trickled_in_is_cut_at_the_deadline_not_at_each_byte(hurried_echo):
    sock = _half_sent(hurried_echo.url, "body")
    try:
        started = time.monotonic()
        for _ in range(int(3 * READ_TIMEOUT_S / 0.2)):  # a byte every 0.2 s: never idle for a whole deadline
            try:
                sock.sendall(b" ")
            except OSError:
                break  # closed by the server
            time.sleep(0.2)
        closed, answer = _closed_within(sock, 10 * READ_TIMEOUT_S)
    finally:
        sock.close()
    assert closed and answer.startswith(b"HTTP/1.1 408 "), answer
    assert time.monotonic() - started < 5 * READ_TIMEOUT_S


def test_the_young_generation_is_collected_every_10000_allocations_in_a_server_and_its_workers():
    script = (
        "import gc, os; from wikiserve.server import collect_garbage_less_often; "
        "collect_garbage_less_often(); pid = os.fork()\n"
        "if pid == 0: os._exit(0 if gc.get_threshold() == (10000, 10, 10) else 1)\n"
        "_, status = os.waitpid(pid, 0); print(gc.get_threshold(), os.waitstatus_to_exitcode(status))"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "(10000, 10, 10) 0"  # set here, and inherited by a forked worker
