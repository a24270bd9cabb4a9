"""A minimal model served by the shared core, for testing the server itself (not a product model).

`python -m testkit.echo_model --http_port N` serves `echo`: it validates `rev_id`, can sleep (`sleep_s`) to
simulate a long request, and raises an unexpected error for rev_id 13; `not-ready` is a model that never
becomes ready.
"""

from __future__ import annotations

import asyncio
import os
import sys

import kserve

from wikiserve.config import ServerSettings
from wikiserve.server import serve
from wikiserve.validation import optional_float, parse_body, reject_unknown_fields, require_int


class EchoModel(kserve.Model):
    def __init__(self, name: str = "echo", ready: bool = True) -> None:
        super().__init__(name)
        self.ready = ready

    async def preprocess(self, payload: object, headers: dict[str, str] | None = None) -> dict:
        body = parse_body(payload)
        reject_unknown_fields(body, {"rev_id", "sleep_s"})
        return {
            "rev_id": require_int(body, "rev_id"),
            "sleep_s": optional_float(body, "sleep_s", 0.0, 0.0, 60.0),
        }

    async def predict(self, payload: dict, headers: dict[str, str] | None = None) -> dict:
        await asyncio.sleep(payload["sleep_s"])
        if payload["rev_id"] == 13:
            raise RuntimeError("secret internal detail")
        return {"rev_id": payload["rev_id"]}


if __name__ == "__main__":
    port = next((arg.split("=", 1)[1] for arg in sys.argv if arg.startswith("--http_port=")), "8080")
    # "not-ready" stays unready, as a model whose loading has not finished: KServe refuses to serve it.
    models = [EchoModel(), EchoModel("not-ready", ready=False)]
    serve(models, ServerSettings.from_env({**os.environ, "HTTP_PORT": port}))
