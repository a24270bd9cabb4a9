"""wikiserve.events against the Event Platform schemas (`../shared/schemas/events/`, read with jsonschema, the
independent reference): input events are checked against their schema before anything is read, claims are
compared with MediaWiki's facts, and output events hold only verified facts."""

import copy
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from testkit.events import SCHEMA_DIR, validate, validator

from wikiserve.errors import InvalidRequest
from wikiserve.event_schema import SCHEMA_DIR as SHIPPED_SCHEMA_DIR
from wikiserve.events import (
    RevisionEvent,
    VerifiedRevision,
    check_event_claims,
    check_title_claim,
    page_change_performer,
    parse_event,
    parse_page_change,
    performer_from_user_info,
    prediction_classification_event,
    revision_score_event,
)

SCHEMAS = Path(__file__).resolve().parents[3] / "shared" / "schemas" / "events"
NOW = datetime(2026, 1, 2, tzinfo=UTC)
SCORES = {"damaging": {"model_name": "damaging", "model_version": "0.5.1-demo", "prediction": ["false"],
                       "probability": {"false": 0.8, "true": 0.2}}}


def load_schema(name: str) -> dict:
    return json.loads((SCHEMAS / name).read_text())


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


def verified(**changes: Any) -> VerifiedRevision:
    """MediaWiki's facts about the revision create example's revision (page 123, TestPage10)."""
    facts = {"database": "examplewiki", "domain": "test.wikipedia.org", "rev_id": 123, "rev_parent_id": 122,
             "rev_timestamp": "2020-06-10T18:57:16Z", "page_id": 123, "page_title": "TestPage10",
             "page_namespace": 0, "page_is_redirect": False,
             "performer": {"user_text": "Example user", "user_groups": ["*", "user"], "user_is_bot": False,
                           "user_id": 5}}
    return VerifiedRevision(**{**facts, **changes})


# The shipped schemas ------------------------------------------------------------------------------------

def test_the_shipped_schemas_are_the_event_platform_schemas():
    """The servers read copies (they cannot read ../shared in production); the copies must be current."""
    shipped = sorted(SHIPPED_SCHEMA_DIR.glob("*.json"))
    assert [path.name for path in shipped] == ["mediawiki.page.change.1.0.0.json",
                                               "mediawiki.revision.create.1.1.0.json"]
    for path in shipped:
        assert path.read_bytes() == (SCHEMA_DIR / path.name).read_bytes(), path.name


# Reading input events ------------------------------------------------------------------------------------

def test_revision_create_1_and_2_are_read():
    event = revision_create()
    parsed = parse_event(event)
    assert parsed == RevisionEvent(database="examplewiki", rev_id=123, page_id=123, page_title="TestPage10",
                                   page_namespace=0, page_is_redirect=False,
                                   rev_timestamp="2020-06-10T18:57:16Z", domain="test.wikipedia.org",
                                   rev_parent_id=122)
    event["$schema"] = "/mediawiki/revision/create/2.0.0"
    assert parse_event(validate(event)) == parsed


def test_page_change_is_read():
    parsed = parse_event(page_change_event())
    assert parsed == RevisionEvent(database="enwiki", rev_id=42, page_id=7, page_title="Physics",
                                   page_namespace=0, page_is_redirect=False,
                                   rev_timestamp="2026-01-01T00:00:00Z", domain="en.wikipedia.org",
                                   rev_parent_id=41)


@pytest.mark.parametrize(
    "schema",
    ["/mediawiki/revision/create/3.0.0", "/mediawiki/page/change/2.0.0", "/mediawiki/revision/score/2.0.0",
     None, 7, ["/mediawiki/page/change/1.0.0"], "/mediawiki/page/change/1.0.0" + "x" * 100_000],
)
def test_unsupported_schemas_are_rejected_without_repeating_them(schema):
    event = revision_create()
    event["$schema"] = schema
    with pytest.raises(InvalidRequest, match="Unsupported event schema") as refused:
        parse_event(event)
    assert len(refused.value.message) < 300


def _wrong_values(expected: str) -> list[Any]:
    """JSON values that are not of JSON Schema type `expected` (the ones clients were seen sending)."""
    return {"object": ["edit", ["a", "b"], 5], "array": ["*", {"0": "*"}], "string": [7, {"a": 1}, None],
            "integer": ["12", 12.5, True, None], "boolean": ["false", 0, None]}.get(expected, [])


def _mutations(event: dict, schema: dict, path: tuple = ()) -> list[tuple[str, dict]]:
    """One copy of `event` per field it holds and per wrong-typed value for it, from the schema's types."""
    found = []
    for name, rules in schema.get("properties", {}).items():
        value = event
        for part in path:
            value = value[part]
        if name not in value:
            continue
        for wrong in _wrong_values(rules.get("type", "")):
            mutated = copy.deepcopy(event)
            target = mutated
            for part in path:
                target = target[part]
            target[name] = wrong
            found.append((".".join(("event", *path, name)), mutated))
        if rules.get("type") == "object" and isinstance(value[name], dict):
            found.extend(_mutations(event, rules, (*path, name)))
    return found


SCHEMA_OF = {"revision-create": "mediawiki.revision.create.1.1.0.json",
             "page-change": "mediawiki.page.change.1.0.0.json"}


@pytest.mark.parametrize("kind", list(SCHEMA_OF))
def test_every_field_of_the_wrong_type_is_a_400_naming_it(kind):
    """Every field the schema types, given a value of another type (`meta` as a string, `performer` as a
    string or a list, `page_is_redirect` as "false", ids as strings...): the schema refuses it, and so does
    the server, naming the field, before anything is read (an AttributeError was a 500)."""
    event = revision_create() if kind == "revision-create" else page_change_event()
    event["$schema"] = json.loads((SCHEMA_DIR / SCHEMA_OF[kind]).read_text())["$id"]
    cases = _mutations(event, load_schema(SCHEMA_OF[kind]))
    assert len(cases) > 40 and {"event.meta", "event.performer"} <= {path for path, _ in cases}
    for path, mutated in cases:
        assert not validator(SCHEMA_OF[kind]).is_valid(mutated), path  # the reference refuses it
        with pytest.raises(InvalidRequest) as refused:
            parse_event(mutated)
        assert f"'{path}'" in refused.value.message, (path, refused.value.message)


@pytest.mark.parametrize(("path", "value"), [
    (("rev_id",), 2**53), (("page_id",), 2**53), (("rev_parent_id",), 2**60), (("rev_id",), -1),
    (("page_id",), 0), (("performer", "user_edit_count"), -3),
])
def test_values_out_of_the_schemas_bounds_are_400(path, value):
    event = _with(revision_create(), path, value)
    with pytest.raises(jsonschema.ValidationError):
        validator("mediawiki.revision.create.1.1.0.json").validate(event)
    with pytest.raises(InvalidRequest, match="'event." + ".".join(path) + "'"):
        parse_event(event)


@pytest.mark.parametrize(("path", "value"), [
    (("meta", "dt"), "yesterday"), (("rev_timestamp",), "2024-13-01T00:00:00Z"),
    (("performer", "user_registration_dt"), "2024-01-01"),
])
def test_dates_that_are_not_rfc_3339_date_times_are_400(path, value):
    """jsonschema checks `format: date-time` only with an optional package, so the reference here is the
    schema's declaration (RFC 3339 date-time) and Python's own parser of ISO 8601."""
    rules = load_schema("mediawiki.revision.create.1.1.0.json")
    for part in path:
        rules = rules["properties"][part]
    assert rules["format"] == "date-time"
    with pytest.raises(ValueError):
        datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ")
    with pytest.raises(InvalidRequest, match="'event." + ".".join(path) + "' must be an ISO 8601 date"):
        parse_event(_with(revision_create(), path, value))


def _with(event: dict, path: tuple[str, ...], value: Any) -> dict:
    target = event
    for part in path[:-1]:
        target = target[part]
    target[path[-1]] = value
    return event


@pytest.mark.parametrize("field", ["rev_id", "page_id", "page_title", "meta", "database", "page_is_redirect"])
def test_missing_required_fields_are_named(field):
    event = revision_create()
    del event[field]
    with pytest.raises(InvalidRequest, match=f"'event.{field}' is required"):
        parse_event(event)


def test_page_change_page_id_must_be_a_page():
    """The schema allows page id 0; no page has it."""
    event = page_change_event()
    event["page"]["page_id"] = 0
    validate(event)
    with pytest.raises(InvalidRequest, match="'event.page.page_id' must be between 1 and"):
        parse_event(event)


def test_oversized_and_unknown_input_is_refused_without_being_repeated():
    long_name = "n" * 100_000
    event = page_change_event()
    event["page"][long_name] = 1  # page/change objects allow no other fields
    with pytest.raises(InvalidRequest, match="'event.page' has a field its schema does not allow") as refused:
        parse_event(event)
    assert len(refused.value.message) < 300
    event = revision_create()
    event["comment"] = "c" * 9000  # the schema sets no bound; the server does
    with pytest.raises(InvalidRequest, match="'event.comment' is longer than 8192 characters"):
        parse_event(event)
    event = revision_create()
    event["performer"]["user_groups"] = ["user"] * 1000
    with pytest.raises(InvalidRequest, match="'event.performer.user_groups' has 1000 items"):
        parse_event(event)
    event = revision_create()
    event["page_title"] = "T" * 600
    with pytest.raises(InvalidRequest, match="'event.page_title' must be a page title of 1 to 512 bytes"):
        parse_event(event)
    event = revision_create()
    event["database"] = "x" * 5000
    with pytest.raises(InvalidRequest, match="'event.database' must be a wiki id") as refused:
        parse_event(event)
    assert len(refused.value.message) < 300


# Claims against MediaWiki's facts ------------------------------------------------------------------------

def test_an_event_that_agrees_with_mediawiki_passes():
    check_event_claims(parse_event(revision_create()), verified())


def test_a_page_renamed_or_moved_since_the_event_is_not_a_contradiction():
    event = parse_event(revision_create())
    check_event_claims(event, verified(page_title="Renamed page"))
    check_event_claims(event, verified(page_title="Draft:TestPage10", page_namespace=118))
    check_title_claim(event, verified(page_title="Renamed page"), title_page_id=123)  # its redirect
    check_title_claim(event, verified(page_title="Renamed page"), title_page_id=None)  # no redirect left


@pytest.mark.parametrize(("change", "facts", "message"), [
    ({"database": "dewiki"}, {}, "The event is for wiki 'dewiki', but this model scores 'examplewiki'"),
    ({"meta": {"domain": "de.wikipedia.org"}}, {},
     "meta.domain 'de.wikipedia.org' is not the domain of wiki 'examplewiki' (test.wikipedia.org)"),
    ({"page_id": 999}, {}, "The event gives page title 'TestPage10' with page id 999, but on "
                           "test.wikipedia.org that title is page id 123"),
    ({"page_id": 999, "page_title": "Other page"}, {},
     "Revision 123 on test.wikipedia.org belongs to page id 123 ('TestPage10'), not to the event's page id "
     "999"),
    ({"page_namespace": 4}, {}, "in namespace 4, but on test.wikipedia.org it is in namespace 0"),
    ({}, {"rev_id": 124}, "The event names revision 123, but revision 124 was looked up"),
])
def test_contradictions_are_400_naming_them(change, facts, message):
    event = revision_create()
    for key, value in change.items():
        event[key] = {**event[key], **value} if isinstance(value, dict) else value
    with pytest.raises(InvalidRequest) as refused:
        check_event_claims(parse_event(event), verified(**facts))
    assert message in refused.value.message


def test_a_title_given_with_another_pages_id_is_a_contradiction():
    """The page was not renamed: the event's title leads to another page today."""
    event = parse_event({**revision_create(), "page_title": "Other page"})
    check_event_claims(event, verified())  # the id agrees, the title could be an old name...
    with pytest.raises(InvalidRequest, match="that title is page id 77; page id 123 is 'TestPage10'"):
        check_title_claim(event, verified(), title_page_id=77)  # ...but it is another page's


# Performers from MediaWiki -------------------------------------------------------------------------------

REGISTERED_V2 = {"userid": 5, "name": "Example user", "groups": ["*", "user", "autoconfirmed"],
                 "editcount": 42, "registration": "2016-01-29T21:13:24Z"}
REGISTERED_V1 = {"userid": 5, "name": "Example user", "groups": ["*", "user", "autoconfirmed"],
                 "editcount": 42, "registration": "2016-01-29T21:13:24Z"}
BOT_V2 = {"userid": 9, "name": "Example bot", "groups": ["*", "user", "bot"], "editcount": 7,
          "registration": None}


def _score_event_with(performer: dict | None) -> dict:
    event = revision_score_event(verified(performer=performer), "s", SCORES, now=NOW)
    validator("mediawiki.revision.score.2.0.0.json").validate(event)
    return event


@pytest.mark.parametrize("doc", [REGISTERED_V2, REGISTERED_V1], ids=["formatversion-2", "formatversion-1"])
def test_a_registered_users_performer(doc):
    performer = performer_from_user_info("Example user", 5, doc)
    assert performer == {"user_text": "Example user", "user_groups": ["*", "user", "autoconfirmed"],
                         "user_is_bot": False, "user_id": 5, "user_edit_count": 42,
                         "user_registration_dt": "2016-01-29T21:13:24Z"}
    assert _score_event_with(performer)["performer"] == performer


def test_a_bot_without_a_registration_date():
    performer = performer_from_user_info("Example bot", 9, BOT_V2)
    assert performer == {"user_text": "Example bot", "user_groups": ["*", "user", "bot"], "user_is_bot": True,
                         "user_id": 9, "user_edit_count": 7}
    _score_event_with(performer)


@pytest.mark.parametrize("doc", [None, {"name": "192.0.2.7", "invalid": True}, {"name": "192.0.2.7",
                                                                                 "invalid": ""}])
def test_an_anonymous_editor_has_no_groups_beyond_star(doc):
    for user_id in (0, None):
        performer = performer_from_user_info("192.0.2.7", user_id, doc)
        assert performer == {"user_text": "192.0.2.7", "user_groups": ["*"], "user_is_bot": False}
        _score_event_with(performer)


def test_a_hidden_user_has_no_performer_and_another_users_doc_is_ignored():
    assert performer_from_user_info(None, None, None) is None
    assert "performer" not in _score_event_with(None)
    performer = performer_from_user_info("Someone else", 5, REGISTERED_V2)  # a doc for another name
    assert performer == {"user_text": "Someone else", "user_groups": ["*"], "user_is_bot": False,
                         "user_id": 5}


# Output events -------------------------------------------------------------------------------------------

def test_the_revision_score_event_states_only_verified_facts():
    facts = verified(page_title="Renamed page", page_is_redirect=True)
    event = revision_score_event(facts, "mediawiki.revision-score-test", SCORES, now=NOW)
    validator("mediawiki.revision.score.2.0.0.json").validate(event)
    assert event["meta"]["stream"] == "mediawiki.revision-score-test"
    assert event["meta"]["dt"] == "2026-01-02T00:00:00Z" and event["meta"]["id"]
    assert event["meta"]["domain"] == "test.wikipedia.org"
    assert event["meta"]["uri"] == "https://test.wikipedia.org/wiki/Renamed_page"
    assert "request_id" not in event["meta"]
    assert {key: event[key] for key in ("database", "page_id", "page_title", "page_namespace",
                                        "page_is_redirect", "rev_id", "rev_parent_id", "rev_timestamp")} == {
        "database": "examplewiki", "page_id": 123, "page_title": "Renamed_page", "page_namespace": 0,
        "page_is_redirect": True, "rev_id": 123, "rev_parent_id": 122,
        "rev_timestamp": "2020-06-10T18:57:16Z"}
    assert event["performer"] == facts.performer and event["scores"] == SCORES


def test_the_revision_score_event_of_a_first_revision_has_no_parent():
    event = revision_score_event(verified(rev_parent_id=None), "s", SCORES, now=NOW)
    validator("mediawiki.revision.score.2.0.0.json").validate(event)
    assert "rev_parent_id" not in event


def classification() -> dict:
    return {"model_name": "outlink-topic-model", "model_version": "sha256:0123456789ab",
            "predictions": ["STEM.Physics"], "probabilities": {"STEM.Physics": 0.9, "Culture.Media": 0.1}}


@pytest.mark.parametrize(("parent", "kind", "changelog"),
                         [(122, "edit", "update"), (None, "create", "insert")])
def test_the_prediction_classification_event_states_only_verified_facts(parent, kind, changelog):
    facts = verified(domain="en.wikipedia.org", database="enwiki", page_title="Quantum field theory",
                     rev_parent_id=parent)
    event = prediction_classification_event(facts, "topics-test", classification(), now=NOW)
    schema = load_schema("mediawiki.page.prediction_classification_change.1.0.0.json")
    jsonschema.Draft7Validator(schema, format_checker=jsonschema.FormatChecker()).validate(event)
    assert event["$schema"] == schema["$id"]
    assert event["meta"]["stream"] == "topics-test" and event["meta"]["dt"] == "2026-01-02T00:00:00Z"
    assert event["meta"]["domain"] == "en.wikipedia.org" and "request_id" not in event["meta"]
    assert event["meta"]["uri"] == "https://en.wikipedia.org/wiki/Quantum_field_theory"
    assert (event["wiki_id"], event["dt"], event["page_change_kind"], event["changelog_kind"]) == (
        "enwiki", "2020-06-10T18:57:16Z", kind, changelog)
    assert event["page"] == {"page_id": 123, "page_title": "Quantum_field_theory", "namespace_id": 0,
                             "is_redirect": False}
    expected_revision = {"rev_id": 123, "rev_dt": "2020-06-10T18:57:16Z"}
    if parent:
        expected_revision["rev_parent_id"] = parent
    assert event["revision"] == expected_revision
    assert event["performer"] == {"user_text": "Example user", "groups": ["*", "user"], "is_bot": False,
                                  "user_id": 5}
    assert "comment" not in event and "prior_state" not in event
    assert event["predicted_classification"] == classification()


def test_page_change_performer_names():
    assert page_change_performer(None) == {}
    full = performer_from_user_info("Example user", 5, REGISTERED_V2)
    assert page_change_performer(full) == {"user_text": "Example user", "user_id": 5,
                                           "groups": ["*", "user", "autoconfirmed"], "is_bot": False,
                                           "registration_dt": "2016-01-29T21:13:24Z", "edit_count": 42}


# page/change input ---------------------------------------------------------------------------------------

def full_page_change_event() -> dict:
    """A page/change 1.0.0 event with every optional part a real one can carry (content slots included)."""
    event = page_change_event()
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
    return validate(event)


def test_a_full_page_change_is_read():
    parsed = parse_page_change(full_page_change_event())
    assert parsed.kind == "edit" and parsed.revision.rev_id == 42


@pytest.mark.parametrize(("change", "message"), [
    ({"page_change_kind": "delete", "changelog_kind": "delete"}, "deletes page"),
    ({"page_change_kind": "visibility_change", "revision": {"rev_id": 42, "rev_dt": "2026-01-01T00:00:00Z",
                                                            "is_content_visible": False}}, "is hidden"),
])
def test_page_changes_without_content_are_refused(change, message):
    event = validate({**full_page_change_event(), **change})
    with pytest.raises(InvalidRequest, match=message):
        parse_page_change(event)


def test_a_visibility_change_that_leaves_the_content_visible_is_read():
    event = full_page_change_event()
    event["page_change_kind"] = "visibility_change"
    event["revision"]["is_comment_visible"] = False
    assert parse_page_change(event).kind == "visibility_change"


def test_page_change_input_only():
    with pytest.raises(InvalidRequest, match="Expected a mediawiki/page/change 1.x event"):
        parse_page_change(revision_create())
