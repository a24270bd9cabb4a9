"""ORES's API on the revscoring server: every wiki of the loaded models is a context, scored by the same
`scorer.WikiScorer` that answers the KServe routes (one fetch for the batch, one extraction job per revision
for all the models asked for, the score cache in front)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from fastapi import APIRouter

from revscoring_server.ores.api import OresApi
from revscoring_server.scorer import Scorers


class LocalOresBackend:
    """ORES contexts answered by the models of this process."""

    def __init__(self, scorers: Scorers) -> None:
        self.scorers = scorers

    def contexts(self) -> Mapping[str, Sequence[str]]:
        return {dbname: list(scorer.models) for dbname, scorer in sorted(self.scorers.by_wiki.items())}

    async def versions(self, context: str) -> dict[str, dict[str, Any]]:
        return self.scorers.by_wiki[context].versions()

    async def score(
        self, context: str, models: Sequence[str], rev_ids: Sequence[int], features: bool
    ) -> dict[str, Any]:
        # Admitted before the scorer makes any MediaWiki call; a revision counts once, whatever the models.
        with self.scorers.admission.admitted(len(set(rev_ids))):
            return await self.scorers.by_wiki[context].document(rev_ids, models, features)


def ores_router(scorers: Scorers) -> APIRouter:
    """The `/v3/scores/` routes for every wiki of `scorers`."""
    return OresApi(LocalOresBackend(scorers)).router()
