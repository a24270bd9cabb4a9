"""End to end: real server processes, real HTTP, the local MediaWiki farm and the demo models."""

from __future__ import annotations

import json
import math
import time
from typing import Any

import jsonschema
import pytest
import requests
from revscoring_testdata import EVENT_STREAM, EVENTGATE_TIMEOUT_S
from testkit import events
from testkit.metrics import metric_delta, metric_samples, metric_sum

from dev.seed_table import revscoring_rows
from revscoring_server.fetch import FetchPlan, fetch_dependents, fetch_revisions
from revscoring_server.model_types import MODEL_TYPES, Need, Output
from wikiserve.config import MediaWikiSettings
from wikiserve.errors import MediaWikiError
from wikiserve.mediawiki import MediaWikiPool

ROWS = revscoring_rows()


def manifest_wiki(farm: Any, dbname: str) -> dict[str, Any]:
    return farm.manifest[dbname]


def a_revision(farm: Any, dbname: str, key: str = "good_rev_id") -> int:
    return manifest_wiki(farm, dbname)["special"][key]


def check_score(score: dict[str, Any], output: Output) -> None:
    probability = score["probability"]
    assert probability and all(0.0 <= value <= 1.0 for value in probability.values()), probability
    prediction = score["prediction"]
    if output is Output.BINARY:
        assert set(probability) == {"true", "false"} and isinstance(prediction, bool)
        assert math.isclose(sum(probability.values()), 1.0, abs_tol=1e-6)
    elif output is Output.MULTICLASS:
        assert prediction in probability
        assert math.isclose(sum(probability.values()), 1.0, abs_tol=1e-6)
        assert probability[prediction] == max(probability.values())
    else:
        assert isinstance(prediction, list) and set(prediction) <= set(probability)


@pytest.mark.parametrize("row", ROWS, ids=lambda row: row.isvc)
def test_every_service_scores_a_farm_revision(revscoring_all, farm, row):
    rev_id = a_revision(farm, row.dbname)
    response = revscoring_all.predict(row.isvc, {"rev_id": rev_id})
    assert response.status_code == 200, response.text
    body = response.json()
    assert list(body) == [row.dbname]
    assert body[row.dbname]["models"][row.model_type]["version"]
    entry = body[row.dbname]["scores"][str(rev_id)][row.model_type]
    assert list(entry) == ["score"]
    check_score(entry["score"], MODEL_TYPES[row.model_type].output)


@pytest.mark.parametrize(
    "isvc", ["enwiki-damaging", "wikidatawiki-goodfaith", "enwiki-articlequality", "enwiki-drafttopic"]
)
def test_extended_output_adds_the_base_features(revscoring_all, farm, isvc):
    dbname, model_type = isvc.rsplit("-", 1)
    rev_id = a_revision(farm, dbname)
    plain = revscoring_all.predict(isvc, {"rev_id": rev_id}).json()
    response = revscoring_all.predict(isvc, {"rev_id": rev_id, "extended_output": True})
    assert response.status_code == 200, response.text
    entry = response.json()[dbname]["scores"][str(rev_id)][model_type]
    assert entry["score"] == plain[dbname]["scores"][str(rev_id)][model_type]["score"]
    features = entry["features"]
    assert features and all(name.startswith(("feature.", "feature_vector.")) for name in features)
    json.dumps(features)  # plain JSON values


def test_edit_quality_reads_the_parent_and_the_user(revscoring_all, farm):
    rev_id = a_revision(farm, "enwiki")
    entry = revscoring_all.predict("enwiki-damaging", {"rev_id": rev_id, "extended_output": True}).json()
    features = entry["enwiki"]["scores"][str(rev_id)]["damaging"]["features"]
    parent_chars = [
        value for name, value in features.items() if name.startswith("feature.wikitext.revision.parent")
    ]
    assert parent_chars and any(value for value in parent_chars)  # the parent revision's text was read
    anon = revscoring_all.predict(
        "enwiki-damaging", {"rev_id": a_revision(farm, "enwiki", "anon_rev_id"), "extended_output": True}
    )
    assert anon.status_code == 200, anon.text


def test_body_without_json_content_type_works(revscoring_all, farm):
    rev_id = a_revision(farm, "enwiki")
    response = requests.post(
        f"{revscoring_all.url}/v1/models/enwiki-goodfaith:predict",
        data=json.dumps({"rev_id": rev_id}),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
        timeout=60,
    )
    assert response.status_code == 200, response.text
    assert str(rev_id) in response.json()["enwiki"]["scores"]


def revision_create_event(farm: Any, dbname: str, rev_id: int, major: int) -> dict[str, Any]:
    return events.revision_create_event(manifest_wiki(farm, dbname), rev_id, major)


def page_change_event(farm: Any, dbname: str, rev_id: int) -> dict[str, Any]:
    return events.page_change_event(manifest_wiki(farm, dbname), rev_id)


def score_schema_validator() -> jsonschema.Validator:
    return events.validator("mediawiki.revision.score.2.0.0.json")


@pytest.mark.parametrize("kind", ["revision-create-1", "revision-create-2", "page-change-1"])
def test_event_input_scores_and_emits_a_valid_revision_score_event(
    revscoring_all, farm, event_receiver, kind
):
    isvc, dbname = "enwiki-damaging", "enwiki"
    rev_id = (
        manifest_wiki(farm, dbname)["special"]["newcomer_rev_id"]
        if kind == "page-change-1"
        else a_revision(farm, dbname)
    )
    if kind == "page-change-1":
        event = page_change_event(farm, dbname, rev_id)
    else:
        event = revision_create_event(farm, dbname, rev_id, int(kind[-1]))
    event_receiver.events.clear()
    response = revscoring_all.predict(isvc, {"event": event})
    assert response.status_code == 200, response.text
    score = response.json()[dbname]["scores"][str(rev_id)]["damaging"]["score"]
    emitted = event_receiver.wait_for(rev_id)
    score_schema_validator().validate(emitted)
    assert emitted["meta"]["stream"] == EVENT_STREAM
    page_id = next(r["page_id"] for r in manifest_wiki(farm, dbname)["revisions"] if r["rev_id"] == rev_id)
    assert emitted["database"] == dbname and emitted["page_id"] == page_id and emitted["rev_id"] == rev_id
    damaging = emitted["scores"]["damaging"]
    assert damaging["prediction"] == [str(score["prediction"]).lower()]
    assert damaging["probability"] == score["probability"]
    assert damaging["model_version"] == response.json()[dbname]["models"]["damaging"]["version"]


def mediawiki_facts(farm: Any, dbname: str, rev_id: int) -> dict[str, Any]:
    """The revision as MediaWiki reports it, asked with a plain HTTP client (the reference for what a score
    event may state): its page, redirect flag, parent, time, editor and the editor's groups."""
    host = manifest_wiki(farm, dbname)["host"]

    def get(**params: Any) -> dict[str, Any]:
        params |= {"action": "query", "format": "json", "formatversion": 2}
        answer = requests.get(f"{farm.url}/w/api.php", params=params, headers={"Host": host}, timeout=30)
        return answer.json()["query"]

    page = get(revids=rev_id, prop="info|revisions", rvprop="ids|timestamp|user|userid")["pages"][0]
    revision = page["revisions"][0]
    user = get(list="users", ususers=revision["user"], usprop="groups|editcount")["users"][0]
    return {"page": page, "revision": revision, "user": user}


def test_the_score_event_states_mediawikis_facts_never_the_events_claims(
    revscoring_all, farm, event_receiver
):
    dbname, rev_id = "enwiki", a_revision(farm, "enwiki")
    event = revision_create_event(farm, dbname, rev_id, 2)
    # Claims MediaWiki does not back: none of them may reach the output event.
    event["meta"].update(uri="https://evil.example/wiki/X", request_id="forged-request")
    event["performer"] = {"user_text": "Forged", "user_groups": ["sysop", "bot"], "user_is_bot": True}
    event.update(page_is_redirect=True, rev_timestamp="2001-01-01T00:00:00Z", rev_parent_id=1)
    event_receiver.events.clear()
    response = revscoring_all.predict("enwiki-damaging", {"event": event})
    assert response.status_code == 200, response.text
    emitted = event_receiver.wait_for(rev_id)
    score_schema_validator().validate(emitted)
    facts = mediawiki_facts(farm, dbname, rev_id)
    page, revision, user = facts["page"], facts["revision"], facts["user"]
    assert (emitted["page_id"], emitted["page_title"], emitted["page_namespace"]) == (
        page["pageid"],
        page["title"].replace(" ", "_"),
        page["ns"],
    )
    assert emitted["page_is_redirect"] is bool(page.get("redirect")) is False
    assert emitted["rev_timestamp"] == revision["timestamp"]
    assert emitted.get("rev_parent_id") == (revision["parentid"] or None)
    assert emitted["performer"]["user_text"] == revision["user"] == user["name"]
    assert emitted["performer"]["user_groups"] == user["groups"]
    assert emitted["performer"]["user_is_bot"] is ("bot" in user["groups"])
    assert emitted["performer"]["user_edit_count"] == user["editcount"]
    assert emitted["meta"]["domain"] == "en.wikipedia.org"
    assert emitted["meta"]["uri"].startswith("https://en.wikipedia.org/wiki/")
    assert "request_id" not in emitted["meta"]


def _other_page(farm: Any, page_id: int) -> dict[str, Any]:
    return next(page for page in manifest_wiki(farm, "enwiki")["pages"] if page["page_id"] != page_id)


CONTRADICTIONS = {
    "another page": (
        lambda farm, e: e.update(
            page_id=(other := _other_page(farm, e["page_id"]))["page_id"],
            page_title=other["title"].replace(" ", "_"),
        ),
        "belongs to",
    ),
    "another page's id with this title": (
        lambda farm, e: e.update(page_id=_other_page(farm, e["page_id"])["page_id"]),
        "that title is page id",
    ),
    "another page's title with this id": (
        lambda farm, e: e.update(page_title=_other_page(farm, e["page_id"])["title"].replace(" ", "_")),
        "that title is page id",
    ),
    "another wiki's domain": (lambda farm, e: e["meta"].update(domain="de.wikipedia.org"), "meta.domain"),
    "another namespace": (lambda farm, e: e.update(page_namespace=4), "namespace"),
}


@pytest.mark.parametrize("case", sorted(CONTRADICTIONS))
def test_an_event_mediawiki_contradicts_is_a_400_naming_it_and_nothing_is_posted(
    revscoring_all, farm, event_receiver, case
):
    change, fragment = CONTRADICTIONS[case]
    rev_id = a_revision(farm, "enwiki", "newcomer_rev_id")
    event = revision_create_event(farm, "enwiki", rev_id, 2)
    change(farm, event)
    event_receiver.events.clear()
    response = revscoring_all.predict("enwiki-goodfaith", {"event": event})
    assert response.status_code == 400, response.text
    assert fragment in response.json()["error"], response.json()
    time.sleep(0.5)
    assert [e for e in event_receiver.events if e.get("rev_id") == rev_id] == []


def test_a_page_renamed_since_the_event_is_not_a_contradiction(revscoring_all, farm, event_receiver):
    rev_id = a_revision(farm, "enwiki", "newcomer_rev_id")
    event = revision_create_event(farm, "enwiki", rev_id, 2)
    event["page_title"] = "A_title_this_page_had_before_a_move"  # no such page today: a rename
    event_receiver.events.clear()
    response = revscoring_all.predict("enwiki-goodfaith", {"event": event})
    assert response.status_code == 200, response.text
    emitted = event_receiver.wait_for(rev_id)
    assert emitted["page_title"] == mediawiki_facts(farm, "enwiki", rev_id)["page"]["title"].replace(" ", "_")


@pytest.mark.parametrize(
    "isvc",
    [
        "enwiki-articlequality",
        "enwiki-draftquality",
        "enwiki-articletopic",
        "enwiki-drafttopic",
        "wikidatawiki-itemquality",
        "wikidatawiki-itemtopic",
    ],
)
def test_multiclass_and_multilabel_score_events_are_valid_and_match_the_answer(
    revscoring_all, farm, event_receiver, isvc
):
    dbname, model_type = isvc.rsplit("-", 1)
    rev_id = a_revision(farm, dbname, "newcomer_rev_id")
    event_receiver.events.clear()
    response = revscoring_all.predict(isvc, {"event": revision_create_event(farm, dbname, rev_id, 2)})
    assert response.status_code == 200, response.text
    emitted = event_receiver.wait_for(rev_id)
    score_schema_validator().validate(emitted)
    score = response.json()[dbname]["scores"][str(rev_id)][model_type]["score"]
    sent = emitted["scores"][model_type]
    # The schema's prediction is a list of strings: a class becomes a one-element list, labels stay a list.
    expected = score["prediction"] if isinstance(score["prediction"], list) else [score["prediction"]]
    assert sent["prediction"] == expected and all(isinstance(label, str) for label in sent["prediction"])
    assert sent["probability"] == score["probability"]
    assert sent["model_name"] == model_type
    assert sent["model_version"] == response.json()[dbname]["models"][model_type]["version"]


def _eventgate_failures(server, **labels: str) -> float:
    return metric_sum(metric_samples(server), "eventgate_events_failed_total", **labels)


def test_eventgate_failure_does_not_fail_the_prediction(revscoring_all, farm, event_receiver):
    rev_id = a_revision(farm, "enwiki")
    before = _eventgate_failures(revscoring_all, stream=EVENT_STREAM)
    event_receiver.status = 500
    try:
        response = revscoring_all.predict(
            "enwiki-goodfaith", {"event": revision_create_event(farm, "enwiki", rev_id, 2)}
        )
    finally:
        event_receiver.status = 201
    assert response.status_code == 200, response.text
    assert "Could not send event to EventGate" in revscoring_all.log_tail(200)
    assert _eventgate_failures(revscoring_all, stream=EVENT_STREAM) - before == 1


def test_a_hanging_eventgate_costs_its_timeout_not_the_prediction(revscoring_all, farm, event_receiver):
    rev_id = a_revision(farm, "enwiki", "anon_rev_id")
    plain = revscoring_all.predict("enwiki-goodfaith", {"rev_id": rev_id})
    before = _eventgate_failures(revscoring_all, stream=EVENT_STREAM)
    event_receiver.hang_s = 30.0
    try:
        started = time.monotonic()
        response = revscoring_all.predict(
            "enwiki-goodfaith", {"event": revision_create_event(farm, "enwiki", rev_id, 2)}, timeout_s=60
        )
        elapsed = time.monotonic() - started
    finally:
        event_receiver.hang_s = 0.0
    assert response.status_code == 200, response.text
    assert response.json() == plain.json()
    assert EVENTGATE_TIMEOUT_S <= elapsed < EVENTGATE_TIMEOUT_S + 5, elapsed
    assert _eventgate_failures(revscoring_all, stream=EVENT_STREAM) - before == 1


def test_an_unreachable_eventgate_does_not_fail_the_prediction(revscoring_all, farm, event_receiver):
    rev_id = a_revision(farm, "enwiki", "newcomer_rev_id")
    before = _eventgate_failures(revscoring_all, stream=EVENT_STREAM)
    with event_receiver.refusing():
        started = time.monotonic()
        response = revscoring_all.predict(
            "enwiki-damaging", {"event": revision_create_event(farm, "enwiki", rev_id, 1)}
        )
        elapsed = time.monotonic() - started
    assert response.status_code == 200, response.text
    assert elapsed < EVENTGATE_TIMEOUT_S + 3, elapsed  # a refused connection fails at once
    assert _eventgate_failures(revscoring_all, stream=EVENT_STREAM) - before == 1
    assert "Could not send event to EventGate" in revscoring_all.log_tail(200)


def test_metrics_carry_the_model_and_the_stream(revscoring_all, farm, event_receiver):
    """Feature extraction time by `model` (the service); events sent by `stream`."""
    name = "feature_extraction_duration_seconds_count"
    en, fr = a_revision(farm, "enwiki"), a_revision(farm, "frwiki")
    before = metric_samples(revscoring_all)
    for isvc, rev_id in [("enwiki-damaging", en), ("frwiki-goodfaith", fr), ("frwiki-goodfaith", fr)]:
        assert revscoring_all.predict(isvc, {"rev_id": rev_id}).status_code == 200
    event = revision_create_event(farm, "enwiki", en, 2)
    assert revscoring_all.predict("enwiki-goodfaith", {"event": event}).status_code == 200
    event_receiver.wait_for(en)
    after = metric_samples(revscoring_all)
    assert metric_delta(before, after, name, model="enwiki-damaging") == 1
    assert metric_delta(before, after, name, model="frwiki-goodfaith") == 2
    assert metric_delta(before, after, name, model="enwiki-goodfaith") == 1
    assert metric_delta(before, after, name, model="dewiki-damaging") == 0
    assert metric_delta(before, after, "eventgate_events_sent_total", stream=EVENT_STREAM) == 1
    assert metric_delta(before, after, "eventgate_events_sent_total", stream="mediawiki.revision-score") == 0


def test_an_event_for_another_wiki_is_a_400(revscoring_all, farm):
    event = revision_create_event(farm, "enwiki", a_revision(farm, "enwiki"), 2)
    response = revscoring_all.predict("frwiki-damaging", {"event": event})
    assert response.status_code == 400
    assert "'enwiki'" in response.json()["error"] and "'frwiki'" in response.json()["error"]


@pytest.mark.parametrize(
    "body, fragment",
    [
        ({}, "'rev_id'"),
        ({"rev_id": None}, "'rev_id'"),
        ({"rev_id": "123"}, "'rev_id' must be an integer, got a string"),
        ({"rev_id": True}, "'rev_id' must be an integer, got a boolean"),
        ({"rev_id": 1.5}, "'rev_id' must be an integer"),
        ({"rev_id": -3}, "'rev_id' must be between"),
        ({"rev_id": 1, "extended_output": "yes"}, "'extended_output' must be a boolean"),
        ({"rev_id": 1, "model": "x"}, "Unknown field(s) 'model'"),
        ({"rev_id": 1, "event": {}}, "exactly one of 'rev_id', 'rev_ids' or 'event'"),
        ({"event": {"$schema": "/mediawiki/revision/tags-change/1.0.0"}}, "Unsupported event schema"),
        ([1, 2], "must be a JSON object"),
    ],
)
def test_invalid_requests_are_400s_naming_the_problem(revscoring_all, body, fragment):
    response = revscoring_all.predict("enwiki-damaging", body)
    assert response.status_code == 400, response.text
    assert fragment in response.json()["error"]


def test_unknown_revision_is_a_400(revscoring_all):
    response = revscoring_all.predict("enwiki-damaging", {"rev_id": 987654321})
    assert response.status_code == 400
    assert "Revision 987654321 does not exist on enwiki" in response.json()["error"]


@pytest.mark.parametrize("isvc", ["enwiki-damaging", "enwiki-articlequality", "wikidatawiki-damaging"])
def test_hidden_text_is_a_400(revscoring_all, farm, isvc):
    dbname = isvc.split("-")[0]
    rev_id = a_revision(farm, dbname, "hidden_rev_id")
    response = revscoring_all.predict(isvc, {"rev_id": rev_id})
    assert response.status_code == 400, response.text
    assert f"revision {rev_id}" in response.json()["error"] and "hidden" in response.json()["error"]


def test_wrong_content_model_is_a_400(revscoring_all, farm):
    wikitext_rev = next(
        r["rev_id"]
        for r in manifest_wiki(farm, "wikidatawiki")["revisions"]
        if not r["title"].startswith("Q") and not r["hidden"]
    )
    response = revscoring_all.predict("wikidatawiki-itemquality", {"rev_id": wikitext_rev})
    assert response.status_code == 400, response.text
    assert "content model 'wikitext'" in response.json()["error"]


def test_an_unknown_model_is_a_404(revscoring_all):
    response = revscoring_all.predict("enwiki-nonsense", {"rev_id": 1})
    assert response.status_code == 404


async def test_property_suggestions_from_a_wiki_without_wikibase_suggester_are_a_502(farm):
    """No current model needs them; if one did, a wiki without WikibaseSuggester must not yield a score."""
    pool = MediaWikiPool(MediaWikiSettings(url=farm.url, attempts=1))
    plan = FetchPlan(needs=frozenset({Need.PROPERTY_SUGGESTIONS}), content_models=("wikibase-item",))
    try:
        with pytest.raises(MediaWikiError, match="WikibaseSuggester") as info:
            client = pool.client("www.wikidata.org")
            rev_id = a_revision(farm, "wikidatawiki")
            fetched = await fetch_revisions(client, "wikidatawiki", [rev_id])
            await fetch_dependents(client, [fetched[rev_id]], plan)
    finally:
        await pool.close()
    assert info.value.status == 502 and "MediaWiki API" in info.value.message
