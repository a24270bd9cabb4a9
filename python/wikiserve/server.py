"""Model server start-up, shared by every model family.

Uses KServe's real ModelServer and its FastAPI application, adding what production needs around it:
request ids, a request-body size limit, error responses without tracebacks, JSON logs, and a graceful
SIGTERM (in-flight requests finish, new ones are refused with 503, the process exits 0).

With a gRPC port configured (`GRPC_PORT`), KServe's V2 gRPC service is served beside REST, under the same
rules: the same size limit, errors as gRPC status codes carrying the same messages, no model repository.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import re
import signal
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import grpc
import kserve
import orjson
import uvloop
from fastapi import APIRouter, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import ORJSONResponse
from kserve.errors import InvalidInput, ModelNotFound, ModelNotReady
from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb
from kserve.protocol.grpc.grpc_predict_v2_pb2_grpc import add_GRPCInferenceServiceServicer_to_server
from kserve.protocol.grpc.servicer import InferenceServicer

from wikiserve.admission import Admission, Overloaded
from wikiserve.config import ServerSettings
from wikiserve.errors import PayloadTooLarge, RequestTimeout, ServingError
from wikiserve.kserve_adapter import KServeRest, grpc_servicer, loaded_models
from wikiserve.logs import REQUEST_ID, configure_logging
from wikiserve.validation import shortened

logger = logging.getLogger(__name__)

Scope = dict[str, Any]
ASGIApp = Callable[[Scope, Callable, Callable], Awaitable[None]]

# A client's x-request-id is echoed in the response and written on every log line of the request: one is
# kept only if it looks like an id (a UUID, a B3 or W3C trace id fit), else a fresh UUID replaces it.
_SAFE_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
MAX_MESSAGE_CHARS = 1000  # no error message is longer, whatever client input it names


def request_id_from(value: str | bytes | None) -> str:
    """The client's request id when it is a safe one (at most 128 of A-Z a-z 0-9 . _ : -), else a new one."""
    if isinstance(value, bytes):
        value = value.decode("latin-1")
    if value and _SAFE_REQUEST_ID.fullmatch(value):
        return value
    return str(uuid.uuid4())


def bounded(message: str) -> str:
    """An error message for the client, cut to MAX_MESSAGE_CHARS (a last guard: messages that name client
    input shorten it themselves)."""
    return message if len(message) <= MAX_MESSAGE_CHARS else message[: MAX_MESSAGE_CHARS - 1] + "…"


def kserve_message(error: Exception) -> str:
    """KServe's own messages repeat the model name of the URL whole; ours shortens it."""
    if isinstance(error, ModelNotFound):
        reason = str(error)
        name = reason.removeprefix("Model with name ").removesuffix(" does not exist.")
        return f"Model with name {shortened(name, 100, quoted=False)} does not exist."
    return bounded(str(error))


class RequestGuard:
    """ASGI middleware: request ids, the body size limit and read deadline, and refusing new work while
    draining or while the models' admission bound is full (`early_refusal` does the latter sooner, in
    uvicorn's protocol; this is the way for what the protocol leaves to the application)."""

    def __init__(
        self,
        app: ASGIApp,
        max_body_bytes: int,
        read_timeout_s: float = 10.0,
        admission: Admission | None = None,
    ) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.read_timeout_s = read_timeout_s
        # The model's bound on work in flight: when it is full, scoring requests are refused here, before
        # their body is read or parsed (a refusal must be cheap: refused clients come back at once).
        self.admission = admission
        self.in_flight = 0
        self.draining = False

    async def __call__(self, scope: Scope, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        request_id = request_id_from(headers.get(b"x-request-id"))
        if headers.get(b"x-request-id") != request_id.encode():  # absent or replaced: KServe sees ours
            scope["headers"] = [(name, value) for name, value in scope.get("headers", [])
                                if name != b"x-request-id"] + [(b"x-request-id", request_id.encode())]
        token = REQUEST_ID.set(request_id)
        try:
            if self.draining and not _answered_while_draining(scope):
                await _send_json(
                    send, 503, {"error": "The server is shutting down; retry on another replica."}, request_id
                )
                return
            if self.admission is not None and self.admission.full() and _asks_for_work(scope):
                refusal = self.admission.refusal()
                body = _refusal_body(scope, refusal.message)
                await _send_json(send, 503, body, request_id, refusal.headers)
                return
            declared = headers.get(b"content-length")
            if declared is not None and declared.isdigit() and int(declared) > self.max_body_bytes:
                _log_failure(413, self._too_large())
                await _send_json(send, 413, {"error": self._too_large()}, request_id)
                return
            self.in_flight += 1
            response = _ResponseTracker(send, request_id)
            try:
                await self.app(scope, self._limited(receive), response.send)
            except Exception:  # noqa: BLE001 - already logged by the error handler; never crash the server
                if not response.started:
                    await _send_json(
                        send, 500, {"error": f"Internal error; request id {request_id}."}, request_id
                    )
            finally:
                self.in_flight -= 1
        finally:
            REQUEST_ID.reset(token)

    def early_refusal(self, method: str, path: str, headers: list[tuple[bytes, bytes]]) -> bytes | None:
        """The whole 503 response for a scoring request while the admission bound is full, else None. Called
        by uvicorn's protocol as soon as the headers are read: overloaded, the server spends on a refusal
        only this, because refused clients come back at once (measured: benchmark/README.md)."""
        if self.admission is None or not self.admission.full() or self.draining:
            return None
        scope = {"method": method, "path": path}
        if not _asks_for_work(scope):
            return None
        refusal = self.admission.refusal()
        body = orjson.dumps(_refusal_body(scope, refusal.message))
        request_id = request_id_from(dict(headers).get(b"x-request-id"))
        return (
            b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n"
            b"retry-after: %s\r\nx-request-id: %s\r\ncontent-length: %d\r\n\r\n%s"
            % (refusal.headers["Retry-After"].encode(), request_id.encode(), len(body), body)
        )

    def _too_large(self) -> str:
        return f"The request body is larger than {self.max_body_bytes} bytes."

    def _limited(self, receive: Callable) -> Callable:
        """Counts a body sent without Content-Length (chunked) and stops reading past the limit; a body not
        complete within `read_timeout_s` of the request's start is a 408 (and the connection is closed)."""
        received = 0
        complete = False
        deadline = asyncio.get_running_loop().time() + self.read_timeout_s

        async def guarded_receive() -> dict:
            nonlocal received, complete
            if complete:  # after the body, receive() waits for the client to go away: no deadline
                return await receive()
            try:
                # asyncio.timeout, not wait_for: wait_for wraps receive() in a task of its own, at every
                # request (issue 20).
                async with asyncio.timeout_at(deadline):
                    message = await receive()
            except TimeoutError:
                raise RequestTimeout(
                    f"The request body did not arrive within {self.read_timeout_s:g} s.",
                    headers={"Connection": "close"},
                ) from None
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                complete = not message.get("more_body", False)
                if received > self.max_body_bytes:
                    raise PayloadTooLarge(self._too_large())
            return message

        return guarded_receive


# While draining, liveness and metrics still answer: the process is alive (a failed liveness probe would get
# it killed before its in-flight requests finish) and Prometheus can scrape the last counts. Readiness and
# new inference requests get 503, so Kubernetes sends no more traffic.
ANSWERED_WHILE_DRAINING = frozenset({"/", "/metrics", "/v2/health/live"})


ORES_SCORES = "/v3/scores/"  # ORES's API (revscoring's router), whose errors have ORES's shape


def _asks_for_work(scope: Scope) -> bool:
    """Inference (every POST) and ORES's scores; never health, readiness, metadata or metrics."""
    return scope.get("method") == "POST" or str(scope.get("path", "")).startswith(ORES_SCORES)


def _refusal_body(scope: Scope, message: str) -> dict:
    if str(scope.get("path", "")).startswith(ORES_SCORES):
        return {"error": {"code": "overloaded", "message": message}}
    return {"error": message}


def _answered_while_draining(scope: Scope) -> bool:
    return scope.get("method") == "GET" and scope.get("path") in ANSWERED_WHILE_DRAINING


class _ResponseTracker:
    """Adds the request id to the response headers and remembers whether the response has started."""

    def __init__(self, send: Callable, request_id: str) -> None:
        self._send = send
        self._request_id = request_id.encode()
        self.started = False

    async def send(self, message: dict) -> None:
        if message["type"] == "http.response.start":
            self.started = True
            message["headers"] = [*message.get("headers", []), (b"x-request-id", self._request_id)]
        await self._send(message)


async def _send_json(
    send: Callable, status: int, body: dict, request_id: str, headers: dict[str, str] | None = None
) -> None:
    headers = {"x-request-id": request_id, **(headers or {})}
    response = ORJSONResponse(body, status_code=status, headers=headers)
    await response({"type": "http"}, None, send)


# THE status table: the HTTP status of each kind of error, for REST and (through GRPC_CODES) gRPC alike.
# ServingError carries its own status; KServe's errors are mapped here. Anything else is a 500.
KSERVE_ERROR_STATUSES: tuple[tuple[type[Exception], int], ...] = (
    (InvalidInput, 400),
    (ModelNotFound, 404),
    (ModelNotReady, 503),
)
# The gRPC code with the meaning of an HTTP status (as grpc-gateway maps them).
GRPC_CODES: dict[int, grpc.StatusCode] = {
    400: grpc.StatusCode.INVALID_ARGUMENT,
    404: grpc.StatusCode.NOT_FOUND,
    413: grpc.StatusCode.RESOURCE_EXHAUSTED,
    429: grpc.StatusCode.RESOURCE_EXHAUSTED,
    502: grpc.StatusCode.UNAVAILABLE,
    503: grpc.StatusCode.UNAVAILABLE,
    504: grpc.StatusCode.DEADLINE_EXCEEDED,
}


def error_status(error: Exception) -> tuple[int, str] | None:
    """(HTTP status, message for the client) of an error the table knows; None for an unexpected one."""
    if isinstance(error, ServingError):
        return error.status, bounded(error.message)
    for kind, status in KSERVE_ERROR_STATUSES:
        if isinstance(error, kind):
            return status, kserve_message(error)
    return None


def grpc_status(http_status: int) -> grpc.StatusCode:
    """The gRPC code for an HTTP status: the table's, else INVALID_ARGUMENT (4xx) or INTERNAL (5xx)."""
    default = grpc.StatusCode.INVALID_ARGUMENT if http_status < 500 else grpc.StatusCode.INTERNAL
    return GRPC_CODES.get(http_status, default)


def _internal_error_message(error: Exception) -> str:
    return f"Internal error ({type(error).__name__}); request id {REQUEST_ID.get()}."


async def _known_error(_: Request, error: Exception) -> ORJSONResponse:
    status, message = error_status(error) or (500, _internal_error_message(error))
    if not isinstance(error, Overloaded):  # counted instead: a log line each would cost what refusing saves
        _log_failure(status, message)
    headers = error.headers if isinstance(error, ServingError) else None  # e.g. a 503's Retry-After
    return ORJSONResponse({"error": message}, status_code=status, headers=headers)


def _log_failure(status: int, message: str) -> None:
    """5xx messages are ours (they name MediaWiki, never client data) and are logged; a 4xx message can echo
    what the client sent, so by default only its status is logged (DEBUG adds the message)."""
    if status >= 500:
        logger.error("Request failed", extra={"status": status, "error": message})
    elif logger.isEnabledFor(logging.DEBUG):
        logger.debug("Request refused", extra={"status": status, "error": message})
    else:
        logger.info("Request refused", extra={"status": status})


async def _unexpected_error(_: Request, error: Exception) -> ORJSONResponse:
    logger.exception("Unexpected error while serving a request")
    return ORJSONResponse({"error": _internal_error_message(error)}, status_code=500)


async def _malformed_v2_request(_: Request, error: RequestValidationError) -> ORJSONResponse:
    """FastAPI answers a body that is not a V2 inference request with 422 and its own shape; ours is 400."""
    problems = "; ".join(f"{_location(problem)}: {problem.get('msg')}" for problem in error.errors()[:5])
    message = bounded(f"The body is not a V2 inference request: {problems}.")
    _log_failure(400, message)
    return ORJSONResponse({"error": message}, status_code=400)


def _location(problem: dict[str, Any]) -> str:
    """Where in the body a problem is; the path can hold the client's own (unbounded) key names."""
    return shortened(".".join(str(part) for part in problem.get("loc", ())), quoted=False)


def install_error_handlers(app: FastAPI) -> None:
    for kind in (ServingError, *(kind for kind, _ in KSERVE_ERROR_STATUSES)):
        app.add_exception_handler(kind, _known_error)
    app.add_exception_handler(RequestValidationError, _malformed_v2_request)
    app.add_exception_handler(Exception, _unexpected_error)


def remove_model_repository_routes(app: FastAPI) -> None:
    """KServe's V2 model-repository routes would let any client unload a model (leaving the server unready) or
    load one from a path; models are loaded once, at start-up, from configured paths only."""
    app.router.routes[:] = [
        route for route in app.router.routes if not getattr(route, "path", "").startswith("/v2/repository/")
    ]


class GuardedInferenceServicer(InferenceServicer):
    """KServe's V2 gRPC servicer, answering errors like the REST side: a status code and the same message
    (KServe's own would answer UNKNOWN with the exception's repr), a request id per call, no model
    repository (it would let any client unload a model or load one from a path)."""

    async def ModelInfer(  # noqa: N802 - the gRPC method's name
        self, request: pb.ModelInferRequest, context: grpc.aio.ServicerContext
    ) -> pb.ModelInferResponse:
        metadata = dict(context.invocation_metadata() or ())
        token = REQUEST_ID.set(request_id_from(metadata.get("x-request-id")))
        try:
            try:
                return await super().ModelInfer(request, context)
            except Exception as error:  # noqa: BLE001 - mapped by the status table; no traceback to the client
                known = error_status(error)
                if known is None:
                    logger.exception("Unexpected error while serving a gRPC request")
                status, message = known or (500, _internal_error_message(error))
            _log_failure(status, message)  # while the request id is set: the log line carries it
        finally:
            REQUEST_ID.reset(token)
        await context.abort(grpc_status(status), message)
        raise AssertionError("context.abort raises")

    async def RepositoryModelLoad(self, request: Any, context: grpc.aio.ServicerContext) -> Any:  # noqa: N802
        await context.abort(grpc.StatusCode.PERMISSION_DENIED, "Models are loaded at start-up only.")

    async def RepositoryModelUnload(self, request: Any, context: grpc.aio.ServicerContext) -> Any:  # noqa: N802
        await context.abort(grpc.StatusCode.PERMISSION_DENIED, "Models are loaded at start-up only.")


class WikiModelServer(kserve.ModelServer):
    """KServe's ModelServer with the guard, error handlers and graceful shutdown installed."""

    def __init__(self, settings: ServerSettings, admission: Admission | None = None) -> None:
        super().__init__(
            http_port=settings.http_port,
            enable_grpc=False,
            enable_docs_url=False,
            enable_latency_logging=False,
        )
        configure_logging(settings.json_logs, settings.log_level)  # after KServe's own logging set-up
        self.settings = settings
        self.admission = admission
        self.guard: RequestGuard | None = None
        self._rest: KServeRest | None = None
        self._grpc: grpc.aio.Server | None = None

    def start(  # type: ignore[override]
        self,
        models: Sequence[kserve.Model],
        on_shutdown: Sequence[Callable[[], Awaitable[None]]] = (),
        routers: Sequence[APIRouter] = (),
    ) -> None:
        for model in models:
            self.register_model(model)
        # uvloop: the event loop and its sockets in C. Per request the server process reads one request,
        # makes MediaWiki calls and writes one answer; with asyncio's own loop in Python, that plumbing cost
        # more CPU than KServe's layers (see benchmark/README.md, "Where the server process's CPU goes").
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runner.run(self._serve(on_shutdown, routers))

    async def _serve(
        self, on_shutdown: Sequence[Callable[[], Awaitable[None]]], routers: Sequence[APIRouter] = ()
    ) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, lambda: asyncio.ensure_future(self.drain_and_stop()))
        self._rest = KServeRest(self, self.http_port, self.settings.read_timeout_s)
        install_error_handlers(self._rest.app)
        remove_model_repository_routes(self._rest.app)
        for router in routers:  # APIs served beside KServe's (e.g. ORES's /v3/scores/)
            self._rest.app.include_router(router)
        self.guard = self._rest.wrap(
            lambda app: RequestGuard(
                app, self.settings.max_body_bytes, self.settings.read_timeout_s, self.admission
            )
        )
        if self.admission is not None:
            self._rest.answer_early(self.guard.early_refusal)
        if self.settings.grpc_port:
            try:
                self._grpc = await self._start_grpc(self.settings.grpc_port)
            except OSError as error:
                logger.error("Cannot start: %s", error)
                raise SystemExit(1) from None
        logger.info("Serving", extra={"port": self.http_port, "grpc_port": self.settings.grpc_port,
                                      "models": sorted(loaded_models(self))})
        await self._rest.run()
        for model in loaded_models(self).values():
            stop = getattr(model, "stop_async", None)
            if stop is not None:
                await stop()
        for hook in on_shutdown:
            await hook()

    async def _start_grpc(self, port: int) -> grpc.aio.Server:
        """KServe's V2 gRPC service on `port`, in this process and event loop (sharing the loaded models)."""
        limit = self.settings.max_body_bytes
        server = grpc.aio.server(options=[("grpc.max_receive_message_length", limit),
                                          ("grpc.max_send_message_length", 8 * 1024 * 1024)])
        servicer = grpc_servicer(self, GuardedInferenceServicer)
        add_GRPCInferenceServiceServicer_to_server(servicer, server)
        try:
            bound = server.add_insecure_port(f"[::]:{port}")
        except RuntimeError:
            bound = 0
        if not bound:
            raise OSError(f"Cannot listen for gRPC on port {port} (in use?)")
        await server.start()
        return server

    async def drain_and_stop(self) -> None:
        """Refuses new requests, lets in-flight ones finish within the grace period, then stops."""
        if self.guard is None or self.guard.draining:
            return
        self.guard.draining = True
        logger.info("Shutting down: draining in-flight requests", extra={"in_flight": self.guard.in_flight})
        deadline = asyncio.get_running_loop().time() + self.settings.shutdown_grace_s
        # gRPC refuses new calls at once and gives the calls in flight the same grace period.
        grpc_stopped = None
        if self._grpc is not None:
            grpc_stopped = asyncio.ensure_future(self._grpc.stop(grace=self.settings.shutdown_grace_s))
        while self.guard.in_flight and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.05)
        if self.guard.in_flight:
            logger.warning(
                "Grace period over with requests still in flight", extra={"in_flight": self.guard.in_flight}
            )
            # uvicorn would otherwise wait for them without limit; the grace period is the limit.
            self._rest.abandon_in_flight()
        if grpc_stopped is not None:
            await grpc_stopped
        await self._rest.stop()


# Objects a request makes are freed by reference counting as it ends; the cyclic collector's young-generation
# passes, every 700 net allocations by default, still walk every live young container each time. With 32
# requests in flight they took 0.39 s of an enwiki-damaging server's 14.6 s of CPU, and 0.12 s every 10,000
# (issue 20). The cost: cyclic garbage waits a little longer to be freed (at most that many containers).
GC_YOUNG_THRESHOLD = 10_000


def collect_garbage_less_often() -> None:
    """Sets this process's young-generation threshold (forked workers inherit it); the older ones stay."""
    _, middle, oldest = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_THRESHOLD, middle, oldest)


def serve(
    models: Sequence[kserve.Model],
    settings: ServerSettings,
    on_shutdown: Sequence[Callable[[], Awaitable[None]]] = (),
    routers: Sequence[APIRouter] = (),
    admission: Admission | None = None,
) -> None:
    """Serves `models` (and `routers`' routes) until SIGTERM/SIGINT, then awaits each `on_shutdown` hook (e.g.
    closing a shared pool). With `admission` (the models' bound on work in flight), scoring requests are
    refused with 503 + Retry-After before their body is read while it is full.

    Loading happens before this: a model that failed to load never serves.
    """
    collect_garbage_less_often()
    WikiModelServer(settings, admission).start(models, on_shutdown, routers)
