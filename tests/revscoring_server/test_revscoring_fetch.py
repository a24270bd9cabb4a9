"""Fetching the MediaWiki documents: which calls, in which order, and the formatversion-1 conversion."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from revscoring_testdata import bad_revids_doc, revision_doc, users_doc

from revscoring_server.fetch import (
    Fetched,
    FetchPlan,
    UnscorableRevision,
    check_readable,
    fetch_dependents,
    fetch_revisions,
    to_formatversion1,
)
from revscoring_server.model_types import Need

EDIT_PLAN = FetchPlan(needs=frozenset({Need.PARENT_REVISION, Need.USER_INFO}), content_models=("wikitext",))
TEXT_PLAN = FetchPlan(needs=frozenset(), content_models=("wikitext",))


def merged(docs: list[dict]) -> dict:
    """One formatversion-2 answer holding every page and badrevids entry of `docs`, as MediaWiki batches."""
    pages: dict[int, dict] = {}
    bad: dict[str, Any] = {}
    for doc in docs:
        for page in doc["query"].get("pages", []):
            pages.setdefault(page["pageid"], {**page, "revisions": []})["revisions"].extend(page["revisions"])
        bad.update(doc["query"].get("badrevids", {}))
    query: dict[str, Any] = {"pages": list(pages.values())} if pages else {}
    if bad:
        query["badrevids"] = bad
    return {"batchcomplete": True, "query": query}


class ScriptedClient:
    """Answers API calls from a table, as MediaWiki would (several ids per call, `continue` when asked to
    split), and records them, with overlap tracking to see concurrency."""

    def __init__(self, revisions: dict[int, dict], delay_s: float = 0.05, per_answer: int = 50) -> None:
        self.revisions = revisions
        self.delay_s = delay_s
        self.per_answer = per_answer  # revisions per answer before MediaWiki says `continue`
        self.calls: list[dict[str, Any]] = []
        self.in_flight = 0
        self.max_in_flight = 0

    async def get(self, **params: Any) -> dict:
        self.calls.append(params)
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            await asyncio.sleep(self.delay_s)
        finally:
            self.in_flight -= 1
        # `prop=revisions` and `list=users` may come in one query: each module is answered as if alone, the
        # users in the first answer only (a continued query repeats only the modules not yet complete).
        doc: dict[str, Any] = {"batchcomplete": True, "query": {}}
        if "revids" in params:
            rev_ids = [int(rev_id) for rev_id in str(params["revids"]).split("|")]
            start = int(params.get("rvcontinue") or 0)
            shown = rev_ids[start : start + self.per_answer]
            doc = merged([self.revisions.get(rev_id) or bad_revids_doc(rev_id) for rev_id in shown])
            if start + self.per_answer < len(rev_ids):
                doc["continue"] = {"rvcontinue": str(start + self.per_answer), "continue": "||users"}
        if params.get("list") == "users" and not params.get("rvcontinue"):
            names = params["ususers"].split("|")
            doc["query"]["users"] = [users_doc(name)["query"]["users"][0] for name in names]
        return doc

    async def query_continued(self, max_docs: int = 100, **params: Any):
        params = dict(params, action="query")
        for _ in range(max_docs):
            doc = await self.get(**params)
            yield doc
            if "continue" not in doc:
                return
            params.update(doc["continue"])


def edits(count: int, first: int = 101) -> dict[int, dict]:
    """`count` edits by two users, each with its parent (its id minus 50)."""
    table = {}
    for rev_id in range(first, first + count):
        user = "Alice" if rev_id % 2 else "Bob"
        table[rev_id] = revision_doc(rev_id, rev_id - 50, f"text {rev_id}", user=user, page_id=rev_id)
        table[rev_id - 50] = revision_doc(rev_id - 50, 0, "old", user=user, page_id=rev_id)
    return table


async def fetch_all(client: ScriptedClient, rev_ids: list[int], plan: FetchPlan) -> dict[int, Any]:
    results = await fetch_revisions(client, "enwiki", rev_ids)
    await fetch_dependents(client, [r for r in results.values() if isinstance(r, Fetched)], plan)
    return results


async def test_a_batch_costs_one_call_for_the_revisions_and_one_for_the_parents_and_users_together():
    client = ScriptedClient(edits(50))
    rev_ids = list(range(101, 151))
    results = await fetch_all(client, rev_ids, EDIT_PLAN)
    assert len(client.calls) == 2, [sorted(call) for call in client.calls]
    assert client.calls[0]["revids"] == "|".join(map(str, rev_ids)) and client.calls[0]["rvslots"] == "main"
    assert "content" in client.calls[0]["rvprop"] and "contentmodel" in client.calls[0]["rvprop"]
    both = client.calls[1]
    assert both["revids"] == "|".join(str(rev_id - 50) for rev_id in rev_ids)
    assert both["prop"] == "revisions" and both["rvprop"] == client.calls[0]["rvprop"]
    assert both["list"] == "users" and sorted(both["ususers"].split("|")) == ["Alice", "Bob"]
    for rev_id in rev_ids:
        docs = results[rev_id].docs
        assert docs.parent_id == rev_id - 50 and docs.user_text == ("Alice" if rev_id % 2 else "Bob")
        # Each revision's documents hold that revision alone, as MediaWiki answers for one id.
        (page,) = docs.revision["query"]["pages"].values()
        assert [r["revid"] for r in page["revisions"]] == [rev_id] and page["pageid"] == rev_id
        (parent_page,) = docs.parent["query"]["pages"].values()
        assert [r["revid"] for r in parent_page["revisions"]] == [rev_id - 50]
        assert [u["name"] for u in docs.user["query"]["users"]] == [docs.user_text]
        assert sorted(docs.calls) == ["parent", "revision", "user"]


async def test_an_answer_split_by_mediawiki_is_continued():
    client = ScriptedClient(edits(5), per_answer=2)
    results = await fetch_all(client, [101, 102, 103, 104, 105], TEXT_PLAN)
    assert len(client.calls) == 3 and client.calls[1]["rvcontinue"] == "2"
    assert all(isinstance(results[rev_id], Fetched) for rev_id in range(101, 106))


async def test_parents_and_users_split_by_mediawiki_are_continued_and_kept_whole():
    client = ScriptedClient(edits(5), per_answer=2)
    results = await fetch_all(client, [101, 102, 103, 104, 105], EDIT_PLAN)
    # 3 answers for the revisions, 3 for the parents with the users (in the first of them only)
    assert len(client.calls) == 6 and [c.get("rvcontinue") for c in client.calls[3:]] == [None, "2", "4"]
    for rev_id in range(101, 106):
        docs = results[rev_id].docs
        (parent_page,) = docs.parent["query"]["pages"].values()
        assert [r["revid"] for r in parent_page["revisions"]] == [rev_id - 50]
        assert docs.user["query"]["users"] == users_doc(docs.user_text)["query"]["users"]


async def test_text_models_fetch_only_the_revisions():
    client = ScriptedClient(edits(3))
    results = await fetch_all(client, [101, 102, 103], TEXT_PLAN)
    assert len(client.calls) == 1 and all(
        r.docs.parent is None and r.docs.user is None for r in results.values()
    )


async def test_page_creations_and_anonymous_edits_skip_the_lookups_that_cannot_exist():
    client = ScriptedClient({7: revision_doc(7, 0, "first", user="192.0.2.1", userid=0)})
    results = await fetch_all(client, [7], EDIT_PLAN)
    assert len(client.calls) == 1 and results[7].docs.calls == ["revision"]


async def test_a_missing_revision_is_an_error_for_it_alone():
    client = ScriptedClient(edits(1))
    results = await fetch_all(client, [999, 101], EDIT_PLAN)
    assert isinstance(results[999], UnscorableRevision) and results[999].error_type == "RevisionNotFound"
    assert "Revision 999 does not exist on enwiki" in results[999].message
    assert isinstance(results[101], Fetched) and results[101].docs.parent_id == 51


async def test_a_deleted_parent_is_reported_as_mediawiki_reports_it():
    table = edits(1)
    del table[51]
    results = await fetch_all(ScriptedClient(table), [101], EDIT_PLAN)
    assert results[101].docs.parent == {"query": {"badrevids": {"51": {"revid": 51, "missing": ""}}}}


def test_hidden_text_is_a_400_naming_texthidden():
    revision = to_formatversion1(revision_doc(5, 4, None))["query"]["pages"]["10"]["revisions"][0]
    with pytest.raises(
        UnscorableRevision, match=r"text of revision 5 on enwiki is deleted or hidden \(texthidden\)"
    ):
        check_readable(revision, 5, "enwiki", ("wikitext",))


def test_content_model_mismatch_is_a_400():
    item = to_formatversion1(revision_doc(5, 4, "{}", content_model="wikibase-item"))["query"]["pages"]["10"]
    with pytest.raises(
        UnscorableRevision, match=r"content model 'wikibase-item'; this model scores 'wikitext'"
    ):
        check_readable(item["revisions"][0], 5, "enwiki", ("wikitext",))
    text = to_formatversion1(revision_doc(6, 4, "text"))["query"]["pages"]["10"]["revisions"][0]
    with pytest.raises(
        UnscorableRevision, match=r"content model 'wikitext'; this model scores 'wikibase-item'"
    ):
        check_readable(text, 6, "wikidatawiki", ("wikibase-item",))


def test_formatversion1_conversion():
    doc = to_formatversion1(revision_doc(5, 4, "Hello", minor=True, anon=False))
    page = doc["query"]["pages"]["10"]
    revision = page["revisions"][0]
    assert revision["slots"]["main"]["*"] == "Hello" and "content" not in revision["slots"]["main"]
    assert revision["minor"] == "" and "anon" not in revision
    assert doc["batchcomplete"] == ""
    hidden = to_formatversion1(revision_doc(5, 4, None, user=None, comment=None))["query"]["pages"]["10"]
    hidden_revision = hidden["revisions"][0]
    assert (
        hidden_revision["slots"]["main"]["texthidden"] == "" and "*" not in hidden_revision["slots"]["main"]
    )
    assert (
        "userhidden" in hidden_revision
        and "commenthidden" in hidden_revision
        and "user" not in hidden_revision
    )
    assert to_formatversion1(bad_revids_doc(9))["query"]["badrevids"] == {"9": {"revid": 9, "missing": ""}}


class WikidataLikeClient(ScriptedClient):
    """Also answers the page-creation, user-contributions and property-suggestion queries."""

    async def get(self, **params: Any) -> dict:
        if params.get("pageids") is not None:
            self.calls.append(params)
            return revision_doc(90, 0, "first", page_id=params["pageids"])
        if params.get("list") == "usercontribs":
            self.calls.append(params)
            return {
                "batchcomplete": True,
                "query": {
                    "usercontribs": [
                        {
                            "userid": 5,
                            "user": "Alice",
                            "revid": 95,
                            "parentid": 94,
                            "timestamp": "2024-01-01T03:04:05Z",
                            "comment": "earlier",
                            "size": 10,
                            "minor": False,
                        }
                    ]
                },
            }
        if params.get("action") == "wbsgetsuggestions":
            self.calls.append(params)
            return {"search": [{"id": "P31"}], "success": 1}
        return await super().get(**params)


async def test_page_creation_last_user_revision_and_suggestions_are_fetched_concurrently():
    plan = FetchPlan(
        needs=frozenset({Need.PAGE_CREATION, Need.USER_LAST_REVISION, Need.PROPERTY_SUGGESTIONS}),
        content_models=("wikitext",),
    )
    client = WikidataLikeClient({101: revision_doc(101, 100, "text", title="Q42")})
    docs = (await fetch_all(client, [101], plan))[101].docs
    assert sorted(docs.calls) == ["last_user_revision", "page_creation", "property_suggestions", "revision"]
    assert docs.page_creation["revid"] == 90  # the revision doc itself, ready for the solve cache
    contribs = next(call for call in client.calls if call.get("list") == "usercontribs")
    assert (
        contribs["ucuser"] == "Alice" and contribs["ucstart"] == "2024-01-02T03:04:04Z"
    )  # one second earlier
    assert docs.entity_id == "Q42" and docs.property_suggestions["search"] == [{"id": "P31"}]
    assert docs.last_user_revision["query"]["usercontribs"][0]["revid"] == 95
