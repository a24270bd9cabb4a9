import copy
import json
from datetime import UTC, datetime
from pathlib import Path

import jsonschema
import pytest

from wikiserve.errors import InvalidRequest
from wikiserve.events import (
    parse_event,
    parse_page_change,
    prediction_classification_event,
    revision_score_event,
)

SCHEMAS = Path(__file__).resolve().parents[3] / "shared" / "schemas" / "events"


def load_schema(name: str) -> dict:
    return json.loads((SCHEMAS / name).read_text())


@pytest.fixture
def revision_create() -> dict:
    return copy.deepcopy(load_schema("mediawiki.revision.create.1.1.0.json")["examples"][0])


def page_change_event() -> dict:
    return {
        "$schema": "/mediawiki/page/change/1.1.0",
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
    }


def test_revision_create_1_and_2_are_read(revision_create):
    parsed = parse_event(revision_create)
    assert parsed.rev_id == revision_create["rev_id"] and parsed.database == revision_create["database"]
    revision_create["$schema"] = "/mediawiki/revision/create/2.0.0"
    assert parse_event(revision_create).rev_id == revision_create["rev_id"]


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


def full_page_change_event() -> dict:
    """A page/change 1.0.0 event with every optional part a real one can carry (content slots included)."""
    event = page_change_event()
    event["$schema"] = "/mediawiki/page/change/1.0.0"
    event["comment"] = "expanded"
    event["page"]["revision_count"] = 5
    event["revision"].update({
        "comment": "expanded", "is_minor_edit": False, "is_comment_visible": True, "is_content_visible": True,
        "is_editor_visible": True, "rev_sha1": "0" * 31, "rev_size": 120,
        "editor": {"user_text": "Alice", "user_id": 3, "groups": ["*", "user"], "is_bot": False},
        "content_slots": {"main": {"slot_role": "main", "content_model": "wikitext", "content_size": 120,
                                   "content_format": "text/x-wiki", "content_sha1": "0" * 31}},
    })
    event["prior_state"] = {"revision": {"rev_id": 41, "rev_dt": "2025-12-31T00:00:00Z",
                                         "content_slots": {"main": {"slot_role": "main"}}}}
    jsonschema.Draft7Validator(load_schema("mediawiki.page.change.1.0.0.json"),
                               format_checker=jsonschema.FormatChecker()).validate(event)
    return event


def classification() -> dict:
    return {"model_name": "outlink-topic-model", "model_version": "sha256:0123456789ab",
            "predictions": ["STEM.Physics"], "probabilities": {"STEM.Physics": 0.9, "Culture.Media": 0.1}}


def test_prediction_classification_event_is_valid_and_repeats_the_page_change():
    source = full_page_change_event()
    event = prediction_classification_event(parse_page_change(source), "topics-test", classification(),
                                            now=datetime(2026, 1, 2, tzinfo=UTC))
    schema = load_schema("mediawiki.page.prediction_classification_change.1.0.0.json")
    jsonschema.Draft7Validator(schema, format_checker=jsonschema.FormatChecker()).validate(event)
    assert event["$schema"] == schema["$id"]
    assert event["meta"]["stream"] == "topics-test" and event["meta"]["dt"] == "2026-01-02T00:00:00Z"
    assert event["meta"]["domain"] == source["meta"]["domain"] and event["meta"]["id"]
    assert event["predicted_classification"] == classification()
    for key in ("wiki_id", "dt", "page", "performer", "page_change_kind", "changelog_kind", "comment"):
        assert event[key] == source[key], key
    assert "content_slots" not in event["revision"]
    assert "content_slots" not in event["prior_state"]["revision"]
    assert {k: v for k, v in source["revision"].items() if k != "content_slots"} == event["revision"]


@pytest.mark.parametrize(("change", "message"), [
    ({"page_change_kind": "delete", "changelog_kind": "delete"}, "deletes page"),
    ({"page_change_kind": "visibility_change", "revision": {"rev_id": 42, "rev_dt": "2026-01-01T00:00:00Z",
                                                            "is_content_visible": False}}, "is hidden"),
])
def test_page_changes_without_content_are_refused(change, message):
    event = {**full_page_change_event(), **change}
    jsonschema.Draft7Validator(load_schema("mediawiki.page.change.1.0.0.json")).validate(event)
    with pytest.raises(InvalidRequest, match=message):
        parse_page_change(event)


def test_a_visibility_change_that_leaves_the_content_visible_is_read():
    event = full_page_change_event()
    event["page_change_kind"] = "visibility_change"
    event["revision"]["is_comment_visible"] = False
    assert parse_page_change(event).kind == "visibility_change"


def test_page_change_input_only(revision_create):
    with pytest.raises(InvalidRequest, match="Expected a mediawiki/page/change 1.x event"):
        parse_page_change(revision_create)
