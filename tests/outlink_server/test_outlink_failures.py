"""Failures: MediaWiki misbehaving (through the fault-injecting proxy in front of the farm), the predictor
failing behind the transformer, and model binaries that cannot be loaded."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import grpc
import pytest
import requests
from outlink_testing import MODEL_NAME, predict, predictor_spec, start_servers, transformer_spec
from testkit.servers import REPO_ROOT, ServerProcess, free_port, server_environment

from outlink_server.languages import wikipedias
from outlink_server.settings import OutlinkSettings
from outlink_server.transformer import OutlinkTransformer, PredictorError, predictor_url
from wikiserve.config import MediaWikiSettings
from wikiserve.mediawiki import MediaWikiPool

pytestmark = pytest.mark.slow  # two more servers, and subprocesses that fail to start

TIMEOUT_S = 1  # an int: KServe's own argument parser (run at import) wants whole seconds for the transformer
FAST_FAILURE = {"MEDIAWIKI_TIMEOUT_S": str(TIMEOUT_S), "MEDIAWIKI_ATTEMPTS": "2",
                "MEDIAWIKI_BACKOFF_CAP_S": "0.2"}
# What the fake predictor does, by the first Q-id of features_str; anything else goes to the real predictor.
PREDICTOR_FAULTS = {
    "Q400": (400, {"error": "fake predictor: Q400 is refused"}),
    "Q404": (404, {"error": f"Model with name {MODEL_NAME} does not exist."}),
    "Q500": (500, {"error": "Internal error (KeyError)"}),
    "Q503": (503, {"error": "The server is shutting down; retry on another replica."}),
}
SLOW, GARBAGE, HANG_UP = "Q777", "Q888", "Q999"


class FakePredictor(BaseHTTPRequestHandler):
    """Plays the predictor's failures; otherwise relays the request to the real predictor."""

    real_predictor = ""

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        body = self.rfile.read(int(self.headers["Content-Length"]))
        first = (json.loads(body).get("features_str") or "-").split()[0]
        if first == HANG_UP:
            self.close_connection = True  # no response at all
            return
        if first == SLOW:
            time.sleep(3 * TIMEOUT_S)
        if first == GARBAGE:
            self._send(200, b"<html>502 Bad Gateway</html>", "text/html")
        elif first in PREDICTOR_FAULTS:
            status, payload = PREDICTOR_FAULTS[first]
            self._send(status, json.dumps(payload).encode(), "application/json")
        else:
            response = requests.post(self.real_predictor + self.path, data=body, timeout=30,
                                     headers={"content-type": "application/json"})
            self._send(response.status_code, response.content, "application/json")

    def _send(self, status: int, payload: bytes, content_type: str) -> None:
        try:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the transformer gave up waiting

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def fake_predictor(outlink_servers) -> Iterator[str]:
    FakePredictor.real_predictor = outlink_servers["predictor"].url
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakePredictor)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"127.0.0.1:{server.server_address[1]}"
    server.shutdown()


@pytest.fixture(scope="module")
def faulty_grpc_port() -> int:
    return free_port()


@pytest.fixture(scope="module")
def faulty_servers(faulty_mediawiki, fake_predictor, outlink_model, no_fasttext_dir, faulty_grpc_port
                   ) -> Iterator[dict[str, ServerProcess]]:
    """Both servers reading MediaWiki through the proxy; the transformer's predictor is the fake one. The
    predictor serves V2 gRPC too."""
    predictor, transformer = start_servers([
        predictor_spec(faulty_mediawiki.url, outlink_model, free_port(), GRPC_PORT=str(faulty_grpc_port),
                       **FAST_FAILURE),
        transformer_spec(faulty_mediawiki.url, fake_predictor, no_fasttext_dir, free_port(),
                         f"--predictor_request_timeout_seconds={TIMEOUT_S}", **FAST_FAILURE),
    ])
    yield {"predictor": predictor, "transformer": transformer}
    for server in (transformer, predictor):
        server.stop()


@pytest.fixture(params=["predictor", "transformer"])
def faulty_server(request, faulty_servers, faulty_mediawiki) -> Iterator[ServerProcess]:
    faulty_mediawiki.clear()
    yield faulty_servers[request.param]
    faulty_mediawiki.clear()


def _river(enwiki) -> dict:
    return {"lang": "en", "page_title": enwiki["special"]["redirect_target"], "debug": True}


def test_mediawiki_http_errors_are_retried_then_503(faulty_server, faulty_mediawiki, enwiki):
    faulty_mediawiki.inject("status", status=500, times=-1)
    response = predict(faulty_server, _river(enwiki))
    assert response.status_code == 503
    assert "MediaWiki API" in response.json()["error"] and "HTTP 500" in response.json()["error"]
    assert len(faulty_mediawiki.requests) == 2  # MEDIAWIKI_ATTEMPTS


def test_a_transient_mediawiki_error_is_retried(faulty_server, faulty_mediawiki, outlink_servers, enwiki):
    expected = predict(outlink_servers["predictor"], _river(enwiki)).json()
    faulty_mediawiki.inject("status", status=503, times=1)
    response = predict(faulty_server, _river(enwiki))
    assert response.status_code == 200, response.text
    assert response.json() == expected


def test_mediawiki_too_slow_is_504_within_the_timeout(faulty_server, faulty_mediawiki, enwiki):
    faulty_mediawiki.inject("delay", delay_s=4 * TIMEOUT_S, times=-1)
    started = time.monotonic()
    response = predict(faulty_server, _river(enwiki))
    assert response.status_code == 504
    assert "MediaWiki API" in response.json()["error"]
    assert time.monotonic() - started < 2 * TIMEOUT_S + 2.0  # two attempts and a short backoff, no hang


@pytest.mark.parametrize(("kind", "options", "status"), [
    ("reset", {}, 503),
    ("invalid_json", {}, 502),
    ("api_error", {"api_code": "maxlag"}, 503),
    ("api_error", {"api_code": "unknown_action"}, 502),
])
def test_other_mediawiki_failures_are_5xx_naming_it(faulty_server, faulty_mediawiki, enwiki, kind, options,
                                                     status):
    faulty_mediawiki.inject(kind, times=-1, **options)
    response = predict(faulty_server, _river(enwiki))
    assert response.status_code == status, response.text
    assert "MediaWiki API" in response.json()["error"]


def test_continuation_failing_midway_is_a_5xx(faulty_server, faulty_mediawiki, enwiki):
    faulty_mediawiki.inject("drop_continuation", times=-1)
    response = predict(faulty_server, {"lang": "en", "page_title": enwiki["special"]["many_links_title"]})
    assert response.status_code == 503
    assert "MediaWiki API" in response.json()["error"]
    assert any("gplcontinue" in params for params in faulty_mediawiki.requests)


@pytest.mark.parametrize(("kind", "options", "code"), [
    ("status", {"status": 500}, grpc.StatusCode.UNAVAILABLE),
    ("invalid_json", {}, grpc.StatusCode.UNAVAILABLE),
    ("delay", {"delay_s": 4 * TIMEOUT_S}, grpc.StatusCode.DEADLINE_EXCEEDED),
])
def test_mediawiki_failures_over_grpc_are_status_codes_with_the_v1_message(
        faulty_servers, faulty_grpc_port, faulty_mediawiki, enwiki, kind, options, code):
    from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb
    from kserve.protocol.grpc.grpc_predict_v2_pb2_grpc import GRPCInferenceServiceStub

    body = _river(enwiki)
    faulty_mediawiki.clear()
    faulty_mediawiki.inject(kind, times=-1, **options)
    try:
        v1 = predict(faulty_servers["predictor"], body)
        assert v1.status_code >= 500
        tensor = pb.ModelInferRequest.InferInputTensor(
            name="request", datatype="BYTES", shape=[1],
            contents=pb.InferTensorContents(bytes_contents=[json.dumps(body).encode()]))
        with grpc.insecure_channel(f"127.0.0.1:{faulty_grpc_port}") as channel:
            with pytest.raises(grpc.RpcError) as raised:
                GRPCInferenceServiceStub(channel).ModelInfer(
                    pb.ModelInferRequest(model_name=MODEL_NAME, inputs=[tensor]), timeout=60)
    finally:
        faulty_mediawiki.clear()
    assert (raised.value.code(), raised.value.details()) == (code, v1.json()["error"])


def _scored(first_qid: str) -> dict:
    return {"lang": "en", "page_id": 3, "features_str": f"{first_qid} Q5"}


@pytest.mark.parametrize("qid", ["Q400", "Q404"])
def test_predictor_4xx_passes_through_the_transformer(faulty_servers, qid):
    response = predict(faulty_servers["transformer"], _scored(qid))
    status, payload = PREDICTOR_FAULTS[qid]
    assert response.status_code == status
    assert response.json()["error"] == payload["error"]


@pytest.mark.parametrize(("qid", "status", "message"), [
    ("Q500", 502, "failed with HTTP 500: Internal error (KeyError)"),
    ("Q503", 503, "failed with HTTP 503"),
    (SLOW, 504, f"did not answer within {TIMEOUT_S:g} s"),
    (GARBAGE, 502, "something other than a prediction"),
    (HANG_UP, 502, "is unreachable"),
])
def test_predictor_failures_are_5xx_naming_the_predictor(faulty_servers, fake_predictor, qid, status,
                                                          message):
    started = time.monotonic()
    response = predict(faulty_servers["transformer"], _scored(qid))
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error.startswith("The predictor ") and message in error
    assert fake_predictor not in error  # the predictor's internal address is logged, never told the client
    assert time.monotonic() - started < 3 * TIMEOUT_S  # the transformer's own timeout, not the predictor's


async def test_predictor_refusing_connections_is_502():
    url = predictor_url(f"127.0.0.1:{free_port()}", MODEL_NAME, use_ssl=False)
    pool = MediaWikiPool(MediaWikiSettings())
    transformer = OutlinkTransformer(MODEL_NAME, url, pool, OutlinkSettings(predictor_timeout_s=TIMEOUT_S))
    with pytest.raises(PredictorError) as failure:
        await transformer({"lang": "en", "page_id": 3, "features_str": "Q1"}, headers={"x-request-id": "t"})
    assert failure.value.status == 502
    assert failure.value.message == "The predictor is unreachable."  # its URL is in the log only
    await transformer.stop_async()
    assert wikipedias() is transformer.wikis


def _start_predictor(model_path: Path) -> subprocess.CompletedProcess:
    env = server_environment({"MODEL_PATH": str(model_path), "LOG_FORMAT": "text"})
    return subprocess.run([sys.executable, "-m", "outlink_server.predictor", f"--http_port={free_port()}"],
                          env=env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize(("damage", "message"), [
    ("missing", "No such file or directory"),
    ("truncated", "truncated or corrupt"),
    ("not_fasttext", "not a fastText binary"),
])
def test_predictor_refuses_to_start_without_a_usable_model(outlink_model, tmp_path, damage, message):
    model = tmp_path / "model.bin"
    if damage == "truncated":
        model.write_bytes(outlink_model.read_bytes()[: outlink_model.stat().st_size // 2])
    elif damage == "not_fasttext":
        model.write_bytes(b"\x80\x04\x95 a pickle, not a fastText model" * 10)
    result = _start_predictor(model)
    assert result.returncode != 0
    assert "Cannot start the outlink topic model" in result.stderr and message in result.stderr
    assert str(model) in result.stderr


def test_transformer_refuses_other_protocols():
    result = subprocess.run([sys.executable, "-m", "outlink_server.transformer", "--predictor_host=x:1",
                             "--predictor_protocol=v2", f"--http_port={free_port()}"],
                            env=server_environment({"LOG_FORMAT": "text"}), cwd=REPO_ROOT,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert "Only the V1 protocol" in result.stderr
