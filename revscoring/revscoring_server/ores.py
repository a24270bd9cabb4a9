"""The ORES API on the revscoring server: every wiki of the loaded models is an ORES context.

`wikiserve.ores_api` parses and answers the requests; this backend scores them with `batch.WikiScorer`,
the same path the KServe route's `{"rev_ids": [...]}` batch takes (one fetch and one extraction job per
revision for all the models asked for, the score cache in front).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from fastapi import APIRouter

from revscoring_server.batch import WikiScorer
from revscoring_server.model import RevscoringModel
from wikiserve.ores_api import OresApi
from wikiserve.score_cache import ScoreCache


class LocalOresBackend:
    """ORES contexts answered by the models of this process."""

    def __init__(self, models: Iterable[RevscoringModel], cache: ScoreCache | None = None) -> None:
        by_wiki: dict[str, list[RevscoringModel]] = defaultdict(list)
        for model in models:
            by_wiki[model.service.dbname].append(model)
        self.scorers = {
            dbname: WikiScorer(dbname, wiki_models, cache) for dbname, wiki_models in sorted(by_wiki.items())
        }

    def contexts(self) -> Mapping[str, Sequence[str]]:
        return {dbname: list(scorer.models) for dbname, scorer in self.scorers.items()}

    async def versions(self, context: str) -> dict[str, dict[str, Any]]:
        return self.scorers[context].versions()

    async def score(
        self, context: str, models: Sequence[str], rev_ids: Sequence[int], features: bool
    ) -> dict[str, Any]:
        return await self.scorers[context].score(rev_ids, models, features)


def ores_router(models: Iterable[Any], cache: ScoreCache | None = None) -> APIRouter:
    """The `/v3/scores/` routes for the revscoring models among `models` (others, e.g. outlink, skipped)."""
    revscoring = [model for model in models if isinstance(model, RevscoringModel)]
    return OresApi(LocalOresBackend(revscoring, cache)).router()
