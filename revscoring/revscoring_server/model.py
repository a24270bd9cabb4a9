"""The kserve.Model serving any revscoring inference service, and `build_model` to make one."""

from __future__ import annotations

import logging
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import kserve
from revscoring.extractors.api import Extractor

from revscoring_server.fetch import FetchPlan
from revscoring_server.model_types import ModelType, Need
from revscoring_server.response import build_response, event_scores
from revscoring_server.scorer import Scorers, WikiScorer
from revscoring_server.scoring import ModelLoadError, check_output_shape, load_model, warm_up, warm_up_docs
from revscoring_server.services import Service, find_service
from wikiserve.config import ServerSettings
from wikiserve.errors import InvalidRequest, ServingError
from wikiserve.event_claims import verify_revision
from wikiserve.events import EventGateClient, VerifiedRevision, parse_event, revision_score_event
from wikiserve.kserve_adapter import json_answer
from wikiserve.mediawiki import MediaWikiPool
from wikiserve.validation import (
    MAX_REVISIONS,
    exactly_one_of,
    optional_bool,
    parse_body,
    reject_unknown_fields,
    require_int,
    require_rev_ids,
)

logger = logging.getLogger(__name__)

REQUEST_FIELDS = ("rev_id", "rev_ids", "extended_output", "event")
__all__ = ["ModelLoadError", "RevscoringModel", "build_model"]


@dataclass
class Prepared:
    """What preprocess hands to predict: the revisions to score and, for event input, the event."""

    rev_ids: list[int]
    extended_output: bool
    batch: bool = False  # `rev_ids`: ORES's document with an error entry per unscorable revision
    verified: VerifiedRevision | None = None  # an event's revision, as MediaWiki reports it


@dataclass
class _Held:
    """The admission one request holds (0: none yet)."""

    cost: int = 0


# Set by RevscoringModel.__call__ for the request it serves (each request runs in its own task and context).
_HELD: ContextVar[_Held] = ContextVar("revscoring_admission")


class RevscoringModel(kserve.Model):
    """One inference service `<dbname>-<model type>`: its binary, answered by its wiki's scorer."""

    def __init__(
        self,
        service: Service,
        model_path: Path,
        settings: ServerSettings,
        pool: MediaWikiPool,
        scorers: Scorers,
    ) -> None:
        super().__init__(service.isvc)
        self.service = service
        self.model_type: ModelType = service.type
        self.model_path = str(model_path)
        self.settings = settings
        self.pool = pool
        self.client = pool.client(service.domain)
        self.scorers = scorers
        self.version: str | None = None
        self.plan: FetchPlan | None = None
        self.scorer: WikiScorer | None = None
        self._events: EventGateClient | None = None

    def load(self) -> bool:
        """Loads, checks and warms up the binary, then joins its wiki's scorer. Raises ModelLoadError."""
        self.version, self.plan = prepare_binary(Path(self.model_path), self.model_type, self.service.dbname)
        self.scorer = self.scorers.add(self)
        self.ready = True
        return self.ready

    async def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """KServe's preprocess -> predict, holding the request's admission (taken in preprocess, once the
        body says how many revisions it asks for) until the answer is made, whatever happens."""
        held = _Held()
        token = _HELD.set(held)
        try:
            return await super().__call__(*args, **kwargs)
        finally:
            _HELD.reset(token)
            if held.cost:
                self.scorers.admission.release(held.cost)

    def _admit(self, revisions: int) -> None:
        """Takes `revisions` of the process's bound for this request, or raises Overloaded (503)."""
        held = _HELD.get(None)
        if held is not None and not held.cost:
            held.cost = self.scorers.admission.acquire(revisions)

    async def preprocess(self, payload: Any, headers: dict[str, str] | None = None) -> Prepared:
        body = parse_body(payload)
        reject_unknown_fields(body, REQUEST_FIELDS)
        extended_output = optional_bool(body, "extended_output")
        given = exactly_one_of(body, "rev_id", "rev_ids", "event")
        if given == "rev_ids":
            rev_ids = require_rev_ids(body, MAX_REVISIONS)
            self._admit(len(set(rev_ids)))
            return Prepared(rev_ids, extended_output, batch=True)
        if given == "rev_id":
            rev_id = require_int(body, "rev_id")
            self._admit(1)
            return Prepared([rev_id], extended_output)
        event = parse_event(body["event"])
        if event.database != self.service.dbname:
            raise InvalidRequest(
                f"The event is for wiki {event.database[:64]!r}, but this model ({self.name}) "
                f"scores {self.service.dbname!r}."
            )
        self._admit(1)  # before MediaWiki is asked anything
        # An event is a claim: MediaWiki is asked before anything is scored or posted (400 if it disagrees).
        verified = await verify_revision(self.client, event, self.service.dbname, self.service.domain)
        return Prepared([event.rev_id], extended_output, verified=verified)

    async def predict(self, prepared: Prepared, headers: dict[str, str] | None = None) -> dict[str, Any]:
        assert self.scorer is not None, "predict before load"
        name = self.model_type.name
        if prepared.batch:
            document = await self.scorer.document(prepared.rev_ids, [name], prepared.extended_output)
            return {self.service.dbname: document}
        rev_id = prepared.rev_ids[0]
        outcome = (await self.scorer.score([rev_id], [name], prepared.extended_output))[rev_id][name]
        if isinstance(outcome, ServingError):
            raise outcome.with_traceback(None)  # one revision: its error is the request's (400 missing, ...)
        if prepared.verified is not None:
            await self._send_score_event(prepared.verified, outcome["score"])
        return build_response(self.service.dbname, name, self.version, rev_id, outcome)

    def postprocess(self, result: Any, headers: dict[str, str] | None = None) -> Any:
        return json_answer(result, headers)

    async def _send_score_event(self, verified: VerifiedRevision, score: dict[str, Any]) -> None:
        """Posts the revision-score event, stating only MediaWiki's facts and the score; EventGateClient logs
        and swallows failures."""
        if not self.settings.eventgate.url:
            return
        if self._events is None:
            self._events = EventGateClient(self.settings.eventgate, self.pool.http_session())
        scores = event_scores(self.model_type.name, self.version, score)
        await self._events.send(revision_score_event(verified, self.settings.eventgate.stream, scores))


def build_model(
    isvc: str, model_path: Path, settings: ServerSettings, pool: MediaWikiPool, scorers: Scorers
) -> RevscoringModel:
    """The (loaded) model for inference service `isvc` with its binary at `model_path`, joined to `scorers`.

    Raises UnknownService for a name this server does not know, ModelLoadError for a bad binary.
    """
    model = RevscoringModel(find_service(isvc), model_path, settings, pool, scorers)
    model.load()
    return model


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
