"""The kserve.Model serving any revscoring inference service, and `build_model` to make one."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import kserve
from revscoring.extractors.api import Extractor

from revscoring_server.batch import MAX_REVISIONS, WikiScorer
from revscoring_server.executor import OffLoopExecutor
from revscoring_server.fetch import FetchPlan, fetch_docs
from revscoring_server.model_types import ModelType, Need
from revscoring_server.response import build_response, event_scores
from revscoring_server.scoring import (
    ModelLoadError,
    ScoreJob,
    check_output_shape,
    load_model,
    score_revision,
    warm_up,
    warm_up_docs,
)
from revscoring_server.services import Service, find_service
from wikiserve import metrics
from wikiserve.config import ServerSettings
from wikiserve.errors import InvalidRequest
from wikiserve.events import EventGateClient, RevisionEvent, parse_event, revision_score_event
from wikiserve.mediawiki import MediaWikiPool
from wikiserve.score_cache import ScoreCache
from wikiserve.validation import (
    exactly_one_of,
    optional_bool,
    parse_body,
    reject_unknown_fields,
    require_int,
    require_rev_ids,
)

logger = logging.getLogger(__name__)

REQUEST_FIELDS = ("rev_id", "rev_ids", "extended_output", "event")


@dataclass
class Prepared:
    """What preprocess hands to predict: the scoring job and, for event input, the event."""

    job: ScoreJob
    event: RevisionEvent | None = None


@dataclass
class PreparedBatch:
    """A `{"rev_ids": [...]}` request: scored by the shared batch path (batch.WikiScorer) in predict."""

    rev_ids: list[int]
    extended_output: bool


class RevscoringModel(kserve.Model):
    """One inference service `<dbname>-<model type>`: fetch from MediaWiki, extract, score, respond."""

    def __init__(
        self,
        service: Service,
        model_path: Path,
        settings: ServerSettings,
        pool: MediaWikiPool,
        executor: OffLoopExecutor | None = None,
        score_cache: ScoreCache | None = None,
    ) -> None:
        super().__init__(service.isvc)
        self.service = service
        self.model_type: ModelType = service.type
        self.model_path = str(model_path)
        self.settings = settings
        self.pool = pool
        self.client = pool.client(service.domain)
        self.executor = executor or OffLoopExecutor()
        self.version, self.plan = prepare_binary(model_path, self.model_type, service.dbname)
        self._events: EventGateClient | None = None
        self.batch = WikiScorer(service.dbname, [self], score_cache)
        self.ready = True

    def load(self) -> bool:
        return self.ready  # loaded in the constructor: a model that failed to load never exists

    async def preprocess(
        self, payload: Any, headers: dict[str, str] | None = None
    ) -> Prepared | PreparedBatch:
        body = parse_body(payload)
        reject_unknown_fields(body, REQUEST_FIELDS)
        extended_output = optional_bool(body, "extended_output")
        event = None
        given = exactly_one_of(body, "rev_id", "rev_ids", "event")
        if given == "rev_ids":
            return PreparedBatch(require_rev_ids(body, MAX_REVISIONS), extended_output)
        if given == "event":
            event = parse_event(body["event"])
            if event.database != self.service.dbname:
                raise InvalidRequest(
                    f"The event is for wiki {event.database!r}, but this model ({self.name}) "
                    f"scores {self.service.dbname!r}."
                )
            rev_id = event.rev_id
        else:
            rev_id = require_int(body, "rev_id")
        docs = await fetch_docs(self.client, self.service.dbname, rev_id, self.plan)
        job = ScoreJob(self.model_path, self.model_type.name, rev_id, docs, extended_output)
        return Prepared(job, event)

    async def predict(
        self, prepared: Prepared | PreparedBatch, headers: dict[str, str] | None = None
    ) -> dict[str, Any]:
        if isinstance(prepared, PreparedBatch):
            name = self.model_type.name
            document = await self.batch.score(prepared.rev_ids, [name], prepared.extended_output)
            return {self.service.dbname: document}
        # Measured here, not in score_revision: that may run in a worker process nobody scrapes.
        with metrics.FEATURE_EXTRACTION_SECONDS.labels(model=self.name).time():
            entry = await self.executor.run(score_revision, prepared.job)
        if prepared.event is not None:
            await self._send_score_event(prepared.event, entry["score"])
        return build_response(
            self.service.dbname, self.model_type.name, self.version, prepared.job.rev_id, entry
        )

    async def _send_score_event(self, source: RevisionEvent, score: dict[str, Any]) -> None:
        """Posts the revision-score event; EventGateClient logs and swallows failures."""
        if not self.settings.eventgate.url:
            return
        if self._events is None:
            self._events = EventGateClient(self.settings.eventgate, self.pool.http_session())
        scores = event_scores(self.model_type.name, self.version, score)
        await self._events.send(revision_score_event(source, self.settings.eventgate.stream, scores))


def build_model(
    isvc: str,
    model_path: Path,
    settings: ServerSettings,
    pool: MediaWikiPool,
    executor: OffLoopExecutor | None = None,
    score_cache: ScoreCache | None = None,
) -> kserve.Model:
    """The model for inference service `isvc` with its binary at `model_path`, sharing `pool` (and `executor`,
    e.g. a `workers.WorkerPool`, started by the caller once every model is loaded).

    Raises UnknownService for a name this server does not know, ModelLoadError for a bad binary.
    """
    return RevscoringModel(find_service(isvc), model_path, settings, pool, executor, score_cache)


def prepare_binary(model_path: Path, model_type: ModelType, dbname: str) -> tuple[str | None, FetchPlan]:
    """Loads and checks a binary for `model_type`, warms it up; returns its version and fetch plan.

    Raises ModelLoadError for anything that would make the service unable to answer correctly.
    """
    model = load_model(model_path)
    check_output_shape(model, model_type.output, model_path)
    plan = fetch_plan(model.features, model_type, dbname, model_path)
    docs = warm_up_docs(
        plan.content_models[0], Need.PARENT_REVISION in plan.needs, Need.USER_INFO in plan.needs
    )
    warm_up(str(model_path), model_type.name, docs)
    return model.version, plan


def fetch_plan(features: Any, model_type: ModelType, dbname: str, model_path: Path | str) -> FetchPlan:
    """The type's fetch plan, checked against what the binary's features actually depend on.

    A model needing a document its type does not fetch would make revscoring call the API itself, in the
    middle of extraction: that is refused at start-up rather than failing every request.
    """
    needed = _datasource_names(features)
    derived = {need for need in Need if need.value in needed}
    missing = derived - model_type.needs
    if missing:
        raise ModelLoadError(
            f"Model binary {model_path} needs {sorted(need.name for need in missing)}, which the "
            f"{model_type.name} model type does not fetch (see model_types.py)."
        )
    return FetchPlan(
        needs=model_type.needs,
        content_models=model_type.accepted_content_models(dbname),
        page_creation_text="datasource.revision.page.creation.text" in needed,
        last_revision_text="datasource.revision.user.last_revision.text" in needed,
    )


def _datasource_names(features: Any) -> set[str]:
    """Names of every dependency of `features`, resolved the way the api.Extractor resolves them."""
    context = Extractor(None).context
    seen: set = set()
    stack = list(features)
    while stack:
        dependent = stack.pop()
        dependent = context.get(dependent, dependent)
        if dependent in seen:
            continue
        seen.add(dependent)
        stack.extend(getattr(dependent, "dependencies", None) or [])
    return {str(dependent) for dependent in seen}
