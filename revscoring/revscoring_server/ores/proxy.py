"""The `ores` image: ORES's v3 API in front of Lift Wing, where every model is its own InferenceService.

    LIFTWING_URL=https://inference.svc.eqiad.wmnet:30443 python -m revscoring_server.ores

For a request of M models and N revisions it makes M calls, concurrently: one per model's service, with the
whole batch (`{"rev_ids": [...], "extended_output": ...}`, which the service scores with one fetch and one
extraction per revision), and merges the answers into ORES's document. Each call goes to `LIFTWING_URL`
with the service's `Host` header (`LIFTWING_HOST`, default `{isvc}.{namespace}.wikimedia.org`). A service
that fails (down, slow, garbage) makes an error entry for its model in every revision of the batch; the
other models are still answered. Contexts and models come from the shipped service table; nothing of
revscoring is imported (this image has no revscoring).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import sys
from collections.abc import Mapping, Sequence
from typing import Any

import aiohttp

from revscoring_server.ores.api import OresApi
from revscoring_server.services import Service, load_services
from wikiserve.config import LiftWingSettings, ServerSettings
from wikiserve.logs import configure_logging
from wikiserve.server import serve

logger = logging.getLogger("revscoring_server.ores")

EXIT_BAD_CONFIG = 2


class UpstreamFailure(Exception):
    """One model service did not give a usable answer; `error_type` is the ORES error type to report."""

    def __init__(self, error_type: str, message: str) -> None:
        super().__init__(message)
        self.error_type = error_type
        self.message = message


class LiftWingOresBackend:
    """ORES contexts answered by calling the model servers."""

    def __init__(self, settings: LiftWingSettings, services: Mapping[str, Service] | None = None) -> None:
        if not settings.url:
            raise ValueError("LIFTWING_URL is not set: the ores image needs the model servers' endpoint.")
        self.settings = settings
        self.url = settings.url.rstrip("/")
        self.services: dict[str, dict[str, Service]] = {}
        for service in (services or load_services()).values():
            self.services.setdefault(service.dbname, {})[service.model_type] = service
        self._session: aiohttp.ClientSession | None = None

    def contexts(self) -> Mapping[str, Sequence[str]]:
        return {dbname: list(models) for dbname, models in sorted(self.services.items())}

    async def versions(self, context: str) -> dict[str, dict[str, Any]]:
        """Asked of each service with an empty batch (no revision is fetched)."""
        document = await self.score(context, list(self.services[context]), [], False)
        return document["models"]

    async def score(
        self, context: str, models: Sequence[str], rev_ids: Sequence[int], features: bool
    ) -> dict[str, Any]:
        services = [self.services[context][model] for model in models]
        answers = await asyncio.gather(*(self._call(service, rev_ids, features) for service in services))
        return merge(context, services, rev_ids, answers)

    async def _call(
        self, service: Service, rev_ids: Sequence[int], features: bool
    ) -> dict[str, Any] | UpstreamFailure:
        body = {"rev_ids": list(rev_ids), "extended_output": features}
        host = self.settings.host.format(isvc=service.isvc, namespace=service.namespace)
        url = f"{self.url}/v1/models/{service.isvc}:predict"
        try:
            async with self.session().post(url, json=body, headers={"Host": host}) as response:
                if response.status != 200:
                    text = (await response.text())[:300]
                    return UpstreamFailure(
                        "TimeoutError" if response.status == 504 else "UpstreamError",
                        f"{service.isvc} answered HTTP {response.status}: {text}",
                    )
                document = await response.json(content_type=None)
            return document[service.dbname]
        except TimeoutError:
            return UpstreamFailure(
                "TimeoutError", f"{service.isvc} did not answer within {self.settings.timeout_s:g} s."
            )
        except aiohttp.ClientError as error:
            return UpstreamFailure("UpstreamError", f"{service.isvc} could not be reached: {error}")
        except (ValueError, KeyError, TypeError) as error:
            return UpstreamFailure(
                "UpstreamError", f"{service.isvc} sent an unusable answer: {error!r}"[:300]
            )

    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.settings.timeout_s),
                connector=aiohttp.TCPConnector(limit=self.settings.max_connections),
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()


def merge(
    context: str,
    services: Sequence[Service],
    rev_ids: Sequence[int],
    answers: Sequence[dict[str, Any] | UpstreamFailure],
) -> dict[str, Any]:
    """ORES's context document from one answer or failure per model, in the request's order."""
    models: dict[str, Any] = {}
    scores: dict[str, dict[str, Any]] = {str(rev_id): {} for rev_id in rev_ids}
    for service, answer in zip(services, answers, strict=True):
        name = service.model_type
        if isinstance(answer, UpstreamFailure):
            logger.warning("A model service failed", extra={"isvc": service.isvc, "error": answer.message})
            models[name] = {"version": None}
            for entries in scores.values():
                entries[name] = {"error": {"type": answer.error_type, "message": answer.message}}
            continue
        models[name] = answer["models"][name]
        for rev_id in scores:
            scores[rev_id][name] = answer["scores"][rev_id][name]
    return {"models": models, "scores": scores}


def main(env: Mapping[str, str] | None = None) -> int:
    env = os.environ if env is None else env
    port = next((arg.split("=", 1)[1] for arg in sys.argv[1:] if arg.startswith("--http_port=")), None)
    try:
        settings = ServerSettings.from_env(env)
        if port:
            settings = dataclasses.replace(settings, http_port=int(port))
        backend = LiftWingOresBackend(settings.liftwing)
    except ValueError as error:
        configure_logging(True, "INFO")
        logger.error(f"Cannot start: {error}")
        return EXIT_BAD_CONFIG
    configure_logging(settings.json_logs, settings.log_level)
    serve([], settings, on_shutdown=[backend.close], routers=[OresApi(backend).router()])
    return 0

