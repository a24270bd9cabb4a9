"""The one scorer behind every route: a revision, a batch, an event, ORES's API all ask `WikiScorer.score`.

For a batch of revisions and the models asked for (one revision and one model is a batch too):
1. the score cache answers what it holds (one lookup for the whole batch);
2. revisions MediaWiki recently reported missing are answered from memory (`RecentlyMissing`);
3. the rest is fetched in a few calls whatever the batch's size: the revisions in one call, then the parents
   in one and the editors in one (per 50 ids; `fetch.py`);
4. each revision is one extraction job for all of its models (`scoring.score_revision_models`), where the
   models share the documents and every value whose definition they share, and nothing else;
5. fresh scores go into the cache.
Each (revision, model) ends as an entry `{"score": ...}` or a ServingError saying why there is none: ORES's
document turns it into `{"error": {"type", "message"}}`, the single-revision route into its HTTP status.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

from revscoring_server.fetch import (
    Fetched,
    UnscorableRevision,
    check_readable,
    fetch_dependents,
    fetch_revisions,
    merge_plans,
)
from revscoring_server.scoring import Outcome, RevisionJob, error_entry, score_revision_models
from wikiserve import metrics
from wikiserve.admission import Admission
from wikiserve.errors import ServingError
from wikiserve.logs import REQUEST_ID
from wikiserve.score_cache import ScoreCache, ScoreKey

if TYPE_CHECKING:
    from revscoring_server.executor import OffLoopExecutor
    from revscoring_server.model import RevscoringModel

logger = logging.getLogger(__name__)

MAX_REVISIONS = 50  # per request, ORES's limit (its clients send 50): the one batch limit of every route
# Extraction jobs of one request in flight at once: a 50-revision batch does not queue 50 jobs ahead of
# every other request's (the workers take them in order).
JOBS_IN_FLIGHT = 10

Outcomes = dict[int, dict[str, Outcome]]  # rev_id -> model name -> entry or error


class InternalScoringError(ServingError):
    """A bug met while scoring: logged with its traceback; the client sees only the request id."""

    status = 500
    error_type = "InternalError"


class RecentlyMissing:
    """Revisions MediaWiki just reported missing, remembered `ttl_s` (at most `size` of them)."""

    def __init__(self, ttl_s: float, size: int = 10_000, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl_s = ttl_s
        self.size = size
        self._clock = clock
        self._errors: OrderedDict[int, tuple[float, UnscorableRevision]] = OrderedDict()

    def get(self, rev_id: int) -> UnscorableRevision | None:
        stored = self._errors.get(rev_id)
        if stored is None:
            return None
        if stored[0] <= self._clock():
            del self._errors[rev_id]
            return None
        return stored[1]

    def remember(self, rev_id: int, error: UnscorableRevision) -> None:
        if self.ttl_s <= 0:
            return
        self._errors[rev_id] = (self._clock() + self.ttl_s, error)
        self._errors.move_to_end(rev_id)
        while len(self._errors) > self.size:
            self._errors.popitem(last=False)


class KnownHeavy:
    """Revisions recently found heavy (their wikitext takes the heavy lane), at most `size` of them: while
    that lane is full they are refused before they are fetched again. Fetching a 500 KB revision and its
    parent costs the server process more than refusing it, so a flood of them would otherwise starve the
    ordinary requests of the server process itself."""

    def __init__(self, size: int = 1000) -> None:
        self.size = size
        self._rev_ids: OrderedDict[int, None] = OrderedDict()

    def __contains__(self, rev_id: int) -> bool:
        return rev_id in self._rev_ids

    def add(self, rev_id: int) -> None:
        self._rev_ids[rev_id] = None
        self._rev_ids.move_to_end(rev_id)
        while len(self._rev_ids) > self.size:
            self._rev_ids.popitem(last=False)


class Activity:
    """How many scoring requests this process is serving now (every wiki's scorer counts here)."""

    def __init__(self) -> None:
        self.requests = 0

    def alone(self) -> bool:
        return self.requests <= 1


class WikiScorer:
    """Every model of one wiki served by this process."""

    def __init__(
        self,
        dbname: str,
        executor: OffLoopExecutor,
        cache: ScoreCache | None = None,
        missing: RecentlyMissing | None = None,
        activity: Activity | None = None,
    ) -> None:
        self.dbname = dbname
        self.executor = executor
        self.cache = cache
        self.missing = missing or RecentlyMissing(0)
        self.activity = activity or Activity()
        self.heavy = KnownHeavy()
        self.models: dict[str, RevscoringModel] = {}

    def add(self, model: RevscoringModel) -> None:
        self.models[model.model_type.name] = model

    @property
    def client(self) -> Any:
        return next(iter(self.models.values())).client  # every model of a wiki calls the same wiki

    def versions(self, model_names: Iterable[str] | None = None) -> dict[str, dict[str, Any]]:
        """ORES's `models` map: `{name: {"version": ...}}`."""
        names = self.models if model_names is None else model_names
        return {name: {"version": self.models[name].version} for name in names}

    async def document(self, rev_ids: Sequence[int], model_names: Sequence[str], features: bool) -> dict:
        """ORES's context document, `{"models": {...}, "scores": {"<rev_id>": {model: entry}}}`."""
        outcomes = await self.score(rev_ids, model_names, features)
        return {
            "models": self.versions(model_names),
            "scores": {
                str(rev_id): {
                    name: error_entry(outcome) if isinstance(outcome, ServingError) else outcome
                    for name, outcome in outcomes[rev_id].items()
                }
                for rev_id in rev_ids
            },
        }

    async def score(self, rev_ids: Sequence[int], model_names: Sequence[str], features: bool) -> Outcomes:
        """Every (revision, model)'s entry or error, in the order asked."""
        self.activity.requests += 1
        try:
            return await self._score(list(dict.fromkeys(rev_ids)), model_names, features)
        finally:
            self.activity.requests -= 1

    async def _score(self, rev_ids: list[int], model_names: Sequence[str], features: bool) -> Outcomes:
        outcomes: Outcomes = {rev_id: {} for rev_id in rev_ids}
        keys = {
            (rev_id, name): self._key(name, rev_id, features) for rev_id in rev_ids for name in model_names
        }
        cached = await self.cache.get_many(list(keys.values())) if self.cache else {}
        to_compute: dict[int, list[str]] = {}
        for (rev_id, name), key in keys.items():
            if key in cached:
                outcomes[rev_id][name] = cached[key]
            else:
                to_compute.setdefault(rev_id, []).append(name)
        if to_compute:
            fresh = await self._compute(to_compute, features)
            for rev_id, entries in fresh.items():
                outcomes[rev_id].update(entries)
            if self.cache:
                # Errors are not cached: a revision missing now may be visible later, MediaWiki may recover.
                await self.cache.set_many(
                    {
                        keys[(rev_id, name)]: entry
                        for rev_id, entries in fresh.items()
                        for name, entry in entries.items()
                        if not isinstance(entry, ServingError)
                    }
                )
        return {rev_id: {name: outcomes[rev_id][name] for name in model_names} for rev_id in rev_ids}

    def _key(self, model_name: str, rev_id: int, features: bool) -> ScoreKey:
        return ScoreKey(self.dbname, model_name, str(self.models[model_name].version), rev_id, features)

    async def _compute(self, wanted: dict[int, list[str]], features: bool) -> Outcomes:
        """Fetches and scores `wanted` ({rev_id: model names}); a failure costs the revisions it concerns."""
        outcomes: Outcomes = {}
        to_fetch = []
        for rev_id, names in wanted.items():
            known_missing = self.missing.get(rev_id)
            if known_missing is not None:
                outcomes[rev_id] = dict.fromkeys(names, known_missing)
            elif rev_id in self.heavy and self.executor.heavy_lane_full():
                outcomes[rev_id] = dict.fromkeys(names, self.executor.heavy_refusal())
            else:
                to_fetch.append(rev_id)
        if to_fetch:
            try:
                outcomes.update(await self._fetch_and_score({r: wanted[r] for r in to_fetch}, features))
            except ServingError as error:  # the batch's fetch failed as a whole (MediaWiki down, ...)
                outcomes.update({rev_id: dict.fromkeys(wanted[rev_id], error) for rev_id in to_fetch})
            except Exception as error:  # noqa: BLE001 - a bug must answer an error entry, not crash the batch
                logger.exception("Unexpected error while scoring a batch", extra={"revisions": len(to_fetch)})
                failure = InternalScoringError(
                    f"Internal error ({type(error).__name__}); request id {REQUEST_ID.get()}."
                )
                outcomes.update({rev_id: dict.fromkeys(wanted[rev_id], failure) for rev_id in to_fetch})
        return outcomes

    async def _fetch_and_score(self, wanted: dict[int, list[str]], features: bool) -> Outcomes:
        fetched = await fetch_revisions(self.client, self.dbname, list(wanted))
        outcomes: Outcomes = {}
        readable: dict[int, tuple[Fetched, list[RevscoringModel]]] = {}
        for rev_id, result in fetched.items():
            if isinstance(result, UnscorableRevision):
                self.missing.remember(rev_id, result)
                outcomes[rev_id] = dict.fromkeys(wanted[rev_id], result)
                continue
            outcomes[rev_id], models = self._readable_models(result, wanted[rev_id])
            if models:
                readable[rev_id] = (result, models)
        if readable:
            plan = merge_plans(model.plan for _, models in readable.values() for model in models)
            await fetch_dependents(self.client, [item for item, _ in readable.values()], plan)
            for rev_id, entries in zip(readable, await self._extract_all(readable, features), strict=True):
                outcomes[rev_id].update(entries)
        return outcomes

    async def _extract_all(
        self, readable: dict[int, tuple[Fetched, list[RevscoringModel]]], features: bool
    ) -> list[dict[str, Outcome]]:
        """Each revision's entries, in the order of `readable`; a batch's jobs go to the workers together (at
        most JOBS_IN_FLIGHT at once), to use every core."""
        if len(readable) == 1:  # the usual request: no task or semaphore to make (issue 20)
            ((item, models),) = readable.values()
            return [await self._extract(item, models, features, alone=True)]
        in_flight = asyncio.Semaphore(JOBS_IN_FLIGHT)

        async def extract(item: Fetched, models: list[RevscoringModel]) -> dict[str, Outcome]:
            async with in_flight:
                return await self._extract(item, models, features, alone=False)

        return await asyncio.gather(*(extract(item, models) for item, models in readable.values()))

    def _readable_models(
        self, item: Fetched, names: list[str]
    ) -> tuple[dict[str, Outcome], list[RevscoringModel]]:
        """Errors for the models that cannot read the revision (hidden text, another content model), and the
        models that can (on Wikidata, itemquality reads items only, damaging properties too)."""
        errors: dict[str, Outcome] = {}
        models = []
        for name in names:
            model = self.models[name]
            try:
                check_readable(item.revision, item.docs.rev_id, self.dbname, model.plan.content_models)
                models.append(model)
            except UnscorableRevision as error:
                errors[name] = error
        return errors, models

    async def _extract(
        self, item: Fetched, models: list[RevscoringModel], features: bool, alone: bool
    ) -> dict[str, Outcome]:
        job = RevisionJob(
            tuple((model.model_type.name, model.model_path) for model in models),
            item.docs.rev_id,
            item.docs,
            features,
        )
        if self.executor.is_heavy(job):
            self.heavy.add(job.rev_id)
        # One job, one observation: the label is the service for one model, the wiki for several.
        label = models[0].name if len(models) == 1 else self.dbname
        try:
            with metrics.FEATURE_EXTRACTION_SECONDS.labels(model=label).time():
                if alone and self.activity.alone() and self.executor.may_run_here(job):
                    # The only job of the only request in the process, and a light one: handing it to a
                    # worker would only add the hop (about 1 ms of 5); nothing is waiting for the event loop.
                    return score_revision_models(job)
                return await self.executor.run(score_revision_models, job)
        except ServingError as error:  # e.g. a worker process died
            return {model.model_type.name: error for model in models}


class Scorers:
    """The process's scorers, one per wiki, shared by the KServe routes and ORES's API."""

    def __init__(
        self,
        executor: OffLoopExecutor,
        cache: ScoreCache | None = None,
        missing_ttl_s: float = 0.0,
        admission: Admission | None = None,
    ) -> None:
        self.executor = executor
        self.cache = cache
        self.missing_ttl_s = missing_ttl_s
        self.activity = Activity()
        # The process's bound on revisions in flight, every route and wiki together (0: none).
        self.admission = admission or Admission(0)
        self.by_wiki: dict[str, WikiScorer] = {}

    def add(self, model: RevscoringModel) -> WikiScorer:
        """Registers a loaded model with its wiki's scorer, and returns that scorer."""
        dbname = model.service.dbname
        scorer = self.by_wiki.get(dbname)
        if scorer is None:
            missing = RecentlyMissing(self.missing_ttl_s)
            scorer = WikiScorer(dbname, self.executor, self.cache, missing, self.activity)
            self.by_wiki[dbname] = scorer
        scorer.add(model)
        return scorer
