"""The outlink transformer: `python -m outlink_server.transformer --predictor_host HOST:PORT`.

Started the way KServe starts transformers. It validates the request, fetches the outlinks from MediaWiki
and asks the predictor (KServe V1 protocol) to score them as `features_str`; the predictor's answer is
already the final response. It never imports fasttext: its image does not have it.

A page-change event is checked against MediaWiki here (the predictor cannot reach MediaWiki in production),
and the predictor gets only the outlinks read at the event's revision, in an ordinary request, never the
event: it is asked over V2 for every topic's score, since V2's answer names the model's version, which the
prediction_classification_change event this transformer then posts must carry.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import sys
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp
import kserve
import orjson

from outlink_server import MODEL_NAME
from outlink_server.cli import argument_parser, parse
from outlink_server.languages import wikipedias
from outlink_server.outlinks import fetch_outlinks, verify_event
from outlink_server.request import OutlinkRequest, parse_request
from outlink_server.response import build_response, classification
from outlink_server.settings import OutlinkSettings
from wikiserve.config import EventGateSettings
from wikiserve.errors import ServingError
from wikiserve.events import EventGateClient, VerifiedRevision, prediction_classification_event
from wikiserve.logs import configure_logging
from wikiserve.mediawiki import MediaWikiPool
from wikiserve.server import serve

logger = logging.getLogger(__name__)

FORWARDED_HEADERS = ("x-request-id", "x-b3-traceid")


class PredictorError(ServingError):
    """The predictor refused the request (its 4xx, passed through) or failed (5xx naming the predictor, but
    never its internal URL)."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class EventJob:
    """A page-change event checked against MediaWiki, with the outlinks at its revision."""

    request: OutlinkRequest  # naming the page as MediaWiki does now
    verified: VerifiedRevision
    features: str


class OutlinkTransformer(kserve.Model):
    def __init__(self, name: str, predictor_url: str, pool: MediaWikiPool, settings: OutlinkSettings,
                 eventgate: EventGateSettings | None = None) -> None:
        super().__init__(name)
        self.predictor_url = predictor_url
        self.predictor_v2_url = v2_url(predictor_url, name)
        self.pool = pool
        self.settings = settings
        self.eventgate = eventgate or EventGateSettings()
        self.wikis = wikipedias()
        self._predictor_session: aiohttp.ClientSession | None = None
        self._events: EventGateClient | None = None
        self.ready = True  # nothing to load

    async def preprocess(self, payload: Any,
                         headers: dict[str, str] | None = None) -> dict[str, Any] | EventJob:
        request = parse_request(payload, self.wikis)
        if request.event is not None:
            client = self.pool.client(request.domain)
            verified = await verify_event(client, request, self.wikis.dbname_of[request.lang])
            request = dataclasses.replace(request, page_title=verified.page_title.replace(" ", "_"))
            return EventJob(request, verified, " ".join(await fetch_outlinks(client, request, self.settings)))
        if request.features is not None:
            return request.forwarded(request.features)
        qids = await fetch_outlinks(self.pool.client(request.domain), request, self.settings)
        return request.forwarded(" ".join(qids))

    async def predict(self, payload: dict[str, Any] | EventJob,
                      headers: dict[str, str] | None = None) -> dict[str, Any]:
        if isinstance(payload, EventJob):
            return await self._predict_event(payload, headers)
        return self._result(*await self._post(self.predictor_url, payload, headers))

    async def _predict_event(self, job: EventJob, headers: dict[str, str] | None) -> dict[str, Any]:
        """Every topic's score from the predictor (V2: its answer names the model version), then the answer
        at the request's threshold, and the event stating MediaWiki's facts and these topics."""
        scoring = {"lang": job.request.lang, "page_id": job.request.page_id, "features_str": job.features,
                   "debug": True}
        v2_request = {"id": str(uuid.uuid4()), "inputs": [
            {"name": "request", "shape": [1], "datatype": "BYTES", "data": [orjson.dumps(scoring).decode()]}]}
        status, content = await self._post(self.predictor_v2_url, v2_request, headers)
        answer, version = self._v2_result(status, content)
        scores = [(result["topic"], result["score"]) for result in answer["prediction"]["results"]]
        if self.eventgate.url:
            if self._events is None:
                self._events = EventGateClient(self.eventgate, self.pool.http_session())
            await self._events.send(prediction_classification_event(
                job.verified, self.eventgate.prediction_stream, classification(job.request, scores, version)))
        return build_response(job.request, scores)

    async def _post(self, url: str, payload: dict[str, Any], headers: dict[str, str] | None
                    ) -> tuple[int, bytes]:
        forwarded = {name: headers[name] for name in FORWARDED_HEADERS if headers and name in headers}
        request_headers = {"content-type": "application/json", **forwarded}
        body = orjson.dumps(payload)
        for attempt in (1, 2):
            try:
                async with asyncio.timeout(self.settings.predictor_timeout_s):
                    async with self._session().post(url, data=body, headers=request_headers) as response:
                        return response.status, await response.read()
            except TimeoutError:
                raise PredictorError(f"The predictor did not answer within "
                                     f"{self.settings.predictor_timeout_s:g} s.", 504) from None
            except (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError) as error:
                # A kept-alive connection the predictor has just closed: scoring is idempotent, try once more.
                if attempt == 2:
                    raise self._unreachable(error) from None
            except aiohttp.ClientError as error:
                raise self._unreachable(error) from None
        raise AssertionError("unreachable")

    def _unreachable(self, error: Exception) -> PredictorError:
        # The connection error names the predictor's internal address: the log has it, the client does not.
        logger.warning("The predictor is unreachable", extra={"predictor": self.predictor_url,
                                                               "error": str(error) or type(error).__name__})
        return PredictorError("The predictor is unreachable.", 502)

    def _result(self, status: int, content: bytes) -> dict[str, Any]:
        if 400 <= status < 500:
            raise PredictorError(_error_message(status, content), status)
        if status != 200:
            # 503 (draining, not ready) and 504 keep their meaning for retrying clients; else a bad gateway.
            message = f"The predictor failed with HTTP {status}: "
            gateway_status = status if status in (503, 504) else 502
            raise PredictorError(message + _error_message(status, content), gateway_status)
        return _prediction(content)

    def _v2_result(self, status: int, content: bytes) -> tuple[dict[str, Any], str | None]:
        """The V1-shaped answer inside a V2 answer, and the model version the V2 answer names."""
        if status != 200:
            self._result(status, content)  # raises, as for V1
        try:
            answer = orjson.loads(content)
            (output,) = answer["outputs"]
            return _prediction(output["data"][0].encode()), answer.get("model_version")
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, IndexError, AttributeError):
            raise PredictorError("The predictor answered with something other than a V2 prediction: "
                                 f"{content[:200].decode(errors='replace')!r}", 502) from None

    def _session(self) -> aiohttp.ClientSession:
        # Made on first use, inside the server's event loop; one pool of keep-alive connections per process.
        # Its own session: the MediaWiki pool's session turns every HTTP error into an exception, losing the
        # predictor's message. Idle connections are dropped after 15 s, before the predictor's 30 s.
        if self._predictor_session is None or self._predictor_session.closed:
            self._predictor_session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=100, keepalive_timeout=15))
        return self._predictor_session

    async def stop_async(self) -> None:
        if self._predictor_session is not None:
            await self._predictor_session.close()
        await self.pool.close()


def _prediction(content: bytes) -> dict[str, Any]:
    try:
        result = orjson.loads(content)
    except orjson.JSONDecodeError:
        result = None
    if not isinstance(result, dict) or not isinstance(result.get("prediction"), dict):
        raise PredictorError("The predictor answered with something other than a prediction: "
                             f"{content[:200].decode(errors='replace')!r}", 502)
    return result


def _error_message(status: int, content: bytes) -> str:
    try:
        message = orjson.loads(content).get("error")
    except (orjson.JSONDecodeError, AttributeError):
        message = None
    return str(message) if message else content[:200].decode(errors="replace") or f"HTTP {status}"


def predictor_url(predictor_host: str, model_name: str, use_ssl: bool) -> str:
    return f"{'https' if use_ssl else 'http'}://{predictor_host}/v1/models/{model_name}:predict"


def v2_url(v1_url: str, model_name: str) -> str:
    """The predictor's V2 inference URL beside its V1 one (KServe serves both on the same port)."""
    return v1_url.removesuffix(f"/v1/models/{model_name}:predict") + f"/v2/models/{model_name}/infer"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argument_parser("Fetch outlinks and ask the outlink topic model predictor for topics.")
    parser.add_argument("--predictor_host", required=True, help="host:port of the predictor")
    parser.add_argument("--predictor_protocol", "--protocol", default="v1", help="only v1 is supported")
    parser.add_argument("--predictor_use_ssl", default="false", choices=("true", "false", "True", "False"))
    parser.add_argument("--predictor_request_timeout_seconds", type=float, default=None)
    args, settings = parse(parser, argv)
    configure_logging(settings.json_logs, settings.log_level)
    if args.predictor_protocol != "v1":
        logger.error("Only the V1 protocol can reach the predictor, not %s", args.predictor_protocol)
        return 2
    try:
        outlink_settings = OutlinkSettings.from_env(os.environ)
    except ValueError as error:
        logger.error("Invalid configuration: %s", error)
        return 2
    if args.predictor_request_timeout_seconds:
        outlink_settings = dataclasses.replace(
            outlink_settings, predictor_timeout_s=args.predictor_request_timeout_seconds)
    url = predictor_url(args.predictor_host, args.model_name, args.predictor_use_ssl.lower() == "true")
    model = OutlinkTransformer(args.model_name or MODEL_NAME, url, MediaWikiPool(settings.mediawiki),
                               outlink_settings, settings.eventgate)
    logger.info("Transformer ready", extra={"predictor": url})
    serve([model], settings)
    return 0


if __name__ == "__main__":
    sys.exit(main())
