"""MediaWiki Action API answers (formatversion 2, as MediaWiki sends them) for the revscoring tests."""

from __future__ import annotations

from typing import Any

EVENT_STREAM = "test.revision-score"  # the stream name the test servers are configured with
EVENTGATE_TIMEOUT_S = 2.0  # the test servers' EventGate timeout: a hanging EventGate costs this much


def revision_doc(
    rev_id: int,
    parent_id: int,
    text: str | None,
    *,
    user: str | None = "Alice",
    userid: int = 5,
    comment: str | None = "copyedit",
    content_model: str = "wikitext",
    page_id: int = 10,
    title: str = "Physics",
    **flags: bool,
) -> dict[str, Any]:
    """A formatversion-2 answer to prop=revisions&revids=<rev_id>&rvslots=main, as MediaWiki sends it."""
    slot: dict[str, Any] = {"contentmodel": content_model, "contentformat": "text/x-wiki"}
    if text is None:
        slot["texthidden"] = True
    else:
        slot["content"] = text
    revision: dict[str, Any] = {
        "revid": rev_id,
        "parentid": parent_id,
        "minor": False,
        "timestamp": "2024-01-02T03:04:05Z",
        "size": len(text or ""),
        "slots": {"main": slot},
    }
    if user is None:
        revision["userhidden"] = True
    else:
        revision.update(user=user, userid=userid)
        if userid == 0:
            revision["anon"] = True
    if comment is None:
        revision["commenthidden"] = True
    else:
        revision["comment"] = comment
    revision.update(flags)
    return {
        "batchcomplete": True,
        "query": {"pages": [{"pageid": page_id, "ns": 0, "title": title, "revisions": [revision]}]},
    }


def users_doc(name: str = "Alice", editcount: int = 12) -> dict[str, Any]:
    return {
        "batchcomplete": True,
        "query": {
            "users": [
                {
                    "userid": 5,
                    "name": name,
                    "editcount": editcount,
                    "registration": "2020-01-01T00:00:00Z",
                    "groups": ["*", "user"],
                    "gender": "unknown",
                }
            ]
        },
    }


def bad_revids_doc(rev_id: int) -> dict[str, Any]:
    return {"batchcomplete": True, "query": {"badrevids": {str(rev_id): {"revid": rev_id, "missing": True}}}}
