"""Fetches, with async HTTP, every MediaWiki document a model's features need for one revision.

The result, `ApiDocs`, is plain data (JSON-like dicts) in the shape revscoring's `api.Extractor` expects,
so extraction can run later, anywhere (thread or process), without one HTTP call.

revscoring was written against the Action API's formatversion 1 (text under `*`, flags such as `minor`
present-or-absent, `query.pages` keyed by page id); the shared client speaks formatversion 2, so the docs
are converted (`to_formatversion1`) before they are cached.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from itertools import zip_longest
from typing import Any

from revscoring.extractors.api.util import REV_PROPS, USER_PROPS

from revscoring_server.model_types import Need
from wikiserve.errors import InvalidRequest, MediaWikiError
from wikiserve.mediawiki import MediaWikiClient

# Exactly what revscoring's own extractor asks for (so features match the ones the models were trained
# on; note it does not ask for `flags`, so `minor` is never set), plus the content it needs.
_REVISION_PROPS = sorted(REV_PROPS | {"content"})


class UnscorableRevision(InvalidRequest):
    """A revision that cannot be scored (400 on the KServe route); `error_type` is ORES's name for why
    (revscoring's error classes: RevisionNotFound, TextDeleted, UnexpectedContentType, ...)."""

    def __init__(self, error_type: str, message: str) -> None:
        super().__init__(message)
        self.error_type = error_type

    def __reduce__(self) -> tuple:  # raised in worker processes: must survive pickling
        return (type(self), (self.error_type, self.message))


@dataclass(frozen=True)
class FetchPlan:
    """What to fetch besides the revision: the model type's needs, plus details read from the model."""

    needs: frozenset[Need]
    content_models: tuple[str, ...]
    page_creation_text: bool = False
    last_revision_text: bool = False


@dataclass
class ApiDocs:
    """The API documents for scoring one revision (formatversion-1 shape); plain, picklable data."""

    rev_id: int
    revision: dict[str, Any]  # query doc of prop=revisions&revids=<rev_id>
    parent_id: int | None = None
    parent: dict[str, Any] | None = None  # query doc of the parent revision
    user_text: str | None = None
    user: dict[str, Any] | None = None  # query doc of list=users
    page_creation: dict[str, Any] | None = None  # the page's first revision doc itself
    last_user_revision: dict[str, Any] | None = None  # query doc of list=usercontribs
    entity_id: str | None = None
    property_suggestions: dict[str, Any] | None = None  # wbsgetsuggestions doc
    calls: list[str] = field(default_factory=list)  # which API calls were made, for logs and tests


@dataclass
class Fetched:
    """One revision of a batch as MediaWiki returned it: its documents so far, its page and revision."""

    docs: ApiDocs
    page: dict[str, Any]
    revision: dict[str, Any]


# One MediaWiki call takes up to 50 ids (the API's limit for `revids` and `ususers` without apihighlimits).
IDS_PER_CALL = 50


async def fetch_revisions(
    client: MediaWikiClient, dbname: str, rev_ids: Sequence[int]
) -> dict[int, Fetched | UnscorableRevision]:
    """Every revision of `rev_ids` in one call per 50 ids (continued if MediaWiki splits a large answer).

    A revision MediaWiki does not return gets an UnscorableRevision (RevisionNotFound) instead.
    """
    found = await _revisions_by_id(client, rev_ids)
    results: dict[int, Fetched | UnscorableRevision] = {}
    for rev_id in rev_ids:
        entry = found.get(rev_id)
        if entry is None:
            results[rev_id] = UnscorableRevision(
                "RevisionNotFound",
                f"Revision {rev_id} does not exist on {dbname} (or was deleted): "
                "MediaWiki reports it in 'badrevids'.",
            )
            continue
        page, revision = entry
        docs = ApiDocs(rev_id=rev_id, revision=_single_revision_doc(page, revision), calls=["revision"])
        results[rev_id] = Fetched(docs, page, revision)
    return results


async def fetch_dependents(client: MediaWikiClient, fetched: Sequence[Fetched], plan: FetchPlan) -> None:
    """Everything else `plan` needs for each of `fetched`, into its docs: the parents and the users together
    in one call (per 50 of each), and the rarer per-revision documents concurrently."""
    if not fetched:
        return
    fetches = []
    parents, users = Need.PARENT_REVISION in plan.needs, Need.USER_INFO in plan.needs
    if parents or users:
        fetches.append(_fetch_parents_and_users(client, fetched, parents, users))
    for item in fetched:
        fetches.extend(_per_revision_fetches(client, item, plan))
    if len(fetches) == 1:
        await fetches[0]  # the usual case: no task to create (issue 20)
    else:
        await asyncio.gather(*fetches)


async def _revisions_by_id(
    client: MediaWikiClient, rev_ids: Sequence[int]
) -> dict[int, tuple[dict[str, Any], dict[str, Any]]]:
    """{rev_id: (page, revision)} in formatversion-1 shape, for every revision MediaWiki returned."""
    found: dict[int, tuple[dict[str, Any], dict[str, Any]]] = {}
    for chunk in _chunks(list(dict.fromkeys(rev_ids)), IDS_PER_CALL):
        async for doc in client.query_continued(max_docs=IDS_PER_CALL + 1, **_revisions_query(chunk)):
            _collect_revisions(to_formatversion1(doc), found)
    return found


def _revisions_query(rev_ids: Sequence[int]) -> dict[str, Any]:
    """The query parameters for revisions `rev_ids` with what revscoring reads of them."""
    return {
        "prop": "revisions",
        "revids": "|".join(str(rev_id) for rev_id in rev_ids),
        "rvslots": "main",
        "rvprop": _REVISION_PROPS,
    }


def _collect_revisions(doc: dict[str, Any], found: dict[int, tuple[dict[str, Any], dict[str, Any]]]) -> None:
    for page in (doc.get("query") or {}).get("pages", {}).values():
        for revision in page.get("revisions") or []:
            if isinstance(revision.get("revid"), int):
                found[revision["revid"]] = (page, revision)


def _single_revision_doc(page: dict[str, Any], revision: dict[str, Any]) -> dict[str, Any]:
    """The answer MediaWiki would give for this revision alone (what revscoring reads from its cache)."""
    page_fields = {key: value for key, value in page.items() if key != "revisions"}
    return {"query": {"pages": {str(page.get("pageid")): {**page_fields, "revisions": [revision]}}}}


def _missing_revision_doc(rev_id: int) -> dict[str, Any]:
    """MediaWiki's answer for a revision that is gone: revscoring reports RevisionNotFound from it."""
    return {"query": {"badrevids": {str(rev_id): {"revid": rev_id, "missing": ""}}}}


async def _fetch_parents_and_users(
    client: MediaWikiClient, fetched: Sequence[Fetched], parents: bool, users: bool
) -> None:
    """The parent revisions and the editors' accounts, asked in the same calls (`prop=revisions` and
    `list=users` are two modules of one query: MediaWiki answers each as if asked alone), then split into the
    documents revscoring reads: one MediaWiki call per revision fewer than asking them apart."""
    parent_ids = {item.docs.rev_id: item.revision.get("parentid") or 0 for item in fetched} if parents else {}
    wanted = sorted({parent_id for parent_id in parent_ids.values() if parent_id > 0})
    # Anonymous editors have no account to look up; a hidden user has no name to look up.
    named = [i for i in fetched if users and i.revision.get("user") and i.revision.get("userid", 0) > 0]
    names = sorted({item.revision["user"] for item in named})
    found: dict[int, tuple[dict[str, Any], dict[str, Any]]] = {}
    accounts: dict[str, dict[str, Any]] = {}
    for rev_ids, usernames in zip_longest(_chunks(wanted, IDS_PER_CALL), _chunks(names, IDS_PER_CALL)):
        params: dict[str, Any] = _revisions_query(rev_ids) if rev_ids else {}
        if usernames:
            params.update(list="users", ususers="|".join(usernames), usprop=sorted(USER_PROPS))
        async for doc in client.query_continued(max_docs=IDS_PER_CALL + 1, **params):
            doc = to_formatversion1(doc)
            _collect_revisions(doc, found)
            for account in (doc.get("query") or {}).get("users") or []:
                accounts[account.get("name")] = account
    for item in fetched:
        parent_id = parent_ids.get(item.docs.rev_id, 0)
        if parent_id > 0:
            item.docs.parent_id = parent_id
            # A deleted parent: revscoring then reports RevisionNotFound, as with MediaWiki's own answer.
            entry = found.get(parent_id)
            item.docs.parent = _single_revision_doc(*entry) if entry else _missing_revision_doc(parent_id)
            item.docs.calls.append("parent")
    for item in named:
        name = item.revision["user"]
        item.docs.user_text = name
        item.docs.user = {"query": {"users": [accounts.get(name, {"name": name, "missing": ""})]}}
        item.docs.calls.append("user")


def _per_revision_fetches(client: MediaWikiClient, item: Fetched, plan: FetchPlan) -> list:
    """The documents MediaWiki cannot answer for several revisions in one call."""
    fetches = []
    user_text = item.revision.get("user")
    if Need.PAGE_CREATION in plan.needs:
        fetches.append(_fetch_page_creation(client, item.docs, item.page["pageid"], plan.page_creation_text))
    if Need.USER_LAST_REVISION in plan.needs and user_text:
        fetches.append(
            _fetch_last_user_revision(
                client, item.docs, user_text, item.revision["timestamp"], plan.last_revision_text
            )
        )
    if Need.PROPERTY_SUGGESTIONS in plan.needs:
        fetches.append(_fetch_property_suggestions(client, item.docs, item.page["title"]))
    return fetches


def _chunks(values: list, size: int) -> list[list]:
    return [values[start : start + size] for start in range(0, len(values), size)]


def merge_plans(plans: Iterable[FetchPlan]) -> FetchPlan:
    """One plan fetching what any of `plans` needs: several models of one revision share one fetch."""
    plans = list(plans)
    return FetchPlan(
        needs=frozenset().union(*(plan.needs for plan in plans)),
        content_models=tuple(dict.fromkeys(model for plan in plans for model in plan.content_models)),
        page_creation_text=any(plan.page_creation_text for plan in plans),
        last_revision_text=any(plan.last_revision_text for plan in plans),
    )


async def _fetch_page_creation(client: MediaWikiClient, docs: ApiDocs, page_id: int, text: bool) -> None:
    props = sorted(REV_PROPS | {"content"}) if text else sorted(REV_PROPS)
    doc = to_formatversion1(
        await client.get(
            action="query",
            prop="revisions",
            pageids=page_id,
            rvdir="newer",
            rvlimit=1,
            rvslots="main",
            rvprop=props,
        )
    )
    pages = list(doc.get("query", {}).get("pages", {}).values())
    revisions = pages[0].get("revisions", []) if pages else []
    docs.page_creation = revisions[0] if revisions else None
    docs.calls.append("page_creation")


async def _fetch_last_user_revision(
    client: MediaWikiClient, docs: ApiDocs, user_text: str, timestamp: str, text: bool
) -> None:
    # The edit before this one: start one second earlier, as revscoring's own query does.
    start = datetime.strptime(timestamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC) - timedelta(seconds=1)
    props = ["ids", "timestamp", "comment", "size", "flags", "title"]
    docs.user_text = user_text
    docs.last_user_revision = to_formatversion1(
        await client.get(
            action="query",
            list="usercontribs",
            ucuser=user_text,
            uclimit=1,
            ucdir="older",
            ucstart=start.strftime("%Y-%m-%dT%H:%M:%SZ"),
            ucprop=props + (["content"] if text else []),
        )
    )
    docs.calls.append("last_user_revision")


async def _fetch_property_suggestions(client: MediaWikiClient, docs: ApiDocs, entity_id: str) -> None:
    """Wikidata's WikibaseSuggester. A wiki without it rejects the action (`unknown_action`, or `badvalue`
    for the `action` parameter on current MediaWiki): that is a 502 naming the API (the upstream cannot
    serve this model), not a client error and not a silently wrong score."""
    docs.entity_id = entity_id
    try:
        docs.property_suggestions = await client.get(
            action="wbsgetsuggestions", entity=entity_id, include="all", limit=50
        )
    except MediaWikiError as error:
        if "'unknown_action'" in error.message or (
            "'badvalue'" in error.message and "action" in error.message
        ):
            raise MediaWikiError(
                f"{error.message} (property suggestions need the WikibaseSuggester extension on the wiki)",
                kind="unsupported_action",
            ) from None
        raise
    docs.calls.append("property_suggestions")


def check_readable(
    revision: dict[str, Any], rev_id: int, dbname: str, content_models: tuple[str, ...]
) -> None:
    """UnscorableRevision when the revision's text is hidden or not in one of `content_models`."""
    main = (revision.get("slots") or {}).get("main") or {}
    if "texthidden" in main or "texthidden" in revision:
        raise UnscorableRevision(
            "TextDeleted",
            f"The text of revision {rev_id} on {dbname} is deleted or hidden "
            "(texthidden); it cannot be scored.",
        )
    content_model = main.get("contentmodel")
    if content_model not in content_models:
        raise UnscorableRevision(
            "UnexpectedContentType",
            f"Revision {rev_id} on {dbname} has content model {content_model!r}; this model scores "
            f"{' or '.join(repr(model) for model in content_models)} content only.",
        )


def to_formatversion1(doc: Any) -> Any:
    """Converts an Action API formatversion-2 answer to the formatversion-1 shape revscoring reads.

    `query.pages` becomes a dict keyed by page id, slot text moves from `content` to `*`, and boolean
    flags (`minor`, `anon`, `texthidden`, `userhidden`, `commenthidden`, `missing`, ...) become
    present-with-"" when true and absent when false.
    """
    if isinstance(doc, list):
        return _list_to_formatversion1(doc)
    if isinstance(doc, dict):
        return _dict_to_formatversion1(doc)
    return doc


# Two answers per scored edit go through here on the event loop: scalars are copied without a call (issue 20).
def _list_to_formatversion1(items: list[Any]) -> list[Any]:
    return [
        _dict_to_formatversion1(item) if type(item) is dict
        else _list_to_formatversion1(item) if type(item) is list
        else item
        for item in items
    ]


def _dict_to_formatversion1(doc: dict[str, Any]) -> dict[str, Any]:
    converted: dict[str, Any] = {}
    for key, value in doc.items():
        kind = type(value)
        if kind is dict:
            converted[key] = _dict_to_formatversion1(value)
        elif kind is list:
            if key == "pages":
                converted[key] = {
                    str(page.get("pageid", -index)): to_formatversion1(page)
                    for index, page in enumerate(value, start=1)
                }
            else:
                converted[key] = _list_to_formatversion1(value)
        elif kind is bool:
            if value:
                converted[key] = ""
        elif key == "content" and kind is str:
            converted["*"] = value
        else:
            converted[key] = value
    return converted
