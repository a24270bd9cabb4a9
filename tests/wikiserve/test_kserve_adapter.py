"""uvicorn's HTTP protocol as the servers run it (`HeaderDeadlineProtocol`), over a recording transport:
what goes out, in how many sends."""

from __future__ import annotations

import asyncio
import json

import numpy as np
import pytest
from fastapi.encoders import jsonable_encoder
from starlette.responses import JSONResponse
from uvicorn import Config
from uvicorn.server import ServerState

from wikiserve.kserve_adapter import HeaderDeadlineProtocol, json_answer


class RecordingTransport(asyncio.Transport):
    """A connection that keeps each `write` call apart, as the socket would see them."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.writes.append(bytes(data))

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def get_extra_info(self, name: str, default: object = None) -> object:
        return {"peername": ("127.0.0.1", 50000), "sockname": ("127.0.0.1", 8080)}.get(name, default)

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


async def _echo(scope, receive, send):
    """Answers with the request body it read, as JSON; fails after the head for path /fail."""
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    answer = json.dumps({"got": body.decode()}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(answer)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    if scope["path"] == "/fail":
        raise RuntimeError("the application failed after the head")
    await send({"type": "http.response.body", "body": answer})


async def _connection() -> tuple[HeaderDeadlineProtocol, RecordingTransport]:
    config = Config(_echo, log_config=None, lifespan="off")
    protocol = HeaderDeadlineProtocol(config, ServerState(), {}, asyncio.get_running_loop())
    transport = RecordingTransport()
    protocol.connection_made(transport)
    return protocol, transport


async def _settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


def _request(body: bytes, path: bytes = b"/echo", extra: bytes = b"", length: int | None = None) -> bytes:
    length = len(body) if length is None else length
    return b"POST %s HTTP/1.1\r\nhost: x\r\ncontent-length: %d\r\n%s\r\n%s" % (path, length, extra, body)


async def test_each_response_leaves_in_one_send_on_a_kept_alive_connection():
    protocol, transport = await _connection()
    for body in (b"one", b"two"):
        transport.writes.clear()
        protocol.data_received(_request(body))
        await _settle()
        assert len(transport.writes) == 1, transport.writes  # head and body together
        head, _, answer = transport.writes[0].partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200 OK") and json.loads(answer) == {"got": body.decode()}
    assert not transport.closed
    protocol.connection_lost(None)


async def test_100_continue_is_not_held_back_and_the_answer_follows_in_one_send():
    protocol, transport = await _connection()
    protocol.data_received(_request(b"", extra=b"expect: 100-continue\r\n", length=4))
    await _settle()
    assert transport.writes == [b"HTTP/1.1 100 Continue\r\n\r\n"]  # the client may now send its body
    protocol.data_received(b"late")
    await _settle()
    assert len(transport.writes) == 2 and json.loads(transport.writes[1].partition(b"\r\n\r\n")[2]) == {
        "got": "late"
    }
    protocol.connection_lost(None)


async def test_a_head_without_its_body_still_goes_out_before_the_connection_closes():
    protocol, transport = await _connection()
    protocol.data_received(_request(b"x", path=b"/fail"))
    await _settle()
    assert transport.closed  # uvicorn closes a connection whose response broke off
    assert b"".join(transport.writes).startswith(b"HTTP/1.1 200 OK")
    protocol.connection_lost(None)


async def test_the_next_request_on_a_kept_alive_connection_gets_the_header_deadline_from_its_first_byte():
    hurried = type("Hurried", (HeaderDeadlineProtocol,), {"header_timeout_s": 0.2})
    config = Config(_echo, log_config=None, lifespan="off")
    protocol = hurried(config, ServerState(), {}, asyncio.get_running_loop())
    transport = RecordingTransport()
    protocol.connection_made(transport)
    protocol.data_received(_request(b"whole"))  # headers whole in one read: answered, nothing pending
    await _settle()
    assert len(transport.writes) == 1 and not transport.closed
    await asyncio.sleep(0.4)  # idle between requests: the keep-alive timer's business, not the deadline's
    assert not transport.closed
    protocol.data_received(b"POST /echo HTTP/1.1\r\nhost: x\r\n")  # the next one's headers stop halfway
    await asyncio.sleep(0.6)
    assert transport.closed and transport.writes[-1].startswith(b"HTTP/1.1 408 ")
    protocol.connection_lost(None)


ANSWERS = [
    {"enwiki": {"models": {"damaging": {"version": "0.5.1"}}, "scores": {"123": {"damaging": {"score": {
        "prediction": False, "probability": {"false": 0.9123, "true": 0.0877}}}}}}},
    {"ruwiki": {"scores": {7: {"articletopic": {"score": {"prediction": ["Культура"], "probability": {
        "Культура": np.float64(0.71), "STEM": 1e-05}}}}}}},  # numpy, an int key, non-ASCII text
    {"topics": [(1, "a"), (2, "b")], "empty": {}, "none": None},
]


@pytest.mark.parametrize("doc", ANSWERS)
def test_an_answer_is_the_bytes_fastapi_would_send(doc):
    answer = json_answer(doc, {"content-type": "application/json"})
    reference = JSONResponse(jsonable_encoder(doc))  # what FastAPI makes of a returned document
    assert answer.body == reference.body
    assert answer.headers["content-type"] == reference.headers["content-type"]


@pytest.mark.parametrize(
    "headers",
    [
        {"ce-specversion": "1.0", "ce-source": "s", "ce-type": "t", "ce-id": "1"},
        {"content-type": "application/cloudevents+json"},
    ],
)
def test_an_answer_to_a_cloudevent_is_left_to_kserve_to_wrap(headers):
    assert json_answer(ANSWERS[0], headers) is ANSWERS[0]
