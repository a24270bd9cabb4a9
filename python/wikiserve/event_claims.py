"""An input event's claims, checked against MediaWiki: the one place both model families verify an event.

`verify_revision` asks MediaWiki about the event's revision (its page, redirect flag, parent, time, editor and
the editor's groups), refuses with a 400 an event that MediaWiki contradicts (`events.check_event_claims`,
`events.check_title_claim`), and returns the facts an output event may state (`events.VerifiedRevision`).
"""

from __future__ import annotations

import asyncio
from typing import Any

from wikiserve.errors import InvalidRequest
from wikiserve.events import (
    RevisionEvent,
    VerifiedRevision,
    check_event_claims,
    check_title_claim,
    performer_from_user_info,
    same_title,
)
from wikiserve.mediawiki import MediaWikiClient


async def verify_revision(
    client: MediaWikiClient, claimed: RevisionEvent, dbname: str, domain: str
) -> VerifiedRevision:
    """What MediaWiki reports about `claimed`'s revision on wiki `dbname` (public `domain`), after refusing
    (400, naming the contradiction) an event MediaWiki contradicts. Costs one call, plus one for the editor's
    account and one when the event's title is not the page's title today."""
    doc = await client.get(
        action="query", revids=claimed.rev_id, prop="info|revisions", rvprop="ids|timestamp|user|userid"
    )
    pages = doc.get("query", {}).get("pages") or []
    revisions = pages[0].get("revisions") if pages else None
    if doc.get("query", {}).get("badrevids") or not revisions:
        raise InvalidRequest(
            f"Revision {claimed.rev_id} does not exist on {domain} (any more): the page was deleted after "
            "the event, or the event names a revision that never existed."
        )
    page, revision = pages[0], revisions[0]
    user_text = None if revision.get("userhidden") else revision.get("user")
    user_id = revision.get("userid") or 0
    title_page, user_doc = await asyncio.gather(
        _title_page_id(client, claimed.page_title, page["title"]), _user_doc(client, user_text, user_id)
    )
    verified = VerifiedRevision(
        database=dbname,
        domain=domain,
        rev_id=revision["revid"],
        rev_parent_id=revision.get("parentid") or None,
        rev_timestamp=revision["timestamp"],
        page_id=page["pageid"],
        page_title=page["title"],
        page_namespace=page["ns"],
        page_is_redirect=bool(page.get("redirect")),
        performer=performer_from_user_info(user_text, user_id, user_doc),
    )
    check_event_claims(claimed, verified)
    check_title_claim(claimed, verified, title_page)
    return verified


async def _title_page_id(client: MediaWikiClient, claimed: str, current: str) -> int | None:
    """The page the event's title leads to today (redirects followed), when it is not the page's title."""
    if same_title(claimed, current):
        return None
    doc = await client.get(action="query", titles=claimed, redirects=1)
    pages = doc.get("query", {}).get("pages") or []
    if not pages or pages[0].get("missing") or pages[0].get("invalid"):
        return None
    return pages[0].get("pageid")


async def _user_doc(client: MediaWikiClient, user_text: str | None, user_id: int) -> dict[str, Any] | None:
    """The user's list=users entry (groups, edit count, registration); anonymous editors have none."""
    if not user_text or not user_id:
        return None
    doc = await client.get(
        action="query", list="users", ususers=user_text, usprop="groups|editcount|registration"
    )
    users = doc.get("query", {}).get("users") or []
    return users[0] if users else None
