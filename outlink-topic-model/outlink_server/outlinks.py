"""Fetching a page's outlinks from the MediaWiki Action API, as the Wikidata items they point to.

Outlinks are the page's links to existing articles (namespace 0), redirects followed, each mapped to its
`wikibase_item` page prop; links to pages without an item do not count. At most `max_outlinks` are kept.
A page (or revision) without any is an answer, not an error: its list is empty.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import re
from collections.abc import Iterable
from urllib.parse import quote

from outlink_server.request import OutlinkRequest
from outlink_server.settings import OutlinkSettings
from wikiserve.errors import InvalidRequest, MediaWikiError
from wikiserve.event_claims import verify_revision
from wikiserve.events import VerifiedRevision
from wikiserve.mediawiki import MediaWikiClient

TITLES_PER_CALL = 50  # the Action API's limit of titles per query for anonymous clients
MAX_TITLES_PARAM_BYTES = 4000  # keeps GET URLs well below the 8 KB that proxies commonly accept
MAX_LINKS_SCANNED = 25_000  # bounds the continuation loop for pages with huge numbers of red links
PARALLEL_BATCHES = 4
QID = re.compile(r"Q[1-9][0-9]*")  # the predictor accepts nothing else in features_str


async def fetch_outlinks(client: MediaWikiClient, request: OutlinkRequest,
                         settings: OutlinkSettings) -> list[str]:
    """The Q-ids of the page's (or revision's) outlinks, ordered by linked title (empty when it links to no
    article with an item); raises InvalidRequest when the page or revision does not exist."""
    if request.revision_id is not None:
        return await _revision_outlinks(client, request, settings)
    return await _current_outlinks(client, request, settings)


async def verify_event(client: MediaWikiClient, request: OutlinkRequest, dbname: str) -> VerifiedRevision:
    """What MediaWiki reports about the event's revision, after refusing (400) an event it contradicts."""
    assert request.event is not None
    return await verify_revision(client, request.event.revision, dbname, request.domain)


def _page_param(request: OutlinkRequest) -> dict[str, str | int]:
    if request.page_id is not None:
        return {"pageids": request.page_id}
    return {"titles": request.page_title or ""}


async def _current_outlinks(client: MediaWikiClient, request: OutlinkRequest,
                            settings: OutlinkSettings) -> list[str]:
    per_call = 500 if settings.links_per_call == "max" else int(settings.links_per_call)
    params = {
        "generator": "links", "gplnamespace": 0, "gpllimit": settings.links_per_call,
        "prop": "pageprops", "ppprop": "wikibase_item", "redirects": 1, **_page_param(request),
    }
    qid_of: dict[str, str] = {}
    pages = client.query_continued(max_docs=math.ceil(MAX_LINKS_SCANNED / per_call), **params)
    async with contextlib.aclosing(pages):  # closed at once when the cap is reached
        async for doc in pages:
            qid_of.update(_qids_of_pages(doc))
            if len(qid_of) >= settings.max_outlinks:
                break
    if not qid_of:
        await _check_page_exists(client, request)
    return _first(qid_of, settings.max_outlinks)


def _qids_of_pages(doc: dict) -> dict[str, str]:
    found = {}
    for page in doc.get("query", {}).get("pages", []):
        qid = (page.get("pageprops") or {}).get("wikibase_item")
        if qid and QID.fullmatch(qid) and not page.get("missing"):
            found[page["title"]] = qid
    return found


def _first(qid_of: dict[str, str], limit: int) -> list[str]:
    """Sorted by linked title: the API's order, and the same list whatever the batching was."""
    return [qid_of[title] for title in sorted(qid_of)[:limit]]


async def _check_page_exists(client: MediaWikiClient, request: OutlinkRequest) -> None:
    """No outlinks found: a 400 if that is because the page does not exist (the generator says nothing)."""
    doc = await client.get(action="query", redirects=1, **_page_param(request))
    pages = doc.get("query", {}).get("pages", [])
    page_name = f"page {request.page_title!r}" if request.page_id is None else f"page id {request.page_id}"
    if not pages or pages[0].get("missing") or pages[0].get("invalid"):
        raise InvalidRequest(f"The {page_name} does not exist on {request.domain}.")


async def _revision_outlinks(client: MediaWikiClient, request: OutlinkRequest,
                             settings: OutlinkSettings) -> list[str]:
    parsed = await _parse_links(client, request)
    _check_revision_page(request, parsed)
    titles = list(dict.fromkeys(link["title"] for link in parsed.get("links", [])
                                if link.get("ns") == 0 and link.get("exists")))
    qid_of: dict[str, str] = {}
    limit = asyncio.Semaphore(PARALLEL_BATCHES)

    async def lookup(batch: list[str]) -> None:
        async with limit:
            if len(qid_of) < settings.max_outlinks:
                qid_of.update(await _qids_of_titles(client, batch))

    # Every batch finishes (each call is bounded by the client's timeout) before the first failure is raised.
    lookups = (lookup(batch) for batch in title_batches(titles))
    outcomes = await asyncio.gather(*lookups, return_exceptions=True)
    for outcome in outcomes:
        if isinstance(outcome, BaseException):
            raise outcome
    return _first(qid_of, settings.max_outlinks)


async def _parse_links(client: MediaWikiClient, request: OutlinkRequest) -> dict:
    """The links of one revision as MediaWiki's parser sees them (only `action=parse` gives those)."""
    try:
        doc = await client.get(action="parse", oldid=request.revision_id, prop="links")
    except (InvalidRequest, MediaWikiError) as error:
        # Both codes are facts about the revision, not outages: the client gets a 400 saying which.
        if error.api_code not in ("nosuchrevid", "permissiondenied"):
            raise
        if error.api_code == "nosuchrevid" and request.event is not None:
            raise InvalidRequest(f"Revision {request.revision_id} of page {request.page_title!r} does not "
                                 f"exist on {request.domain} (any more): the page was deleted after the "
                                 "event, or the event names a revision that never existed.") from None
        if error.api_code == "nosuchrevid":
            raise InvalidRequest(f"Revision {request.revision_id} does not exist on {request.domain}.") \
                from None
        raise InvalidRequest(f"The text of revision {request.revision_id} on {request.domain} is hidden "
                             "(deleted), so its links cannot be read.") from None
    return doc.get("parse", {})


def _check_revision_page(request: OutlinkRequest, parsed: dict) -> None:
    """The revision must belong to the page the request names, or the answer would describe another page."""
    if request.page_id is not None:
        matches = parsed.get("pageid") == request.page_id
        named = f"page id {request.page_id}"
    else:
        matches = _comparable(parsed.get("title", "")) == _comparable(request.page_title or "")
        named = f"page {request.page_title!r}"
    if not matches:
        raise InvalidRequest(f"Revision {request.revision_id} belongs to {parsed.get('title')!r} "
                             f"(page id {parsed.get('pageid')}), not to the {named}.")


def _comparable(title: str) -> str:
    """Titles compare like MediaWiki does on Wikipedia: '_' is ' ', the first letter is case-insensitive."""
    title = " ".join(title.replace("_", " ").split())
    return title[:1].upper() + title[1:]


def title_batches(titles: Iterable[str]) -> Iterable[list[str]]:
    """Groups titles for `titles=` within the API's count limit and a bounded URL length."""
    batch: list[str] = []
    size = 0
    for title in titles:
        encoded = len(quote(title, safe="")) + 3  # + the encoded '|' separator
        if batch and (len(batch) == TITLES_PER_CALL or size + encoded > MAX_TITLES_PARAM_BYTES):
            yield batch
            batch, size = [], 0
        batch.append(title)
        size += encoded
    if batch:
        yield batch


async def _qids_of_titles(client: MediaWikiClient, titles: list[str]) -> dict[str, str]:
    found: dict[str, str] = {}
    async for doc in client.query_continued(max_docs=10, titles="|".join(titles), prop="pageprops",
                                            ppprop="wikibase_item", redirects=1):
        found.update(_qids_of_pages(doc))
    return found
