"""Event input and output: the Event Platform side of the model servers.

Input: `mediawiki/revision/create` (1.x, 2.x) and `mediawiki/page/change` (1.x) events name the revision to
score. Output: a `mediawiki/revision/score` 2.0.0 event (revscoring) or a
`mediawiki/page/prediction_classification_change` 1.0.0 event (the outlink topic model, from page/change
input), posted to EventGate when it is configured.
"""

from __future__ import annotations

import asyncio
import copy
import logging
import re
import ssl
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import aiohttp

from wikiserve import metrics
from wikiserve.config import EventGateSettings
from wikiserve.errors import InvalidRequest

logger = logging.getLogger(__name__)

REVISION_SCORE_SCHEMA = "/mediawiki/revision/score/2.0.0"
PREDICTION_CLASSIFICATION_SCHEMA = "/mediawiki/page/prediction_classification_change/1.0.0"
_SCHEMA_PATTERN = re.compile(r"^/?(mediawiki/revision/create|mediawiki/page/change)/(\d+)\.\d+\.\d+$")
SUPPORTED_SCHEMAS = {
    ("mediawiki/revision/create", 1),
    ("mediawiki/revision/create", 2),
    ("mediawiki/page/change", 1),
}


@dataclass(frozen=True)
class RevisionEvent:
    """What the server needs of an input event: the revision to score and the fields echoed in the output."""

    database: str
    rev_id: int
    page_id: int
    page_title: str
    page_namespace: int
    page_is_redirect: bool
    rev_timestamp: str
    domain: str | None = None
    uri: str | None = None
    request_id: str | None = None
    rev_parent_id: int | None = None
    performer: dict[str, Any] | None = field(default=None, compare=False)


def parse_event(event: Any) -> RevisionEvent:
    """Reads an input event, rejecting unsupported schemas and missing fields with a 400."""
    if not isinstance(event, dict):
        raise InvalidRequest("'event' must be a JSON object.")
    schema = event.get("$schema")
    match = _SCHEMA_PATTERN.match(schema) if isinstance(schema, str) else None
    if match is None or (match.group(1), int(match.group(2))) not in SUPPORTED_SCHEMAS:
        raise InvalidRequest(
            f"Unsupported event schema {schema!r}: expected mediawiki/revision/create 1.x or 2.x, "
            "or mediawiki/page/change 1.x."
        )
    try:
        if match.group(1) == "mediawiki/page/change":
            return _from_page_change(event)
        return _from_revision_create(event)
    except (KeyError, TypeError, ValueError) as error:
        raise InvalidRequest(f"The {match.group(1)} event is missing or has a bad field: {error}") from None


def _from_revision_create(event: dict[str, Any]) -> RevisionEvent:
    meta = event.get("meta") or {}
    return RevisionEvent(
        database=_str(event["database"]),
        rev_id=_int(event["rev_id"]),
        page_id=_int(event["page_id"]),
        page_title=_str(event["page_title"]),
        page_namespace=_int(event["page_namespace"]),
        page_is_redirect=bool(event["page_is_redirect"]),
        rev_timestamp=_str(event["rev_timestamp"]),
        domain=meta.get("domain"),
        uri=meta.get("uri"),
        request_id=meta.get("request_id"),
        rev_parent_id=event.get("rev_parent_id"),
        performer=event.get("performer"),
    )


def _from_page_change(event: dict[str, Any]) -> RevisionEvent:
    meta = event.get("meta") or {}
    page = event["page"]
    revision = event["revision"]
    return RevisionEvent(
        database=_str(event["wiki_id"]),
        rev_id=_int(revision["rev_id"]),
        page_id=_int(page["page_id"]),
        page_title=_str(page["page_title"]),
        page_namespace=_int(page["namespace_id"]),
        page_is_redirect=bool(page.get("is_redirect", False)),
        rev_timestamp=_str(revision["rev_dt"]),
        domain=meta.get("domain"),
        uri=meta.get("uri"),
        request_id=meta.get("request_id"),
        rev_parent_id=revision.get("rev_parent_id"),
        performer=_performer_from_page_change(event.get("performer")),
    )


def _performer_from_page_change(performer: dict[str, Any] | None) -> dict[str, Any] | None:
    """page/change names performer fields differently; revision/score uses the revision/create names."""
    if not performer:
        return None
    converted = {
        "user_text": performer.get("user_text"),
        "user_groups": performer.get("groups", []),
        "user_is_bot": bool(performer.get("is_bot", False)),
    }
    optional = {
        "user_id": "user_id",
        "registration_dt": "user_registration_dt",
        "edit_count": "user_edit_count",
    }
    for source, target in optional.items():
        if performer.get(source) is not None:
            converted[target] = performer[source]
    return converted if converted["user_text"] else None


def revision_score_event(
    source: RevisionEvent, stream: str, scores: dict[str, dict[str, Any]], now: datetime | None = None
) -> dict[str, Any]:
    """A `mediawiki/revision/score` 2.0.0 event for `source`.

    `scores` maps model name to
    `{"model_name", "model_version", "prediction": [str], "probability": {str: number}}`.
    """
    event: dict[str, Any] = {
        "$schema": REVISION_SCORE_SCHEMA,
        "meta": _output_meta(source, stream, now),
        "database": source.database,
        "page_id": source.page_id,
        "page_title": source.page_title,
        "page_namespace": source.page_namespace,
        "page_is_redirect": source.page_is_redirect,
        "rev_id": source.rev_id,
        "rev_timestamp": source.rev_timestamp,
        "scores": scores,
    }
    if source.rev_parent_id is not None:
        event["rev_parent_id"] = source.rev_parent_id
    if source.performer:
        event["performer"] = source.performer
    return event


# What prediction_classification_change 1.0.0 repeats of a page/change event (its objects allow no other
# fields; later page/change 1.x versions may add some, e.g. the revision's content slots, which it drops).
_USER_FIELDS = ("user_id", "user_text", "groups", "is_bot", "is_system", "is_temp", "registration_dt",
                "edit_count")
_PAGE_FIELDS = ("page_id", "page_title", "namespace_id", "is_redirect", "revision_count")
_REVISION_FIELDS = ("rev_id", "rev_dt", "rev_parent_id", "rev_sha1", "rev_size", "comment", "is_minor_edit",
                    "is_comment_visible", "is_content_visible", "is_editor_visible", "editor")
_REPEATED_FIELDS = ("wiki_id", "dt", "changelog_kind", "page_change_kind", "comment")


@dataclass(frozen=True)
class PageChangeEvent:
    """A `mediawiki/page/change` 1.x event whose revision has content to predict from.

    `raw` is the event as received: the prediction_classification_change event repeats it."""

    raw: dict[str, Any] = field(compare=False)
    revision: RevisionEvent
    kind: str  # page_change_kind

    @property
    def domain(self) -> str | None:
        return self.revision.domain


def parse_page_change(event: Any) -> PageChangeEvent:
    """Reads a page/change event, refusing with a 400 naming why those without content to predict from:
    deletes and revisions whose content is hidden (a visibility change)."""
    revision = parse_event(event)
    if not str(event["$schema"]).lstrip("/").startswith("mediawiki/page/change/"):
        raise InvalidRequest(f"Expected a mediawiki/page/change 1.x event, not {event['$schema']!r}.")
    kind = event.get("page_change_kind")
    if not isinstance(kind, str) or not kind:
        raise InvalidRequest("The mediawiki/page/change event is missing 'page_change_kind'.")
    if kind == "delete" or event.get("changelog_kind") == "delete":
        raise InvalidRequest(f"The event deletes page {revision.page_title!r} ({revision.database}): a "
                             "deleted page has no content to predict from, so no prediction is made.")
    if event["revision"].get("is_content_visible") is False:
        raise InvalidRequest(f"The content of revision {revision.rev_id} ({revision.database}) is hidden "
                             f"(page_change_kind {kind!r}), so no prediction is made from it.")
    return PageChangeEvent(raw=event, revision=revision, kind=kind)


def prediction_classification_event(
    source: PageChangeEvent, stream: str, classification: dict[str, Any], now: datetime | None = None
) -> dict[str, Any]:
    """A `mediawiki/page/prediction_classification_change` 1.0.0 event for `source`.

    `classification` is `{"model_name", "model_version", "predictions": [str], "probabilities": {str: num}}`.
    """
    raw = source.raw
    event: dict[str, Any] = {"$schema": PREDICTION_CLASSIFICATION_SCHEMA,
                             "meta": _output_meta(source.revision, stream, now)}
    event.update({key: copy.deepcopy(raw[key]) for key in _REPEATED_FIELDS if key in raw})
    event["page"] = _only(raw["page"], _PAGE_FIELDS)
    event["revision"] = _revision(raw["revision"])
    event["performer"] = _only(raw.get("performer") or {}, _USER_FIELDS)
    if isinstance(raw.get("created_redirect_page"), dict):
        event["created_redirect_page"] = _only(raw["created_redirect_page"], _PAGE_FIELDS)
    prior = raw.get("prior_state")
    if isinstance(prior, dict):
        event["prior_state"] = {key: value for key, value in (
            ("page", _only(prior.get("page") or {}, _PAGE_FIELDS)),
            ("revision", _revision(prior.get("revision") or {})),
        ) if value}
    event["predicted_classification"] = classification
    return event


def _output_meta(source: RevisionEvent, stream: str, now: datetime | None) -> dict[str, Any]:
    now = now or datetime.now(UTC)
    meta: dict[str, Any] = {
        "stream": stream,
        "dt": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "id": str(uuid.uuid4()),
    }
    for key in ("domain", "uri", "request_id"):
        if getattr(source, key):
            meta[key] = getattr(source, key)
    return meta


def _only(values: dict[str, Any], keys: tuple[str, ...]) -> dict[str, Any]:
    return {key: copy.deepcopy(values[key]) for key in keys if key in values}


def _revision(revision: dict[str, Any]) -> dict[str, Any]:
    kept = _only(revision, _REVISION_FIELDS)
    if isinstance(kept.get("editor"), dict):
        kept["editor"] = _only(kept["editor"], _USER_FIELDS)
    return kept


class EventGateClient:
    """Posts events to EventGate. Failures are logged and counted, never raised: a prediction stands alone."""

    def __init__(self, settings: EventGateSettings, http: aiohttp.ClientSession) -> None:
        self.settings = settings
        self.http = http
        # Always verify TLS; a private CA bundle (production's internal CA) can be configured.
        self._ssl = ssl.create_default_context(cafile=settings.ca_bundle)

    @property
    def enabled(self) -> bool:
        return bool(self.settings.url)

    async def send(self, event: dict[str, Any]) -> bool:
        stream = event["meta"]["stream"]
        try:
            async with asyncio.timeout(self.settings.timeout_s):
                async with self.http.post(
                    self.settings.url, json=[event], ssl=self._ssl, raise_for_status=False
                ) as response:
                    if response.status >= 300:
                        body = (await response.text())[:300]
                        raise RuntimeError(f"EventGate answered HTTP {response.status}: {body}")
        except Exception as error:  # noqa: BLE001 - any failure to deliver is logged, never fatal
            metrics.EVENTS_FAILED.labels(stream=stream).inc()
            logger.error(
                "Could not send event to EventGate",
                extra={"stream": stream, "rev_id": _rev_id(event), "error": str(error)},
            )
            return False
        metrics.EVENTS_SENT.labels(stream=stream).inc()
        return True


def _rev_id(event: dict[str, Any]) -> Any:
    """revision/score events carry `rev_id` at the top, page-change-shaped ones under `revision`."""
    return event.get("rev_id") or (event.get("revision") or {}).get("rev_id")


def _int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"expected an integer, got {value!r}")
    return value


def _str(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError(f"expected a non-empty string, got {value!r}")
    return value
