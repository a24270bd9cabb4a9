"""The request contract shared by the predictor and the transformer: parsing and validation.

Every value that ends up in a host name, a URL or an API parameter is checked here first: the language
against the allowlist, titles against the characters MediaWiki forbids in titles (so a title cannot smuggle
a second value into a `|`-separated API parameter), Q-ids against their syntax.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from outlink_server.languages import Wikipedias
from outlink_server.settings import MAX_OUTLINKS
from wikiserve.errors import InvalidRequest
from wikiserve.events import PageChangeEvent, parse_page_change
from wikiserve.validation import (
    exactly_one_of,
    optional_bool,
    optional_float,
    optional_int,
    optional_str,
    parse_body,
    reject_unknown_fields,
    shortened,
)

FIELDS = ("lang", "wiki_id", "page_title", "page_id", "revision_id", "threshold", "debug", "features_str",
          "event")
# With `event` the page comes from the event, and the outlinks from MediaWiki: never from the client, so
# `features_str` beside an event is refused (it would put topics of the client's choosing in the event).
EVENT_FIELDS = ("event",)
DEFAULT_THRESHOLD = 0.5
MAX_TITLE_BYTES = 255  # MediaWiki's limit for a page title, in UTF-8 bytes

# MediaWiki refuses these in titles; `|` would also split an API parameter into two values.
_TITLE_FORBIDDEN = re.compile(r"[#<>\[\]|{}\x00-\x1f\x7f-\x9f\ufffd]|%[0-9A-Fa-f]{2}|~{3}")
# Relative path segments: MediaWiki rejects them, and they would change the article URL's path.
_TITLE_RELATIVE = re.compile(r"^\.\.?(/|$)|/\.\.?(/|$)")
_QIDS = re.compile(r"\s*Q[1-9][0-9]{0,11}(?:\s+Q[1-9][0-9]{0,11})*\s*")


@dataclass(frozen=True)
class OutlinkRequest:
    lang: str
    domain: str  # `<lang>.wikipedia.org`, built only from an allowlisted code
    page_title: str | None
    page_id: int | None
    revision_id: int | None
    threshold: float  # already 0 when `debug` was asked for
    debug: bool
    features: str | None  # Q-ids given by the client (or the transformer), single-space separated
    event: PageChangeEvent | None = None  # the page/change event the request came as

    def forwarded(self, features: str) -> dict[str, Any]:
        """The body the transformer sends the predictor: the same request with the Q-ids filled in."""
        assert self.event is None, "an event is forwarded as it came: the predictor verifies it itself"
        body: dict[str, Any] = {"lang": self.lang, "features_str": features, "debug": self.debug}
        if not self.debug:
            body["threshold"] = self.threshold
        if self.page_id is not None:
            body["page_id"] = self.page_id
        else:
            body["page_title"] = self.page_title
        return body


def parse_request(payload: Any, wikis: Wikipedias) -> OutlinkRequest:
    body = parse_body(payload)
    reject_unknown_fields(body, FIELDS)
    if "event" in body:
        return _event_request(body, wikis)
    lang = _language(body, wikis)
    exactly_one_of(body, "page_title", "page_id")
    title = _title(body)
    page_id = optional_int(body, "page_id")
    revision_id = optional_int(body, "revision_id")
    debug = optional_bool(body, "debug")
    threshold = optional_float(body, "threshold", DEFAULT_THRESHOLD, 0.0, 1.0)
    features = _features(body)
    if features is not None and revision_id is not None:
        raise InvalidRequest("Give either 'features_str' or 'revision_id', not both: "
                             "with 'features_str' no revision is looked up.")
    return OutlinkRequest(lang=lang, domain=wikis.domain(lang), page_title=title, page_id=page_id,
                          revision_id=revision_id, threshold=0.0 if debug else threshold, debug=debug,
                          features=features)


def _event_request(body: dict[str, Any], wikis: Wikipedias) -> OutlinkRequest:
    """`{"event": <mediawiki/page/change 1.x>}`: the topics of the event's page at the event's revision."""
    if "features_str" in body:
        raise InvalidRequest("Give either 'event' or 'features_str', not both: with an event the outlinks "
                             "are read from MediaWiki at the event's revision, never taken from the request.")
    others = sorted(set(body) - set(EVENT_FIELDS))
    if others:
        raise InvalidRequest(f"With 'event' the page and revision come from the event; leave out "
                             f"{', '.join(repr(name) for name in others)}.")
    event = parse_page_change(body["event"])
    source = event.revision
    lang = wikis.lang_of.get(source.database)
    domain = wikis.domain(lang) if lang is not None else None
    only_wikipedia = "the outlink topic model predicts the topics of Wikipedia articles only."
    if lang is None:
        raise InvalidRequest(f"The event is for wiki {source.database!r}, which is not a Wikipedia: "
                             + only_wikipedia)
    if source.domain not in (None, domain):
        raise InvalidRequest(f"The event's domain {shortened(source.domain)} is not a Wikipedia, or not the "
                             f"one of wiki {source.database!r} ({domain}): " + only_wikipedia)
    if source.page_namespace not in (None, 0):
        raise InvalidRequest(f"The event's page {source.page_title!r} is in namespace "
                             f"{source.page_namespace}, not the main (article) namespace 0: only articles "
                             "have topics.")
    title = source.page_title.replace("_", " ")
    if _TITLE_FORBIDDEN.search(title) or _TITLE_RELATIVE.search(title):
        raise InvalidRequest(f"The event's page title {source.page_title!r} is not a valid page title.")
    return OutlinkRequest(lang=lang, domain=domain, page_title=source.page_title, page_id=source.page_id,
                          revision_id=source.rev_id, threshold=DEFAULT_THRESHOLD, debug=False,
                          features=None, event=event)


def _language(body: dict[str, Any], wikis: Wikipedias) -> str:
    lang = optional_str(body, "lang", max_length=64)
    wiki_id = optional_str(body, "wiki_id", max_length=64)
    if lang is None and wiki_id is None:
        raise InvalidRequest("Give the Wikipedia's language as 'lang' (such as \"en\") "
                             "or 'wiki_id' (such as \"enwiki\").")
    if lang is not None and lang not in wikis.dbname_of:
        raise InvalidRequest(f"'lang' must be the language code of a supported Wikipedia (such as \"en\"); "
                             f"{shortened(lang)} is not one.")
    if wiki_id is not None:
        if wiki_id not in wikis.lang_of:
            raise InvalidRequest(f"'wiki_id' must be the id of a supported Wikipedia (such as \"enwiki\"); "
                                 f"{shortened(wiki_id)} is not one.")
        if lang is not None and wikis.lang_of[wiki_id] != lang:
            raise InvalidRequest(f"'lang' {lang!r} and 'wiki_id' {wiki_id!r} name different wikis.")
        lang = wikis.lang_of[wiki_id]
    return lang  # type: ignore[return-value]


def _title(body: dict[str, Any]) -> str | None:
    title = optional_str(body, "page_title", max_length=MAX_TITLE_BYTES)
    if title is None:
        return None
    if len(title.encode("utf-8")) > MAX_TITLE_BYTES:
        raise InvalidRequest(f"'page_title' is longer than {MAX_TITLE_BYTES} bytes.")
    forbidden = _TITLE_FORBIDDEN.search(title)
    if forbidden:
        raise InvalidRequest(f"'page_title' contains {forbidden.group()!r}, which titles cannot contain.")
    if _TITLE_RELATIVE.search(title) or not title.replace("_", " ").strip():
        raise InvalidRequest(f"'page_title' {title!r} is not a valid page title.")
    return title


def _features(body: dict[str, Any]) -> str | None:
    value = body.get("features_str")
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidRequest("'features_str' must be a string of space-separated Wikidata ids (\"Q42 Q5\").")
    if not value.strip():
        return ""  # a page without outlinks: an answer with no topics, not an error
    if not _QIDS.fullmatch(value):
        raise InvalidRequest("'features_str' must hold Wikidata item ids separated by spaces (\"Q42 Q5\").")
    qids = value.split()
    if len(qids) > MAX_OUTLINKS:
        raise InvalidRequest(f"'features_str' holds {len(qids)} ids; at most {MAX_OUTLINKS} are allowed.")
    return " ".join(qids)
