"""The one module that reaches into KServe 0.13.1 beyond its public API, so an upgrade is checked here alone.

KServe's ModelServer builds its FastAPI application inside `UvicornServer` and keeps it, the uvicorn server,
the data plane and the model registry as attributes without a public accessor. The model servers need them
to put their middleware in front of the application, add ORES's routes, stop uvicorn at the end of the
drain period, list the loaded models and serve the V2 gRPC protocol in their own event loop.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import kserve
from fastapi import FastAPI
from kserve.protocol.grpc.servicer import InferenceServicer
from kserve.protocol.rest.server import UvicornServer

KEEP_ALIVE_S = 30  # idle keep-alive connections are closed after this (uvicorn's default is 5 s)


class KServeRest:
    """KServe's REST server of `model_server`: its FastAPI app, and the uvicorn server around it."""

    def __init__(self, model_server: kserve.ModelServer, port: int) -> None:
        self._server = UvicornServer(
            port,
            [],
            model_server.dataplane,
            model_server.model_repository_extension,
            enable_docs_url=False,
            log_config=None,
        )
        self._server.cfg.timeout_keep_alive = KEEP_ALIVE_S

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


def loaded_models(model_server: kserve.ModelServer) -> dict[str, kserve.Model]:
    """The models registered with `model_server`, by name."""
    return dict(model_server.registered_models.get_models())


def grpc_servicer(
    model_server: kserve.ModelServer, servicer_class: type[InferenceServicer]
) -> InferenceServicer:
    """A V2 gRPC servicer of `servicer_class` answering from `model_server`'s data plane."""
    return servicer_class(model_server.dataplane, model_server.model_repository_extension)
