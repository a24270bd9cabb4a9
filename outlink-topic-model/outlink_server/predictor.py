"""The outlink topic model predictor: `python -m outlink_server.predictor`.

Alone it does the whole job (validate, fetch outlinks, score, respond); behind the transformer it receives
`features_str` and never calls MediaWiki. For page-change event input it checks the event against MediaWiki,
reads the outlinks at the event's revision itself and posts the
`mediawiki/page/prediction_classification_change` event (an event built from outlinks a client sent would
state the client's topics). Behind the transformer, the transformer does all that for events, and asks this
predictor only for scores (over V2, whose answer names the model's version).

Scoring one article takes 50-180 µs, so fastText runs on the event loop: a hand-off to a thread (about
40 µs measured) would cost as much as scoring itself.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import kserve
from kserve import InferRequest, InferResponse

from outlink_server import MODEL_NAME, v2
from outlink_server.cli import argument_parser, parse
from outlink_server.fasttext_model import ModelLoadError, TopicModel
from outlink_server.languages import wikipedias
from outlink_server.outlinks import fetch_outlinks, verify_event
from outlink_server.request import OutlinkRequest, parse_request
from outlink_server.response import build_response, classification
from outlink_server.settings import OutlinkSettings
from wikiserve.config import ServerSettings
from wikiserve.events import EventGateClient, VerifiedRevision, prediction_classification_event
from wikiserve.logs import configure_logging
from wikiserve.mediawiki import MediaWikiPool
from wikiserve.server import serve

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Prepared:
    request: OutlinkRequest
    features: str  # single-space separated Q-ids
    v2_request: InferRequest | None = None  # answered in V2's shape when the request came that way
    verified: VerifiedRevision | None = None  # MediaWiki's facts about an event's revision


class OutlinkPredictor(kserve.Model):
    def __init__(self, name: str, model_path: Path, pool: MediaWikiPool, settings: OutlinkSettings,
                 server_settings: ServerSettings | None = None) -> None:
        super().__init__(name)
        self.model_path = model_path
        self.pool = pool
        self.settings = settings
        self.eventgate = (server_settings or ServerSettings()).eventgate
        self.wikis = wikipedias()
        self.topic_model: TopicModel | None = None
        self.version = settings.model_version
        self._events: EventGateClient | None = None

    def load(self) -> bool:
        self.topic_model = TopicModel(self.model_path)
        self.version = self.settings.model_version or file_version(self.model_path)
        logger.info("Loaded the outlink topic model", extra={
            "path": str(self.model_path), "topics": len(self.topic_model.topics), "version": self.version})
        self.ready = True
        return self.ready

    async def preprocess(self, payload: Any, headers: dict[str, str] | None = None) -> Prepared:
        v2_request = payload if isinstance(payload, InferRequest) else None
        request = parse_request(v2.request_body(v2_request) if v2_request else payload, self.wikis)
        if request.features is not None:
            return Prepared(request, request.features, v2_request)
        client = self.pool.client(request.domain)
        verified = None
        if request.event is not None:
            verified = await verify_event(client, request, self.wikis.dbname_of[request.lang])
            # The page as it is named now (a page renamed since the event keeps its id).
            request = dataclasses.replace(request, page_title=verified.page_title.replace(" ", "_"))
        qids = await fetch_outlinks(client, request, self.settings)
        return Prepared(request, " ".join(qids), v2_request, verified)

    async def predict(self, payload: Prepared,
                      headers: dict[str, str] | None = None) -> dict[str, Any] | InferResponse:
        assert self.topic_model is not None, "predict before load"
        scores = self.topic_model.scores(payload.features)
        if payload.verified is not None:
            await self._send_prediction_event(payload.request, payload.verified, scores)
        body = build_response(payload.request, scores)
        return v2.response(payload.v2_request, self.name, self.version, body) if payload.v2_request else body

    async def _send_prediction_event(self, request: OutlinkRequest, verified: VerifiedRevision,
                                     scores: list[tuple[str, float]]) -> None:
        """Posts the topics as a prediction_classification_change event; EventGateClient logs and counts
        failures and never raises, so the caller's answer does not depend on EventGate."""
        if not self.eventgate.url:
            return
        if self._events is None:
            self._events = EventGateClient(self.eventgate, self.pool.http_session())
        await self._events.send(prediction_classification_event(
            verified, self.eventgate.prediction_stream, classification(request, scores, self.version)))


def file_version(path: Path) -> str:
    """A fastText binary carries no version: without MODEL_VERSION, its content names it (SHA-256 prefix)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return f"sha256:{digest.hexdigest()[:12]}"


def build_model(model_path: Path, settings: ServerSettings, pool: MediaWikiPool,
                outlink_settings: OutlinkSettings | None = None, name: str = MODEL_NAME) -> kserve.Model:
    """The loaded predictor; raises ModelLoadError (with the reason) when the binary is missing or bad.

    `settings` is the server's configuration; MediaWiki access goes through `pool`, which the caller owns.
    """
    outlink_settings = outlink_settings or OutlinkSettings(model_path=model_path)
    model = OutlinkPredictor(name, model_path, pool, outlink_settings, settings)
    model.load()
    return model


def main(argv: Sequence[str] | None = None) -> int:
    parser = argument_parser("Serve the outlink topic model (fastText).")
    parser.add_argument("--grpc_port", type=int, default=None,
                        help="serve KServe's V2 gRPC protocol on this port too (overrides GRPC_PORT; 0: off)")
    args, settings = parse(parser, argv)
    if args.grpc_port is not None:
        settings = dataclasses.replace(settings, grpc_port=args.grpc_port or None)
    configure_logging(settings.json_logs, settings.log_level)
    try:
        outlink_settings = OutlinkSettings.from_env(os.environ)
    except ValueError as error:
        logger.error("Invalid configuration: %s", error)
        return 2
    pool = MediaWikiPool(settings.mediawiki)
    try:
        model = build_model(outlink_settings.model_path, settings, pool, outlink_settings,
                            name=args.model_name)
    except ModelLoadError as error:
        logger.error("Cannot start the outlink topic model: %s", error)
        return 1
    serve([model], settings, on_shutdown=[pool.close])
    return 0


if __name__ == "__main__":
    sys.exit(main())
