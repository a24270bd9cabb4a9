"""The outlink topic model predictor: `python -m outlink_server.predictor`.

Alone it does the whole job (validate, fetch outlinks, score, respond); behind the transformer it receives
`features_str` and never calls MediaWiki. Scoring one article takes 50-180 µs, so fastText runs
on the event loop: a hand-off to a thread (about 40 µs measured) would cost as much as scoring itself.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import kserve

from outlink_server import MODEL_NAME
from outlink_server.cli import argument_parser, parse
from outlink_server.fasttext_model import ModelLoadError, TopicModel
from outlink_server.languages import wikipedias
from outlink_server.outlinks import fetch_outlinks
from outlink_server.request import OutlinkRequest, parse_request
from outlink_server.response import build_response
from outlink_server.settings import OutlinkSettings
from wikiserve.config import ServerSettings
from wikiserve.logs import configure_logging
from wikiserve.mediawiki import MediaWikiPool
from wikiserve.server import serve

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Prepared:
    request: OutlinkRequest
    features: str  # single-space separated Q-ids


class OutlinkPredictor(kserve.Model):
    def __init__(self, name: str, model_path: Path, pool: MediaWikiPool, settings: OutlinkSettings) -> None:
        super().__init__(name)
        self.model_path = model_path
        self.pool = pool
        self.settings = settings
        self.wikis = wikipedias()
        self.topic_model: TopicModel | None = None

    def load(self) -> bool:
        self.topic_model = TopicModel(self.model_path)
        logger.info("Loaded the outlink topic model",
                    extra={"path": str(self.model_path), "topics": len(self.topic_model.topics)})
        self.ready = True
        return self.ready

    async def preprocess(self, payload: Any, headers: dict[str, str] | None = None) -> Prepared:
        request = parse_request(payload, self.wikis)
        if request.features is not None:
            return Prepared(request, request.features)
        qids = await fetch_outlinks(self.pool.client(request.domain), request, self.settings)
        return Prepared(request, " ".join(qids))

    async def predict(self, payload: Prepared, headers: dict[str, str] | None = None) -> dict[str, Any]:
        assert self.topic_model is not None, "predict before load"
        return build_response(payload.request, self.topic_model.scores(payload.features))


def build_model(model_path: Path, settings: ServerSettings, pool: MediaWikiPool,
                outlink_settings: OutlinkSettings | None = None, name: str = MODEL_NAME) -> kserve.Model:
    """The loaded predictor; raises ModelLoadError (with the reason) when the binary is missing or bad.

    `settings` is the server's configuration; MediaWiki access goes through `pool`, which the caller owns.
    """
    del settings  # the predictor reads nothing else from it; kept so every build_model has one signature
    outlink_settings = outlink_settings or OutlinkSettings(model_path=model_path)
    model = OutlinkPredictor(name, model_path, pool, outlink_settings)
    model.load()
    return model


def main(argv: Sequence[str] | None = None) -> int:
    args, settings = parse(argument_parser("Serve the outlink topic model (fastText)."), argv)
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
