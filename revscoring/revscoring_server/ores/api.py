"""ORES's v3 API (`GET /v3/scores/...`): request parsing, validation and response shapes, for any backend.

The revscoring server answers it from the models it loaded (`local.py`); the `ores` image by calling each
model's InferenceService (`proxy.py`). Both plug an `OresBackend` into this router.

Routes, as ORES v3 had them:
    GET /v3/scores/                                     every context (wiki dbname) and its models' versions
    GET /v3/scores/{context}/                           that context's models; with `revids`, scores
        ?models=damaging|goodfaith&revids=1|2|3         (models default to all; `features` adds base features)
    GET /v3/scores/{context}/{revid}/                   one revision, every model of the context
    GET /v3/scores/{context}/{revid}/{model}            one revision, one model
Errors are ORES's `{"error": {"code", "message"}}`: 404 for an unknown context, 400 for an unknown model or
bad/too many revision ids. A revision that cannot be scored is not a request error: its entry carries
`{"error": {"type", "message"}}` and the rest of the batch is scored.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from fastapi import APIRouter, Request
from fastapi.responses import ORJSONResponse

from wikiserve.admission import Overloaded
from wikiserve.errors import ServingError
from wikiserve.validation import MAX_REV_ID, MAX_REVISIONS

_MAX_SHOWN = 40  # characters of a client's value quoted back in an error message


class OresBackend(Protocol):
    def contexts(self) -> Mapping[str, Sequence[str]]:
        """Every context and its model names."""
        ...

    async def versions(self, context: str) -> dict[str, dict[str, Any]]:
        """`{model: {"version": ...}}` for every model of `context`."""
        ...

    async def score(
        self, context: str, models: Sequence[str], rev_ids: Sequence[int], features: bool
    ) -> dict[str, Any]:
        """The context's document: `{"models": {...}, "scores": {"<rev_id>": {model: entry}}}`."""
        ...


class OresRequestError(Exception):
    """A request ORES would refuse, with its status and ORES's error code."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = {400: "bad request", 404: "not found"}.get(status, "internal server error")


def ores_error(status: int, code: str, message: str) -> ORJSONResponse:
    return ORJSONResponse({"error": {"code": code, "message": message}}, status_code=status)


def parse_rev_ids(raw: str | None) -> list[int]:
    """`1|2|3` -> [1, 2, 3], duplicates dropped (order kept); 400 naming what is wrong."""
    if raw is None or raw == "":
        return []
    rev_ids: list[int] = []
    for part in raw.split("|"):
        rev_ids.append(parse_rev_id(part))
    rev_ids = list(dict.fromkeys(rev_ids))
    if len(rev_ids) > MAX_REVISIONS:
        raise OresRequestError(
            400, f"Too many values for 'revids' parameter: {len(rev_ids)}. Max of {MAX_REVISIONS}."
        )
    return rev_ids


def parse_rev_id(text: str) -> int:
    """A revision id written in ASCII digits, 1 to MAX_REV_ID; anything else is a 400 quoting it (shortened).

    `str.isdigit()` would accept `²` or Arabic-Indic digits, and a 5,000-digit number would reach `int()`;
    the length is checked first, and only 0-9 are digits here.
    """
    stripped = text.strip()
    digits = 0 < len(stripped) <= len(str(MAX_REV_ID)) and stripped.isascii() and stripped.isdecimal()
    if not digits or not 1 <= int(stripped) <= MAX_REV_ID:
        shown = text if len(text) <= _MAX_SHOWN else text[:_MAX_SHOWN] + "..."
        raise OresRequestError(
            400, f"Could not interpret revids: {shown!r} is not a revision id (an integer 1 to {MAX_REV_ID})."
        )
    return int(stripped)


def check_models(context: str, requested: Sequence[str], available: Sequence[str]) -> list[str]:
    """The requested model names (all of the context's when none), or 400 naming the unknown ones."""
    if not requested:
        return list(available)
    requested = list(dict.fromkeys(requested))
    unknown = [name for name in requested if name not in available]
    if unknown:
        shown = ", ".join(repr(name[:_MAX_SHOWN]) for name in unknown[:5])
        raise OresRequestError(
            400, f"Models {shown} not available for {context}; available: {', '.join(available)}."
        )
    return requested


def split_models(raw: str | None) -> list[str]:
    return [name for name in (raw or "").split("|") if name]


class OresApi:
    """The routes, answering from `backend`."""

    def __init__(self, backend: OresBackend) -> None:
        self.backend = backend

    def router(self) -> APIRouter:
        router = APIRouter()
        router.add_api_route("/v3/scores/", self.all_contexts, methods=["GET"])
        router.add_api_route("/v3/scores/{context}/", self.context_scores, methods=["GET"])
        router.add_api_route("/v3/scores/{context}/{revid}/", self.revision_scores, methods=["GET"])
        router.add_api_route(
            "/v3/scores/{context}/{revid}/{model}", self.revision_model_score, methods=["GET"]
        )
        router.add_api_route(
            "/v3/scores/{context}/{revid}/{model}/", self.revision_model_score, methods=["GET"]
        )
        return router

    async def all_contexts(self) -> ORJSONResponse:
        contexts = list(self.backend.contexts())
        # Concurrently: the ores image asks every InferenceService (about 112) for its version.
        versions = await asyncio.gather(*(self.backend.versions(context) for context in contexts))
        body = {context: {"models": models} for context, models in zip(contexts, versions, strict=True)}
        return ORJSONResponse(body)

    async def context_scores(self, context: str, request: Request) -> ORJSONResponse:
        params = request.query_params
        return await self._answer(
            context,
            lambda: (parse_rev_ids(params.get("revids")), split_models(params.get("models"))),
            request,
        )

    async def revision_scores(self, context: str, revid: str, request: Request) -> ORJSONResponse:
        return await self._answer(
            context,
            lambda: ([parse_rev_id(revid)], split_models(request.query_params.get("models"))),
            request,
        )

    async def revision_model_score(
        self, context: str, revid: str, model: str, request: Request
    ) -> ORJSONResponse:
        return await self._answer(context, lambda: ([parse_rev_id(revid)], [model]), request)

    async def _answer(self, context: str, parse: Any, request: Request) -> ORJSONResponse:
        try:
            available = self.backend.contexts().get(context)
            if available is None:
                raise OresRequestError(404, f"No scorers available for {context[:_MAX_SHOWN]!r}.")
            rev_ids, requested = parse()
            models = check_models(context, requested, available)
            # ORES's flag: present (`&features`, any value) means "add the features".
            features = "features" in request.query_params
            if not rev_ids:
                return ORJSONResponse({context: {"models": await self.backend.versions(context)}})
            document = await self.backend.score(context, models, rev_ids, features)
        except OresRequestError as error:
            return ores_error(error.status, error.code, error.message)
        except ServingError as error:  # the backend failed as a whole (e.g. the ores image's upstream)
            code = "upstream error" if error.status >= 500 else "bad request"
            if isinstance(error, Overloaded):
                code = "overloaded"
            answer = ores_error(error.status, code, error.message)
            answer.headers.update(error.headers)  # a 503's Retry-After
            return answer
        return ORJSONResponse({context: document})
