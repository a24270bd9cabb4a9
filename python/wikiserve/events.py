"""Event input and output: the Event Platform side of the model servers.

Input: `mediawiki/revision/create` (1.x, 2.x) and `mediawiki/page/change` (1.x) events name the revision to
score. An input event is a claim, never a fact: it is checked against its schema before anything is read from
it (`wikiserve.event_schema`), its claims are checked against what MediaWiki reports (`check_event_claims`),
and nothing of it is repeated in an output event.

Output: a `mediawiki/revision/score` 2.0.0 event (revscoring) or a
`mediawiki/page/prediction_classification_change` 1.0.0 event (the outlink topic model, from page/change
input), posted to EventGate when it is configured, built only from a `VerifiedRevision` (what MediaWiki
reports about the revision), the model's wiki and what the server computed. docs/failure-modes.md ("Events
are claims") lists every output field and where it comes from.
"""

from __future__ import annotations

import asyncio
import logging
import re
import ssl
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import aiohttp

from wikiserve import metrics
from wikiserve.config import EventGateSettings
from wikiserve.errors import InvalidRequest
from wikiserve.event_schema import SCHEMA_FILES, check_event, is_date_time
from wikiserve.validation import shortened

logger = logging.getLogger(__name__)

REVISION_SCORE_SCHEMA = "/mediawiki/revision/score/2.0.0"
PREDICTION_CLASSIFICATION_SCHEMA = "/mediawiki/page/prediction_classification_change/1.0.0"
_SCHEMA_PATTERN = re.compile(
    r"/?(mediawiki/revision/create|mediawiki/page/change)/(\d{1,3})\.\d{1,3}\.\d{1,3}")
SUPPORTED_SCHEMAS = frozenset(SCHEMA_FILES)
MAX_ID = 2**53 - 1  # the schemas' bound for every id (JSON numbers exact in every client)
MAX_TITLE_BYTES = 512  # MediaWiki's 255-byte limit, plus a namespace prefix
_DBNAME = re.compile(r"[a-z][a-z0-9_]{0,63}")
_DOMAIN = re.compile(r"[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?")
# Characters MediaWiki leaves unescaped in article URLs (its wfUrlencode); everything else is %-encoded.
_URL_SAFE = ";@$!*(),/~:"


@dataclass(frozen=True)
class RevisionEvent:
    """What an input event claims about the revision to score: checked against its schema and bounded, but
    still a claim until `check_event_claims` has compared it with MediaWiki."""

    database: str
    rev_id: int
    page_id: int
    page_title: str
    page_namespace: int | None  # page/change 1.x may leave it out
    page_is_redirect: bool
    rev_timestamp: str
    domain: str | None = None  # meta.domain
    rev_parent_id: int | None = None


@dataclass(frozen=True)
class VerifiedRevision:
    """What MediaWiki reports about the scored revision (never what an event claimed)."""

    database: str  # the model's wiki dbname
    domain: str  # the model's wiki's public domain (from the service table)
    rev_id: int
    rev_parent_id: int | None
    rev_timestamp: str  # ISO 8601 as MediaWiki gives it (e.g. 2024-01-01T00:00:00Z)
    page_id: int
    page_title: str  # with spaces, as MediaWiki's API returns it
    page_namespace: int
    page_is_redirect: bool
    # revision/score 2.0.0's performer, from MediaWiki's list=users (None for a hidden user)
    performer: dict[str, Any] | None


def parse_event(event: Any) -> RevisionEvent:
    """Reads an input event: its schema must be supported and the event valid against it (types, required
    fields, sizes), and the fields read are bounded further; anything else is a 400 naming the field."""
    if not isinstance(event, dict):
        raise InvalidRequest("'event' must be a JSON object.")
    schema = event.get("$schema")
    match = _SCHEMA_PATTERN.fullmatch(schema) if isinstance(schema, str) else None
    if match is None or (match.group(1), int(match.group(2))) not in SUPPORTED_SCHEMAS:
        shown = shortened(schema) if isinstance(schema, str) else repr(schema)[:40]
        raise InvalidRequest(
            f"Unsupported event schema in 'event.$schema': {shown}; expected mediawiki/revision/create 1.x "
            "or 2.x, or mediawiki/page/change 1.x."
        )
    name = match.group(1)
    check_event(event, name, int(match.group(2)))
    if name == "mediawiki/page/change":
        return _from_page_change(event)
    return _from_revision_create(event)


def _from_revision_create(event: dict[str, Any]) -> RevisionEvent:
    return RevisionEvent(
        database=_dbname(event["database"], "event.database"),
        rev_id=_id(event["rev_id"], "event.rev_id"),
        page_id=_id(event["page_id"], "event.page_id"),
        page_title=_title(event["page_title"], "event.page_title"),
        page_namespace=event["page_namespace"],
        page_is_redirect=event["page_is_redirect"],  # the schema made sure it is a boolean
        rev_timestamp=event["rev_timestamp"],
        domain=_domain(event["meta"].get("domain"), "event.meta.domain"),
        rev_parent_id=_optional_id(event.get("rev_parent_id"), "event.rev_parent_id"),
    )


def _from_page_change(event: dict[str, Any]) -> RevisionEvent:
    page, revision = event["page"], event["revision"]
    return RevisionEvent(
        database=_dbname(event["wiki_id"], "event.wiki_id"),
        rev_id=_id(revision["rev_id"], "event.revision.rev_id"),
        page_id=_id(page["page_id"], "event.page.page_id"),
        page_title=_title(page["page_title"], "event.page.page_title"),
        page_namespace=page.get("namespace_id"),
        page_is_redirect=page.get("is_redirect", False),
        rev_timestamp=revision["rev_dt"],
        domain=_domain(event["meta"].get("domain"), "event.meta.domain"),
        rev_parent_id=_optional_id(revision.get("rev_parent_id"), "event.revision.rev_parent_id"),
    )


def _id(value: int, path: str) -> int:
    if not 1 <= value <= MAX_ID:
        raise InvalidRequest(f"'{path}' must be between 1 and {MAX_ID}.")
    return value


def _optional_id(value: int | None, path: str) -> int | None:
    return None if not value else _id(value, path)  # 0: no parent (a page's first revision)


def _dbname(value: str, path: str) -> str:
    if not _DBNAME.fullmatch(value):
        raise InvalidRequest(f"'{path}' must be a wiki id such as \"enwiki\", not {shortened(value)}.")
    return value


def _domain(value: str | None, path: str) -> str | None:
    if value is not None and not _DOMAIN.fullmatch(value):
        raise InvalidRequest(f"'{path}' must be a domain such as \"en.wikipedia.org\", "
                             f"not {shortened(value)}.")
    return value


def _title(value: str, path: str) -> str:
    if not value.strip() or len(value.encode("utf-8")) > MAX_TITLE_BYTES:
        raise InvalidRequest(f"'{path}' must be a page title of 1 to {MAX_TITLE_BYTES} bytes.")
    if any(ord(char) < 32 or ord(char) == 127 for char in value):
        raise InvalidRequest(f"'{path}' contains control characters.")
    return value


def same_title(first: str, second: str) -> bool:
    """Titles as events give them (underscores) and as the API gives them (spaces) name the same page."""
    return first.replace("_", " ").strip() == second.replace("_", " ").strip()


def check_event_claims(event: RevisionEvent, verified: VerifiedRevision) -> None:
    """Refuses (400, naming the contradiction) an event whose claims MediaWiki contradicts: another wiki,
    another page, a revision of another page, another namespace. The page id decides: a page renamed or moved
    since the event (same id, another title) is not a contradiction."""
    if event.database != verified.database:
        raise InvalidRequest(f"The event is for wiki {shortened(event.database)}, but this model scores "
                             f"{verified.database!r}.")
    if event.domain is not None and event.domain != verified.domain:
        raise InvalidRequest(f"The event's meta.domain {shortened(event.domain)} is not the domain of wiki "
                             f"{verified.database!r} ({verified.domain}).")
    if event.rev_id != verified.rev_id:
        raise InvalidRequest(f"The event names revision {event.rev_id}, but revision {verified.rev_id} was "
                             "looked up.")
    actual = f"page id {verified.page_id} ({verified.page_title!r})"
    if event.page_id != verified.page_id:
        if same_title(event.page_title, verified.page_title):
            raise InvalidRequest(f"The event gives page title {verified.page_title!r} with page id "
                                 f"{event.page_id}, but on {verified.domain} that title is {actual}.")
        raise InvalidRequest(f"Revision {verified.rev_id} on {verified.domain} belongs to {actual}, not to "
                             f"the event's page id {event.page_id}.")
    if (event.page_namespace is not None and event.page_namespace != verified.page_namespace
            and same_title(event.page_title, verified.page_title)):
        # A namespace that changed with the title is a move; one that changed alone is a false claim.
        raise InvalidRequest(f"The event puts {actual} in namespace {event.page_namespace}, but on "
                             f"{verified.domain} it is in namespace {verified.page_namespace}.")


def check_title_claim(event: RevisionEvent, verified: VerifiedRevision, title_page_id: int | None) -> None:
    """When the event's title is not the page's title now: `title_page_id` is the page that title leads to
    today (redirects followed; None when it does not exist). A title leading to the event's page (the
    redirect a move leaves) or to nothing (a move without one) is a rename; one leading to another page is a
    title given with another page's id."""
    if same_title(event.page_title, verified.page_title):
        return
    if title_page_id is not None and title_page_id != verified.page_id:
        raise InvalidRequest(f"The event gives page title {shortened(event.page_title)} with page id "
                             f"{event.page_id}, but on {verified.domain} that title is page id "
                             f"{title_page_id}; page id {verified.page_id} is {verified.page_title!r}.")


def performer_from_user_info(user_text: str | None, user_id: int | None,
                             user_doc: dict[str, Any] | None) -> dict[str, Any] | None:
    """revision/score 2.0.0's performer for a revision's user, from MediaWiki: `user_text` and `user_id` as
    the revision reports them, `user_doc` the user's entry in a `list=users` answer (usprop
    groups|editcount|registration; formatversion 1 or 2). None when the revision hides its user."""
    if not user_text:
        return None
    doc = user_doc if isinstance(user_doc, dict) and _doc_names(user_doc, user_text) else {}
    registered = bool(user_id) and not _flag(doc, "missing") and not _flag(doc, "invalid")
    groups = [group for group in doc.get("groups") or () if isinstance(group, str)] if registered else []
    performer: dict[str, Any] = {
        "user_text": user_text,
        "user_groups": groups or ["*"],  # an anonymous editor belongs to '*' only
        "user_is_bot": "bot" in groups,
    }
    if registered:
        performer["user_id"] = user_id
        if isinstance(doc.get("editcount"), int) and not isinstance(doc["editcount"], bool):
            performer["user_edit_count"] = doc["editcount"]
        registration = doc.get("registration")
        if isinstance(registration, str) and is_date_time(registration):
            performer["user_registration_dt"] = registration
    return performer


def _doc_names(doc: dict[str, Any], user_text: str) -> bool:
    name = doc.get("name")
    return isinstance(name, str) and same_title(name, user_text)


def _flag(doc: dict[str, Any], name: str) -> bool:
    """formatversion 2 gives a boolean flag as `true`, formatversion 1 as an empty string."""
    return doc.get(name) is True or doc.get(name) == ""


def page_uri(domain: str, title: str) -> str:
    """The article's URL on its public domain (`https://en.wikipedia.org/wiki/Main_Page`)."""
    return f"https://{domain}/wiki/{quote(title.strip().replace(' ', '_'), safe=_URL_SAFE)}"


def _db_key(title: str) -> str:
    """Events name pages by MediaWiki's DB key (underscores), the API by its text form (spaces)."""
    return title.replace(" ", "_")


def revision_score_event(verified: VerifiedRevision, stream: str,
                         scores: dict[str, dict[str, Any]], now: datetime | None = None) -> dict[str, Any]:
    """A `mediawiki/revision/score` 2.0.0 event, built only from `verified` and the computed `scores`.

    `scores` maps model name to
    `{"model_name", "model_version", "prediction": [str], "probability": {str: number}}`. meta.request_id is
    left out: the client's request id is not MediaWiki's, and the event's own meta.id identifies it.
    """
    meta = _output_meta(stream, now)
    meta.update(domain=verified.domain, uri=page_uri(verified.domain, verified.page_title))
    event: dict[str, Any] = {
        "$schema": REVISION_SCORE_SCHEMA,
        "meta": meta,
        "database": verified.database,
        "page_id": verified.page_id,
        "page_title": _db_key(verified.page_title),
        "page_namespace": verified.page_namespace,
        "page_is_redirect": verified.page_is_redirect,
        "rev_id": verified.rev_id,
        "rev_timestamp": verified.rev_timestamp,
        "scores": scores,
    }
    if verified.rev_parent_id:
        event["rev_parent_id"] = verified.rev_parent_id
    if verified.performer:
        event["performer"] = dict(verified.performer)
    return event


@dataclass(frozen=True)
class PageChangeEvent:
    """A `mediawiki/page/change` 1.x event whose revision has content to predict from."""

    revision: RevisionEvent
    kind: str  # page_change_kind
    raw: dict[str, Any]  # as received: what the transformer forwards to the predictor (never repeated)


def parse_page_change(event: Any) -> PageChangeEvent:
    """Reads a page/change event, refusing with a 400 naming why those without content to predict from:
    deletes and revisions whose content is hidden (a visibility change)."""
    revision = parse_event(event)
    if not str(event["$schema"]).lstrip("/").startswith("mediawiki/page/change/"):
        raise InvalidRequest("Expected a mediawiki/page/change 1.x event, not "
                             f"{shortened(event['$schema'])}.")
    kind = event["page_change_kind"]  # required and one of the schema's enum
    if kind == "delete" or event["changelog_kind"] == "delete":
        raise InvalidRequest(f"The event deletes page {revision.page_title!r} ({revision.database}): a "
                             "deleted page has no content to predict from, so no prediction is made.")
    if event["revision"].get("is_content_visible") is False:
        raise InvalidRequest(f"The content of revision {revision.rev_id} ({revision.database}) is hidden "
                             f"(page_change_kind {kind!r}), so no prediction is made from it.")
    return PageChangeEvent(revision=revision, kind=kind, raw=event)


def prediction_classification_event(verified: VerifiedRevision, stream: str, classification: dict[str, Any],
                                    now: datetime | None = None) -> dict[str, Any]:
    """A `mediawiki/page/prediction_classification_change` 1.0.0 event about `verified`'s revision, built
    only from `verified` (MediaWiki's facts), the request's wiki and the computed `classification`
    (`{"model_name", "model_version", "predictions": [str], "probabilities": {str: num}}`).

    The change is described as MediaWiki records it: a page's first revision is a `create` (`insert`), any
    other an `edit` (`update`), at the revision's time."""
    first = not verified.rev_parent_id
    meta = _output_meta(stream, now)
    meta.update(domain=verified.domain, uri=page_uri(verified.domain, verified.page_title))
    revision: dict[str, Any] = {"rev_id": verified.rev_id, "rev_dt": verified.rev_timestamp}
    if verified.rev_parent_id:
        revision["rev_parent_id"] = verified.rev_parent_id
    event: dict[str, Any] = {
        "$schema": PREDICTION_CLASSIFICATION_SCHEMA,
        "meta": meta,
        "wiki_id": verified.database,
        "dt": verified.rev_timestamp,
        "page_change_kind": "create" if first else "edit",
        "changelog_kind": "insert" if first else "update",
        "page": {"page_id": verified.page_id, "page_title": _db_key(verified.page_title),
                 "namespace_id": verified.page_namespace, "is_redirect": verified.page_is_redirect},
        "revision": revision,
        "performer": page_change_performer(verified.performer),
        "predicted_classification": classification,
    }
    return event


def page_change_performer(performer: dict[str, Any] | None) -> dict[str, Any]:
    """page/change names the performer's fields differently from revision/score; a hidden user: {}."""
    if not performer:
        return {}
    renamed = {"user_text": "user_text", "user_id": "user_id", "user_groups": "groups",
               "user_is_bot": "is_bot", "user_registration_dt": "registration_dt",
               "user_edit_count": "edit_count"}
    return {target: performer[source] for source, target in renamed.items() if source in performer}


def _output_meta(stream: str, now: datetime | None) -> dict[str, Any]:
    now = now or datetime.now(UTC)
    return {"stream": stream, "dt": now.strftime("%Y-%m-%dT%H:%M:%SZ"), "id": str(uuid.uuid4())}


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
