"""Fetching the MediaWiki documents: which calls, in which order, and the formatversion-1 conversion."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from revscoring_testdata import bad_revids_doc, revision_doc, users_doc

from revscoring_server.fetch import FetchPlan, fetch_docs, to_formatversion1
from revscoring_server.model_types import Need
from wikiserve.errors import InvalidRequest

EDIT_PLAN = FetchPlan(needs=frozenset({Need.PARENT_REVISION, Need.USER_INFO}), content_models=("wikitext",))
TEXT_PLAN = FetchPlan(needs=frozenset(), content_models=("wikitext",))


class ScriptedClient:
    """Answers API calls from a table and records them, with overlap tracking to see concurrency."""

    def __init__(self, revisions: dict[int, dict], delay_s: float = 0.05) -> None:
        self.revisions = revisions
        self.delay_s = delay_s
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
        if params.get("list") == "users":
            return users_doc(params["ususers"])
        return self.revisions.get(params["revids"]) or bad_revids_doc(params["revids"])


async def test_edit_models_fetch_revision_then_parent_and_user_concurrently():
    client = ScriptedClient({101: revision_doc(101, 100, "new text"), 100: revision_doc(100, 0, "old")})
    docs = await fetch_docs(client, "enwiki", 101, EDIT_PLAN)
    assert client.calls[0]["revids"] == 101 and client.calls[0]["rvslots"] == "main"
    assert "content" in client.calls[0]["rvprop"] and "contentmodel" in client.calls[0]["rvprop"]
    assert {call.get("revids") or call.get("ususers") for call in client.calls[1:]} == {100, "Alice"}
    assert client.max_in_flight == 2  # parent and user were in flight together
    assert docs.parent_id == 100 and docs.user_text == "Alice"
    assert sorted(docs.calls) == ["parent", "revision", "user"]


async def test_text_models_fetch_only_the_revision():
    client = ScriptedClient({101: revision_doc(101, 100, "text")})
    docs = await fetch_docs(client, "enwiki", 101, TEXT_PLAN)
    assert len(client.calls) == 1 and docs.parent is None and docs.user is None


async def test_page_creations_and_anonymous_edits_skip_the_lookups_that_cannot_exist():
    client = ScriptedClient({7: revision_doc(7, 0, "first", user="192.0.2.1", userid=0)})
    docs = await fetch_docs(client, "enwiki", 7, EDIT_PLAN)
    assert len(client.calls) == 1 and docs.calls == ["revision"]


async def test_unknown_revision_is_a_400_naming_badrevids():
    with pytest.raises(InvalidRequest, match=r"Revision 999 does not exist on enwiki.*badrevids"):
        await fetch_docs(ScriptedClient({}), "enwiki", 999, EDIT_PLAN)


async def test_hidden_text_is_a_400_naming_texthidden():
    client = ScriptedClient({5: revision_doc(5, 4, None)})
    with pytest.raises(
        InvalidRequest, match=r"text of revision 5 on enwiki is deleted or hidden \(texthidden\)"
    ):
        await fetch_docs(client, "enwiki", 5, EDIT_PLAN)
    assert len(client.calls) == 1  # nothing else fetched for a revision that cannot be scored


async def test_content_model_mismatch_is_a_400():
    client = ScriptedClient({5: revision_doc(5, 4, "{}", content_model="wikibase-item")})
    with pytest.raises(InvalidRequest, match=r"content model 'wikibase-item'; this model scores 'wikitext'"):
        await fetch_docs(client, "enwiki", 5, EDIT_PLAN)
    wikidata_plan = FetchPlan(needs=frozenset(), content_models=("wikibase-item",))
    client = ScriptedClient({6: revision_doc(6, 4, "text", content_model="wikitext")})
    with pytest.raises(InvalidRequest, match=r"content model 'wikitext'; this model scores 'wikibase-item'"):
        await fetch_docs(client, "wikidatawiki", 6, wikidata_plan)


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
    docs = await fetch_docs(client, "wikidatawiki", 101, plan)
    assert sorted(docs.calls) == ["last_user_revision", "page_creation", "property_suggestions", "revision"]
    assert docs.page_creation["revid"] == 90  # the revision doc itself, ready for the solve cache
    contribs = next(call for call in client.calls if call.get("list") == "usercontribs")
    assert (
        contribs["ucuser"] == "Alice" and contribs["ucstart"] == "2024-01-02T03:04:04Z"
    )  # one second earlier
    assert docs.entity_id == "Q42" and docs.property_suggestions["search"] == [{"id": "P31"}]
    assert docs.last_user_revision["query"]["usercontribs"][0]["revid"] == 95
