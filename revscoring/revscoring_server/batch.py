"""Scoring many revisions with several models of one wiki: the ORES API's and `{"rev_ids": [...]}`'s core.

Per revision, whatever the number of models asked for:
- one fetch: the revision once, then what any of the models needs (parent, user, ...) once (`merge_plans`);
- one extraction job: `scoring.score_revision_models` runs every model in one worker call, sharing
  revscoring's solve cache, so features the models have in common are computed once;
- a revision that cannot be scored (missing, hidden, wrong content model, MediaWiki failing) gets ORES's
  `{"error": {"type", "message"}}` for the models concerned, and the rest of the batch is still scored.
Scores already in the score cache skip all of that; fresh scores are stored in it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from revscoring_server.fetch import (
    ApiDocs,
    UnscorableRevision,
    check_readable,
    fetch_dependents,
    fetch_revision,
    merge_plans,
)
from revscoring_server.scoring import RevisionJob, error_entry, score_revision_models
from wikiserve import metrics
from wikiserve.errors import ServingError
from wikiserve.logs import REQUEST_ID
from wikiserve.score_cache import ScoreCache, ScoreKey

if TYPE_CHECKING:
    from revscoring_server.model import RevscoringModel

logger = logging.getLogger(__name__)

MAX_REVISIONS = 50  # ORES's limit per request, kept for its clients' sake
# Revisions of one request fetched and extracted at the same time: enough to overlap MediaWiki's latency,
# few enough that a 50-revision request does not put 150 calls in MediaWiki's queue (or ours) at once.
REVISIONS_IN_FLIGHT = 10

Entry = dict[str, Any]  # one model's entry for one revision: {"score": ...} or {"error": ...}


class WikiScorer:
    """Every model of one wiki served by this process (or one model, for the KServe batch)."""

    def __init__(
        self, dbname: str, models: Sequence[RevscoringModel], cache: ScoreCache | None = None
    ) -> None:
        if not models:
            raise ValueError(f"no models for {dbname}")
        self.dbname = dbname
        self.models = {model.model_type.name: model for model in models}
        self.client = models[0].client  # every model of a wiki calls the same wiki
        self.executor = models[0].executor  # the process's one extraction worker pool
        self.cache = cache

    def versions(self) -> dict[str, dict[str, Any]]:
        """ORES's `models` map: `{name: {"version": ...}}` for every model of the wiki."""
        return {name: {"version": model.version} for name, model in self.models.items()}

    async def score(
        self, rev_ids: Sequence[int], model_names: Sequence[str], features: bool
    ) -> dict[str, Any]:
        """ORES's context document, `{"models": {...}, "scores": {"<rev_id>": {model: entry}}}`."""
        models = [self.models[name] for name in model_names]
        in_flight = asyncio.Semaphore(REVISIONS_IN_FLIGHT)

        async def score_one(rev_id: int) -> dict[str, Entry]:
            async with in_flight:
                return await self._score_one(rev_id, models, features)

        entries = await asyncio.gather(*(score_one(rev_id) for rev_id in rev_ids))
        return {
            "models": {model.model_type.name: {"version": model.version} for model in models},
            "scores": {str(rev_id): entry for rev_id, entry in zip(rev_ids, entries, strict=True)},
        }

    async def _score_one(
        self, rev_id: int, models: list[RevscoringModel], features: bool
    ) -> dict[str, Entry]:
        keys = {model.model_type.name: self._key(model, rev_id, features) for model in models}
        entries = await self.cache.get_many(list(keys.values())) if self.cache else {}
        found = {name: entries[key] for name, key in keys.items() if key in entries}
        missing = [model for model in models if model.model_type.name not in found]
        if missing:
            fresh = await self._compute(rev_id, missing, features)
            found.update(fresh)
            if self.cache:
                # Errors are not cached: a revision missing now may be visible later, MediaWiki may recover.
                scored = {keys[name]: entry for name, entry in fresh.items() if "error" not in entry}
                await self.cache.set_many(scored)
        return {model.model_type.name: found[model.model_type.name] for model in models}

    def _key(self, model: RevscoringModel, rev_id: int, features: bool) -> ScoreKey:
        return ScoreKey(self.dbname, model.model_type.name, str(model.version), rev_id, features)

    async def _compute(self, rev_id: int, models: list[RevscoringModel], features: bool) -> dict[str, Entry]:
        try:
            return await self._fetch_and_score(rev_id, models, features)
        except ServingError as error:
            return {model.model_type.name: error_entry(error) for model in models}
        except Exception as error:  # noqa: BLE001 - a bug must cost one revision, not the whole batch
            logger.exception("Unexpected error while scoring a revision of a batch", extra={"rev_id": rev_id})
            message = f"Internal error ({type(error).__name__}); request id {REQUEST_ID.get()}."
            return {
                model.model_type.name: {"error": {"type": "InternalError", "message": message}}
                for model in models
            }

    async def _fetch_and_score(
        self, rev_id: int, models: list[RevscoringModel], features: bool
    ) -> dict[str, Entry]:
        docs, page, revision = await fetch_revision(self.client, self.dbname, rev_id)
        entries: dict[str, Entry] = {}
        readable = []
        for model in models:  # content models differ (e.g. Wikidata: itemquality reads items only)
            try:
                check_readable(revision, rev_id, self.dbname, model.plan.content_models)
                readable.append(model)
            except UnscorableRevision as error:
                entries[model.model_type.name] = error_entry(error)
        if readable:
            await fetch_dependents(self.client, docs, page, revision, merge_plans(m.plan for m in readable))
            entries.update(await self._extract(docs, readable, features))
        return entries

    async def _extract(
        self, docs: ApiDocs, models: list[RevscoringModel], features: bool
    ) -> dict[str, Entry]:
        job = RevisionJob(
            tuple((model.model_type.name, model.model_path) for model in models), docs.rev_id, docs, features
        )
        # One job, one observation: the label is the service for one model, the wiki for several.
        label = models[0].name if len(models) == 1 else self.dbname
        with metrics.FEATURE_EXTRACTION_SECONDS.labels(model=label).time():
            return await self.executor.run(score_revision_models, job)
