import copy
import json
from datetime import UTC, datetime
from pathlib import Path

import jsonschema
import pytest
from testkit.events import validate

from wikiserve.errors import InvalidRequest
from wikiserve.events import parse_event, revision_score_event

SCHEMAS = Path(__file__).resolve().parents[3] / "shared" / "schemas" / "events"


def load_schema(name: str) -> dict:
    return json.loads((SCHEMAS / name).read_text())


@pytest.fixture
def revision_create() -> dict:
    return copy.deepcopy(load_schema("mediawiki.revision.create.1.1.0.json")["examples"][0])


def page_change_event() -> dict:
    return validate({
        "$schema": "/mediawiki/page/change/1.0.0",
        "meta": {
            "stream": "mediawiki.page_change.v1",
            "domain": "en.wikipedia.org",
            "dt": "2026-01-01T00:00:00Z",
            "uri": "https://en.wikipedia.org/wiki/Physics",
        },
        "wiki_id": "enwiki",
        "page_change_kind": "edit",
        "changelog_kind": "update",
        "dt": "2026-01-01T00:00:00Z",
        "page": {"page_id": 7, "page_title": "Physics", "namespace_id": 0, "is_redirect": False},
        "revision": {"rev_id": 42, "rev_parent_id": 41, "rev_dt": "2026-01-01T00:00:00Z"},
        "performer": {
            "user_text": "Alice",
            "groups": ["*", "user"],
            "is_bot": False,
            "user_id": 3,
            "edit_count": 120,
            "registration_dt": "2010-01-01T00:00:00Z",
        },
    })


def test_revision_create_1_and_2_are_read(revision_create):
    parsed = parse_event(revision_create)
    assert parsed.rev_id == revision_create["rev_id"] and parsed.database == revision_create["database"]
    revision_create["$schema"] = "/mediawiki/revision/create/2.0.0"
    assert parse_event(validate(revision_create)).rev_id == revision_create["rev_id"]


def test_page_change_is_read_and_performer_renamed():
    parsed = parse_event(page_change_event())
    assert (parsed.database, parsed.rev_id, parsed.page_title, parsed.rev_parent_id) == (
        "enwiki",
        42,
        "Physics",
        41,
    )
    assert parsed.performer == {
        "user_text": "Alice",
        "user_groups": ["*", "user"],
        "user_is_bot": False,
        "user_id": 3,
        "user_registration_dt": "2010-01-01T00:00:00Z",
        "user_edit_count": 120,
    }


@pytest.mark.parametrize(
    "schema",
    [
        "/mediawiki/revision/create/3.0.0",
        "/mediawiki/page/change/2.0.0",
        "/mediawiki/revision/score/2.0.0",
        None,
        7,
    ],
)
def test_unsupported_schemas_are_rejected(revision_create, schema):
    revision_create["$schema"] = schema
    with pytest.raises(InvalidRequest, match="Unsupported event schema"):
        parse_event(revision_create)


def test_missing_fields_are_named(revision_create):
    del revision_create["rev_id"]
    with pytest.raises(InvalidRequest, match="rev_id"):
        parse_event(revision_create)
    revision_create["rev_id"] = "12"
    with pytest.raises(InvalidRequest, match="integer"):
        parse_event(revision_create)


@pytest.mark.parametrize("make_event", ["revision_create", "page_change"])
def test_revision_score_event_is_valid_against_the_schema(revision_create, make_event):
    source = parse_event(revision_create if make_event == "revision_create" else page_change_event())
    scores = {
        "damaging": {
            "model_name": "damaging",
            "model_version": "0.5.1-demo",
            "prediction": ["false"],
            "probability": {"false": 0.8, "true": 0.2},
        }
    }
    event = revision_score_event(
        source, "mediawiki.revision-score-test", scores, now=datetime(2026, 1, 2, tzinfo=UTC)
    )
    jsonschema.Draft7Validator(load_schema("mediawiki.revision.score.2.0.0.json")).validate(event)
    assert event["meta"]["stream"] == "mediawiki.revision-score-test"
    assert event["meta"]["dt"] == "2026-01-02T00:00:00Z"
    assert event["rev_id"] == source.rev_id and event["scores"] == scores
