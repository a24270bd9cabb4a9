"""The one module that reaches into KServe 0.13.1 beyond its public API, so an upgrade is checked here alone.

KServe's ModelServer builds its FastAPI application inside `UvicornServer` and keeps it, the uvicorn server,
the data plane and the model registry as attributes without a public accessor. The model servers need them
to put their middleware in front of the application, add ORES's routes, stop uvicorn at the end of the
drain period, list the loaded models and serve the V2 gRPC protocol in their own event loop. uvicorn's HTTP
protocol is subclassed here too (a deadline on request headers; a response written in one send), for the
same reason.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Mapping
from typing import Any

import kserve
from cloudevents.sdk.converters.util import has_binary_headers
from fastapi import FastAPI
from fastapi.encoders import jsonable_encoder
from kserve.protocol.grpc.servicer import InferenceServicer
from kserve.protocol.rest.server import UvicornServer
from starlette.responses import Response
from timing_asgi import TimingMiddleware
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

KEEP_ALIVE_S = 30  # idle keep-alive connections are closed after this (uvicorn's default is 5 s)
_REQUEST_TIMEOUT_ANSWER = (
    b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\nconnection: close\r\n"
    b"content-length: %d\r\n\r\n%s"
)


class _AnsweredCycle:
    """What uvicorn's protocol reads of a request/response cycle, for a request answered in the protocol."""

    response_complete = True  # uvicorn then discards the request's body
    disconnected = False
    keep_alive = True

    def __init__(self) -> None:
        self.message_event = asyncio.Event()
        self.body_read = False


class _OneSendResponses:
    """A response cycle's view of its connection: the response head is held back and written together with
    the body, so a response leaves in one send.

    uvicorn writes a response's head (status line and headers) and its body separately: two system calls,
    and two segments for the client to wake up for. An answer is small, so one send is enough (issue 20).
    Anything written before the response starts (`100 Continue`) goes out at once; a head whose body never
    comes (the application failed) goes out when the connection is closed.
    """

    def __init__(self, transport: Any, cycle: Any) -> None:
        self._transport = transport
        self._cycle = cycle
        self._head: bytes | None = None
        self._head_seen = False

    def write(self, data: bytes) -> None:
        if not self._head_seen and self._cycle.response_started:
            self._head_seen, self._head = True, data
            return
        if self._head is not None:
            data, self._head = self._head + data, None
        self._transport.write(data)

    def close(self) -> None:
        if self._head is not None:
            self._transport.write(self._head)
            self._head = None
        self._transport.close()

    def __getattr__(self, name: str) -> Any:  # is_closing, get_extra_info, ...: the connection's own
        return getattr(self._transport, name)


class HeaderDeadlineProtocol(HttpToolsProtocol):
    """uvicorn's HTTP/1.1 protocol (httptools, what uvicorn picks here), with a deadline on request headers.

    uvicorn waits for a request's headers without limit (its keep-alive timer runs only between requests,
    and not at all before a connection's first request), so a client sending a byte a minute holds its
    connection, and its memory, for ever. Headers never reach the ASGI application, so the deadline must be
    here: from a connection's opening, or a new request's first byte, its headers must be complete within
    `header_timeout_s`, or the connection gets a 408 and is closed.

    It can also answer a request as soon as its headers are read (`early_answer`: an overloaded server's
    refusals), discarding its body, which must then arrive within the same deadline. And each response goes
    out in one send (`_OneSendResponses`).
    """

    header_timeout_s: float = 10.0  # set by KServeRest from REQUEST_READ_TIMEOUT_S
    # (method, path, headers) -> a whole HTTP response refusing the request now, or None (set by the server:
    # an overloaded server refuses here, before a task, an ASGI cycle or the body, the cheapest place).
    early_answer: Callable[[str, str, list[tuple[bytes, bytes]]], bytes | None] | None = None

    def connection_made(self, transport: Any) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._header_timer: asyncio.TimerHandle | None = None
        self._awaiting_headers = False
        self._start_header_timer()  # from the opening: a connection's first request must come too

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        # A request whose headers did not all come in this read gets its deadline now, the moment of its
        # first byte. One whose headers came whole (nearly all) never needs a timer (issue 20).
        if self._awaiting_headers and self._header_timer is None and not self.transport.is_closing():
            self._start_header_timer()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._awaiting_headers = True

    def on_headers_complete(self) -> None:
        self._awaiting_headers = False
        self._stop_header_timer()
        if self.early_answer is not None and self._answered_early():
            self._start_header_timer()  # now the deadline of the body to discard
            return
        before = self.cycle
        super().on_headers_complete()
        if self.cycle is not before:  # a new cycle (not a connection upgrade, which keeps the old one)
            self.cycle.transport = _OneSendResponses(self.transport, self.cycle)

    def on_message_complete(self) -> None:
        if isinstance(self.cycle, _AnsweredCycle):
            if not self.cycle.body_read:  # the answered request's body is read: the connection is idle
                self.cycle.body_read = True
                self._stop_header_timer()
                self.on_response_complete()  # uvicorn's keep-alive timer, and a pipelined next request
            return
        super().on_message_complete()

    def _answered_early(self) -> bool:
        """Answers an HTTP/1.1 request with the response `early_answer` gives, if any; its body, if any, is
        then discarded by uvicorn (a completed cycle takes no body) and the connection kept alive."""
        idle = self.cycle is None or self.cycle.response_complete
        if self.parser.get_http_version() != "1.1" or not idle:
            return False  # HTTP/1.0, or a pipelined request behind one still being answered: the usual way
        path = self.url.split(b"?", 1)[0].decode("latin-1")
        answer = self.early_answer(self.parser.get_method().decode("latin-1"), path, self.headers)
        if answer is None:
            return False
        self.cycle = _AnsweredCycle()  # type: ignore[assignment]
        self.transport.write(answer)
        if not self.parser.should_keep_alive():
            self.transport.close()
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_header_timer()
        super().connection_lost(exc)

    def _start_header_timer(self) -> None:
        self._header_timer = self.loop.call_later(self.header_timeout_s, self._headers_too_slow)

    def _stop_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_too_slow(self) -> None:
        self._header_timer = None
        if self.transport.is_closing():
            return
        if isinstance(self.cycle, _AnsweredCycle) and not self.cycle.body_read:
            self.transport.close()  # the request was answered; its body did not come in time
            return
        body = b'{"error": "The request headers did not arrive within %g s."}' % self.header_timeout_s
        self.transport.write(_REQUEST_TIMEOUT_ANSWER % (len(body), body))
        self.transport.close()


class KServeRest:
    """KServe's REST server of `model_server`: its FastAPI app, and the uvicorn server around it."""

    def __init__(self, model_server: kserve.ModelServer, port: int, header_timeout_s: float) -> None:
        self._server = UvicornServer(
            port,
            [],
            model_server.dataplane,
            model_server.model_repository_extension,
            enable_docs_url=False,
            log_config=None,
        )
        self._server.cfg.timeout_keep_alive = KEEP_ALIVE_S
        # KServe times every request (wall and CPU: two getrusage calls) only to write the figures to the
        # `kserve.trace` logger at INFO, which wikiserve.logs turns off: work nobody reads (issue 20).
        app = self._server.cfg.app
        app.user_middleware = [entry for entry in app.user_middleware if entry.cls is not TimingMiddleware]
        # uvicorn builds one protocol object per connection from this class (uvicorn.Config.http).
        self._protocol = type(
            "HeaderDeadline", (HeaderDeadlineProtocol,), {"header_timeout_s": header_timeout_s}
        )
        self._server.cfg.http = self._protocol

    def answer_early(self, answer: Callable[[str, str, list[tuple[bytes, bytes]]], bytes | None]) -> None:
        """Lets `answer(method, path, headers)` answer a request as soon as its headers are read."""
        self._protocol.early_answer = staticmethod(answer)

    @property
    def app(self) -> FastAPI:
        """KServe's FastAPI application (its routes and exception handlers)."""
        return self._server.cfg.app

    def wrap(self, middleware: Callable[[Any], Any]) -> Any:
        """Puts `middleware(app)` in front of the application (what uvicorn calls), and returns it."""
        wrapped = middleware(self._server.cfg.app)
        self._server.cfg.app = wrapped
        return wrapped

    async def run(self) -> None:
        await self._server.run()

    def abandon_in_flight(self) -> None:
        """Makes uvicorn stop without waiting for the requests still in flight (the drain period is over)."""
        self._server.server.force_exit = True

    async def stop(self) -> None:
        await self._server.stop()


def json_answer(doc: Any, headers: Mapping[str, str] | None) -> Any:
    """What a model's `postprocess` returns for the answer `doc` on KServe's REST route: the response FastAPI
    would send for it, byte for byte, made without FastAPI walking the document first (`jsonable_encoder`:
    ~15 us of an answer's ~20 us, issue 20); a document whose values JSON does not know (numpy's) is
    walked by that encoder still. For a request sent as a CloudEvent, `doc` itself: KServe's data plane
    wraps answers to those in a CloudEvent of their own."""
    if headers and (
        has_binary_headers(headers) or headers.get("content-type") == "application/cloudevents+json"
    ):
        return doc
    body = json.dumps(
        doc, ensure_ascii=False, allow_nan=False, indent=None, separators=(",", ":"), default=jsonable_encoder
    )  # starlette's JSONResponse.render, with what FastAPI hands it
    return Response(body.encode("utf-8"), media_type="application/json")


def loaded_models(model_server: kserve.ModelServer) -> dict[str, kserve.Model]:
    """The models registered with `model_server`, by name."""
    return dict(model_server.registered_models.get_models())


def grpc_servicer(
    model_server: kserve.ModelServer, servicer_class: type[InferenceServicer]
) -> InferenceServicer:
    """A V2 gRPC servicer of `servicer_class` answering from `model_server`'s data plane."""
    return servicer_class(model_server.dataplane, model_server.model_repository_extension)
