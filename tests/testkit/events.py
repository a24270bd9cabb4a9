"""Input events for the tests, built from the farm's revisions and validated against their real schemas
(`../shared/schemas/events/`) before any test sends them: a hand-written event that drifted from the schema
would otherwise test the server against an input production never sends."""

from __future__ import annotations

import functools
import json
import uuid
from pathlib import Path
from typing import Any

import jsonschema

from testkit.servers import REPO_ROOT

SCHEMA_DIR = REPO_ROOT.parent / "shared" / "schemas" / "events"
# $schema of an event -> the schema file it is checked against. mediawiki/revision/create 2.0.0 is not in
# ../shared: its events are checked against 1.1.0, whose fields (all the servers read) 2.0.0 kept.
SCHEMA_FILES = {
    "/mediawiki/revision/create/1.1.0": "mediawiki.revision.create.1.1.0.json",
    "/mediawiki/revision/create/2.0.0": "mediawiki.revision.create.1.1.0.json",
    "/mediawiki/page/change/1.0.0": "mediawiki.page.change.1.0.0.json",
    "/mediawiki/revision/score/2.0.0": "mediawiki.revision.score.2.0.0.json",
}


@functools.cache
def validator(schema_file: str) -> jsonschema.Validator:
    schema = json.loads((SCHEMA_DIR / schema_file).read_text())
    return jsonschema.Draft7Validator(schema, format_checker=jsonschema.FormatChecker())


def validate(event: dict[str, Any]) -> dict[str, Any]:
    """`event`, after checking it against the schema its `$schema` names (raises if it does not fit)."""
    validator(SCHEMA_FILES[event["$schema"]]).validate(event)
    return event


def _revision(wiki: dict[str, Any], rev_id: int) -> dict[str, Any]:
    return next(r for r in wiki["revisions"] if r["rev_id"] == rev_id)


def revision_create_event(wiki: dict[str, Any], rev_id: int, major: int = 1, **meta: str) -> dict[str, Any]:
    """A mediawiki/revision/create event (1.1.0 or 2.0.0) for a farm revision (`wiki`: its manifest entry)."""
    revision = _revision(wiki, rev_id)
    domain = wiki["host"]
    event = {
        "$schema": "/mediawiki/revision/create/1.1.0" if major == 1 else "/mediawiki/revision/create/2.0.0",
        "meta": {
            "stream": "mediawiki.revision-create",
            "dt": "2024-01-02T03:04:05Z",
            "domain": domain,
            "uri": f"https://{domain}/wiki/X",
            "request_id": str(uuid.uuid4()),
            "id": str(uuid.uuid4()),
            **meta,
        },
        "database": wiki["dbname"],
        "page_id": revision["page_id"],
        "page_title": revision["title"].replace(" ", "_"),
        "page_namespace": 0,
        "page_is_redirect": False,
        "rev_id": rev_id,
        "rev_timestamp": "2024-01-02T03:04:05Z",
        "performer": {"user_text": revision["user"], "user_groups": ["*"], "user_is_bot": False},
    }
    return validate(event)


def page_change_event(wiki: dict[str, Any], rev_id: int) -> dict[str, Any]:
    """A mediawiki/page/change 1.0.0 edit event for a farm revision."""
    revision = _revision(wiki, rev_id)
    event = {
        "$schema": "/mediawiki/page/change/1.0.0",
        "meta": {"stream": "mediawiki.page_change.v1", "dt": "2024-01-02T03:04:05Z", "domain": wiki["host"]},
        "wiki_id": wiki["dbname"],
        "page_change_kind": "edit",
        "changelog_kind": "update",
        "dt": "2024-01-02T03:04:05Z",
        "page": {
            "page_id": revision["page_id"],
            "page_title": revision["title"],
            "namespace_id": 0,
            "is_redirect": False,
        },
        "revision": {"rev_id": rev_id, "rev_dt": "2024-01-02T03:04:05Z", "is_minor_edit": False},
        "performer": {"user_text": revision["user"], "groups": ["*", "user"], "is_bot": False, "user_id": 3},
    }
    return validate(event)


def schema_path(schema_file: str) -> Path:
    return SCHEMA_DIR / schema_file
