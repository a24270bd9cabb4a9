"""KServe's V2 inference protocol on the predictor (a real subprocess server against the farm): REST through
an HTTP client, gRPC through a real client stub generated from KServe's `grpc_predict_v2.proto`.

A V2 request carries the usual JSON request as one BYTES input; the answer's one BYTES output is the usual
JSON response. Answers and error messages must be exactly the V1 endpoint's, which is checked against the
reference separately (test_outlink_http.py) and here for one request.
"""

from __future__ import annotations

import json
import struct
import time
import uuid
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
import requests
from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb
from kserve.protocol.grpc.grpc_predict_v2_pb2_grpc import GRPCInferenceServiceStub
from outlink_testing import MODEL_NAME, predict
from test_outlink_events import EN, assert_same, expected_results, page_change, results, sent_for

TIMEOUT_S = 60


@pytest.fixture(scope="module")
def predictor(outlink_servers):
    return outlink_servers["predictor"]


@pytest.fixture(scope="module")
def stub(outlink_servers, predictor_grpc_port: int) -> Iterator[GRPCInferenceServiceStub]:
    channel = grpc.insecure_channel(f"127.0.0.1:{predictor_grpc_port}")
    grpc.channel_ready_future(channel).result(timeout=30)
    yield GRPCInferenceServiceStub(channel)
    channel.close()


def v2_rest(predictor, request_json: str, **overrides: Any) -> requests.Response:
    tensor = {"name": "request", "shape": [1], "datatype": "BYTES", "data": [request_json], **overrides}
    return requests.post(f"{predictor.url}/v2/models/{MODEL_NAME}/infer",
                         json={"id": "rest-1", "inputs": [tensor]}, timeout=TIMEOUT_S)


def rest_answer(response: requests.Response) -> dict:
    assert response.status_code == 200, response.text
    (output,) = response.json()["outputs"]
    assert (output["name"], output["datatype"], output["shape"]) == ("prediction", "BYTES", [1])
    assert response.json()["id"] == "rest-1" and response.json()["model_name"] == MODEL_NAME
    assert response.json()["model_version"].startswith("sha256:")  # the model binary's, as in events
    return json.loads(output["data"][0])


def v2_grpc(stub, request_json: bytes, raw: bool = False, model: str = MODEL_NAME) -> pb.ModelInferResponse:
    tensor = pb.ModelInferRequest.InferInputTensor(name="request", datatype="BYTES", shape=[1])
    request = pb.ModelInferRequest(model_name=model, id="grpc-1", inputs=[tensor])
    if raw:  # KServe's binary form: each BYTES element prefixed by its length (uint32, little-endian)
        request.raw_input_contents.append(struct.pack("<I", len(request_json)) + request_json)
    else:
        request.inputs[0].contents.bytes_contents.append(request_json)
    return stub.ModelInfer(request, timeout=TIMEOUT_S)


def grpc_answer(response: pb.ModelInferResponse) -> dict:
    (output,) = response.outputs
    assert (output.name, output.datatype, list(output.shape)) == ("prediction", "BYTES", [1])
    assert response.id == "grpc-1" and response.model_name == MODEL_NAME
    assert response.model_version.startswith("sha256:")
    return json.loads(output.contents.bytes_contents[0])


def grpc_error(stub, request_json: bytes, **kwargs: Any) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as raised:
        v2_grpc(stub, request_json, **kwargs)
    return raised.value


def test_v2_rest_and_grpc_answer_exactly_what_v1_answers(predictor, stub, reference, enwiki):
    title = enwiki["special"]["redirect_target"]
    body = {"lang": "en", "page_title": title, "debug": True}
    v1 = predict(predictor, body)
    assert_same(results(v1), expected_results(reference, reference.page_qids(EN, title), 0.0))
    text = json.dumps(body)
    assert rest_answer(v2_rest(predictor, text)) == v1.json()
    assert grpc_answer(v2_grpc(stub, text.encode())) == v1.json()
    assert grpc_answer(v2_grpc(stub, text.encode(), raw=True)) == v1.json()


@pytest.mark.parametrize("body", [
    {"lang": "en", "page_title": "No such page here"},
    {"lang": "en.evil.example", "page_title": "River"},
    {"lang": "en", "page_title": "River|Bridge"},
    {"lang": "en", "page_title": "River", "threshold": 1.5},
    {"lang": "en", "page_title": "River", "colour": "red"},
    {"lang": "en"},
    [],
])
def test_v2_refuses_what_v1_refuses_with_the_same_message(predictor, stub, body):
    v1 = predict(predictor, body)
    assert v1.status_code == 400
    message = v1.json()["error"]
    rest = v2_rest(predictor, json.dumps(body))
    assert (rest.status_code, rest.json()) == (400, {"error": message})
    error = grpc_error(stub, json.dumps(body).encode())
    assert (error.code(), error.details()) == (grpc.StatusCode.INVALID_ARGUMENT, message)


@pytest.mark.parametrize(("overrides", "message"), [
    ({"datatype": "FP32", "data": [1.0]}, "BYTES tensor of shape [1]"),
    ({"shape": [2], "data": ["{}", "{}"]}, "BYTES tensor of shape [1]"),
    ({"data": ["lang=en&page_title=River"]}, "is not a JSON request"),
])
def test_v2_requests_not_carrying_one_json_request_are_400(predictor, overrides, message):
    response = v2_rest(predictor, "", **overrides)
    assert response.status_code == 400 and message in response.json()["error"], response.text


def test_a_body_that_is_not_a_v2_request_is_400(predictor):
    response = requests.post(f"{predictor.url}/v2/models/{MODEL_NAME}/infer", json={"instances": []},
                             timeout=TIMEOUT_S)
    assert response.status_code == 400, response.text
    assert "not a V2 inference request" in response.json()["error"] and "inputs" in response.json()["error"]


def test_grpc_with_two_inputs_or_bad_json_is_invalid_argument(stub):
    error = grpc_error(stub, b"not json")
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and "is not a JSON request" in error.details()
    tensor = pb.ModelInferRequest.InferInputTensor(name="request", datatype="BYTES", shape=[1],
                                                   contents=pb.InferTensorContents(bytes_contents=[b"{}"]))
    request = pb.ModelInferRequest(model_name=MODEL_NAME, inputs=[tensor, tensor])
    with pytest.raises(grpc.RpcError) as raised:
        stub.ModelInfer(request, timeout=TIMEOUT_S)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "2 inputs" in raised.value.details()


def test_grpc_unknown_model_is_not_found(stub):
    error = grpc_error(stub, b"{}", model="no-such-model")
    assert error.code() == grpc.StatusCode.NOT_FOUND and "no-such-model" in error.details()


def test_grpc_message_over_the_body_limit_is_refused(stub):
    error = grpc_error(stub, json.dumps({"lang": "en", "page_title": "x" * (1024 * 1024)}).encode())
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


def test_grpc_cannot_unload_the_model(stub):
    with pytest.raises(grpc.RpcError) as raised:
        stub.RepositoryModelUnload(pb.RepositoryModelUnloadRequest(model_name=MODEL_NAME), timeout=TIMEOUT_S)
    assert raised.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert stub.ModelReady(pb.ModelReadyRequest(name=MODEL_NAME), timeout=TIMEOUT_S).ready
    assert stub.ServerReady(pb.ServerReadyRequest(), timeout=TIMEOUT_S).ready


def test_an_event_over_grpc_posts_its_event(stub, reference, enwiki, event_receiver):
    title = enwiki["special"]["redirect_target"]
    rev_id = next(page for page in enwiki["pages"] if page["title"] == title)["rev_ids"][-1]
    event = page_change(reference, EN, "enwiki", rev_id)
    since = len(event_receiver.events)
    answer = grpc_answer(v2_grpc(stub, json.dumps({"event": event}).encode()))
    expected = expected_results(reference, reference.qids(EN, reference.revision_titles(EN, rev_id)))
    assert_same([(r["topic"], r["score"]) for r in answer["prediction"]["results"]], expected)
    (sent,) = sent_for(event_receiver, event, since)
    assert sent["predicted_classification"]["predictions"] == [topic for topic, _ in expected]


# Hostile V2 requests (issue 18): each a 400 / INVALID_ARGUMENT naming the problem, nothing repeated whole.

@pytest.mark.parametrize("element", [-1, 10**12, 0, 3.5, True, {"lang": "en"}])
def test_a_bytes_element_that_is_not_a_string_is_400(predictor, element):
    """A number as a BYTES element was turned into that many bytes (-1: a 500; 10**12: a terabyte)."""
    started = time.monotonic()
    response = v2_rest(predictor, "", data=[element])
    assert response.status_code == 400, response.text
    assert "Input 'request'" in response.json()["error"] and "Traceback" not in response.text
    assert time.monotonic() - started < 10


def test_truncated_raw_input_contents_is_invalid_argument(stub):
    """The element's length prefix says 1000 bytes; 10 follow."""
    tensor = pb.ModelInferRequest.InferInputTensor(name="request", datatype="BYTES", shape=[1])
    request = pb.ModelInferRequest(model_name=MODEL_NAME, id="grpc-1", inputs=[tensor])
    request.raw_input_contents.append(struct.pack("<I", 1000) + b'{"lang": "')
    with pytest.raises(grpc.RpcError) as raised:
        stub.ModelInfer(request, timeout=TIMEOUT_S)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT, raised.value.details()
    assert "truncated" in raised.value.details()


def test_a_50_kb_v2_id_is_refused_not_echoed(predictor, stub, enwiki):
    body = json.dumps({"lang": "en", "page_title": enwiki["special"]["redirect_target"]})
    long_id = "i" * 50_000
    response = requests.post(f"{predictor.url}/v2/models/{MODEL_NAME}/infer", timeout=TIMEOUT_S, json={
        "id": long_id, "inputs": [{"name": "request", "shape": [1], "datatype": "BYTES", "data": [body]}]})
    assert response.status_code == 400, response.text[:300]
    assert len(response.text) < 1000 and "'id' has 50000 characters; at most 128" in response.json()["error"]
    tensor = pb.ModelInferRequest.InferInputTensor(name="request", datatype="BYTES", shape=[1])
    request = pb.ModelInferRequest(model_name=MODEL_NAME, id=long_id, inputs=[tensor])
    request.inputs[0].contents.bytes_contents.append(body.encode())
    with pytest.raises(grpc.RpcError) as raised:
        stub.ModelInfer(request, timeout=TIMEOUT_S)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT and len(raised.value.details()) < 1000


def test_a_5_kb_model_name_is_not_repeated_over_grpc(stub):
    error = grpc_error(stub, b"{}", model="m" * 5000)
    assert error.code() == grpc.StatusCode.NOT_FOUND
    assert "does not exist" in error.details() and len(error.details()) < 1000


def test_a_grpc_request_id_that_is_not_an_id_is_replaced_in_the_log(predictor, stub):
    long_id = "g" * 5000
    tensor = pb.ModelInferRequest.InferInputTensor(name="request", datatype="BYTES", shape=[1])
    request = pb.ModelInferRequest(model_name=MODEL_NAME, id="grpc-1", inputs=[tensor])
    request.inputs[0].contents.bytes_contents.append(b'{"lang": "en", "page_id": "one"}')
    with pytest.raises(grpc.RpcError) as raised:
        stub.ModelInfer(request, timeout=TIMEOUT_S, metadata=(("x-request-id", long_id),))
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    time.sleep(0.3)  # let the server write its log line
    log = predictor.log_path.read_text(errors="replace")
    assert long_id[:200] not in log
    refused = [json.loads(line) for line in log.splitlines() if '"Request refused"' in line]
    assert refused and str(uuid.UUID(refused[-1]["request_id"])) == refused[-1]["request_id"]
