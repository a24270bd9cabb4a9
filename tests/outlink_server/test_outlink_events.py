"""Page-change events in, topic events out: the predictor alone and the transformer -> predictor chain (real
subprocess servers) against the farm, posting to a local EventGate stand-in (testkit.event_receiver).

Every input event is validated against `mediawiki/page/change` 1.0.0 before it is sent; every event the
servers post is validated against `mediawiki/page/prediction_classification_change` 1.0.0. Expected topics
come from the reference (the farm's API and fastText itself), not from the server's code.
"""

from __future__ import annotations

import copy
import hashlib
import json
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import quote

import jsonschema
import pytest
from outlink_testing import EVENT_STREAM, MODEL_NAME, metric_total, predict

from dev.mediawiki_farm.build import FarmPaths, php_env

EN = "en.wikipedia.org"
SCHEMAS = Path(__file__).resolve().parents[3] / "shared" / "schemas" / "events"
SETTLE_S = 0.5  # how long to keep listening for a second (duplicate) or late event


def schema_validator(name: str) -> jsonschema.Validator:
    schema = json.loads((SCHEMAS / name).read_text(encoding="utf-8"))
    return jsonschema.Draft7Validator(schema, format_checker=jsonschema.FormatChecker())


INPUT = schema_validator("mediawiki.page.change.1.0.0.json")
OUTPUT = schema_validator("mediawiki.page.prediction_classification_change.1.0.0.json")


def page_change(reference, host: str, dbname: str, rev_id: int, **changes: Any) -> dict[str, Any]:
    """A page/change 1.0.0 edit event for revision `rev_id`, as MediaWiki's EventBus would emit it (facts
    from the farm's API), with top-level `changes` applied; validated against the input schema."""
    info = reference.get(host, action="query", revids=rev_id, prop="revisions|info",
                         rvprop="ids|timestamp|user|size|sha1|comment")["query"]["pages"][0]
    revision = info["revisions"][0]
    title = info["title"].replace(" ", "_")
    event: dict[str, Any] = {
        "$schema": "/mediawiki/page/change/1.0.0",
        "meta": {"stream": "mediawiki.page_change.v1", "domain": host, "dt": revision["timestamp"],
                 "id": str(uuid.uuid4()), "request_id": str(uuid.uuid4()),
                 "uri": f"https://{host}/wiki/{quote(title)}"},
        "wiki_id": dbname,
        "page_change_kind": "edit",
        "changelog_kind": "update",
        "dt": revision["timestamp"],
        "comment": revision.get("comment", ""),
        "page": {"page_id": info["pageid"], "page_title": title, "namespace_id": info["ns"],
                 "is_redirect": "redirect" in info},
        "revision": {
            "rev_id": rev_id, "rev_dt": revision["timestamp"], "rev_size": revision["size"],
            "rev_sha1": revision["sha1"], "comment": revision.get("comment", ""), "is_minor_edit": False,
            "is_content_visible": True, "is_comment_visible": True, "is_editor_visible": True,
            "editor": {"user_text": revision["user"], "is_bot": False},
            "content_slots": {"main": {"slot_role": "main", "content_model": "wikitext",
                                       "content_format": "text/x-wiki", "content_size": revision["size"],
                                       "content_sha1": revision["sha1"], "origin_rev_id": rev_id}},
        },
        "performer": {"user_text": revision["user"], "groups": ["*", "user"], "is_bot": False},
    }
    if revision.get("parentid"):
        event["revision"]["rev_parent_id"] = revision["parentid"]
    event.update(copy.deepcopy(changes))
    INPUT.validate(event)
    return event


def sent_for(receiver, event: dict[str, Any], since: int) -> list[dict[str, Any]]:
    """The events about `event`'s revision posted after the receiver's first `since` events (output events
    repeat nothing of the input, its request id included), after giving duplicates time to arrive."""
    rev_id = event["revision"]["rev_id"]
    time.sleep(SETTLE_S)
    return [sent for sent in list(receiver.events)[since:]
            if (sent.get("revision") or {}).get("rev_id") == rev_id]


def user_performer(reference, host: str, user: str) -> dict[str, Any]:
    """page/change's performer for a registered `user`, from the farm's list=users (the reference)."""
    (info,) = reference.get(host, action="query", list="users", ususers=user,
                            usprop="groups|editcount|registration")["query"]["users"]
    performer = {"user_text": info["name"], "user_id": info["userid"], "groups": info["groups"],
                 "is_bot": "bot" in info["groups"], "edit_count": info["editcount"]}
    if info.get("registration"):
        performer["registration_dt"] = info["registration"]
    return performer


def expected_results(reference, qids: list[str], threshold: float = 0.5) -> list[tuple[str, float]]:
    scores = reference.scores(qids)
    return sorted(((topic, score) for topic, score in scores.items() if score >= threshold),
                  key=lambda pair: (-pair[1], pair[0]))


def results(response) -> list[tuple[str, float]]:
    assert response.status_code == 200, response.text
    return [(result["topic"], result["score"]) for result in response.json()["prediction"]["results"]]


def assert_same(actual: list[tuple[str, float]], expected: list[tuple[str, float]]) -> None:
    assert [topic for topic, _ in actual] == [topic for topic, _ in expected]
    assert [score for _, score in actual] == pytest.approx([score for _, score in expected], rel=1e-5)


def first_revision(wiki: dict, title: str) -> int:
    return next(page for page in wiki["pages"] if page["title"] == title)["rev_ids"][0]


def test_an_event_gives_the_topics_at_its_revision_and_posts_exactly_one_event(
        server, reference, enwiki, event_receiver, outlink_model):
    title = enwiki["special"]["many_links_title"]
    rev_id = first_revision(enwiki, title)  # an old revision: its links differ from the current page's
    qids = reference.qids(EN, reference.revision_titles(EN, rev_id))
    assert qids and set(qids) != set(reference.page_qids(EN, title))
    event = page_change(reference, EN, "enwiki", rev_id)

    since = len(event_receiver.events)
    response = predict(server, {"event": event})
    expected = expected_results(reference, qids)
    assert_same(results(response), expected)
    assert response.json()["prediction"]["article"] == f"https://{EN}/wiki/{quote(title.replace(' ', '_'))}"

    (sent,) = sent_for(event_receiver, event, since)
    OUTPUT.validate(sent)
    assert sent["meta"]["stream"] == EVENT_STREAM and sent["meta"]["domain"] == EN
    assert sent["meta"]["id"] != event["meta"]["id"] and "request_id" not in sent["meta"]
    # Every fact is MediaWiki's (the event was built from the same facts, so they agree), nothing copied.
    assert (sent["page"], sent["wiki_id"]) == (event["page"], "enwiki")
    assert sent["performer"] == user_performer(reference, EN, event["performer"]["user_text"])
    expected_revision = {"rev_id": rev_id, "rev_dt": event["revision"]["rev_dt"]}
    if event["revision"].get("rev_parent_id"):
        expected_revision["rev_parent_id"] = event["revision"]["rev_parent_id"]
    assert sent["revision"] == expected_revision and "comment" not in sent
    kind = "edit" if "rev_parent_id" in expected_revision else "create"
    assert (sent["dt"], sent["page_change_kind"]) == (event["revision"]["rev_dt"], kind)
    classification = sent["predicted_classification"]
    digest = hashlib.sha256(outlink_model.read_bytes()).hexdigest()
    version = f"sha256:{digest[:12]}"
    assert (classification["model_name"], classification["model_version"]) == (MODEL_NAME, version)
    assert classification["predictions"] == [topic for topic, _ in expected]
    every_topic = reference.scores(qids)
    assert classification["probabilities"].keys() == every_topic.keys()
    for topic, probability in every_topic.items():
        assert classification["probabilities"][topic] == pytest.approx(probability, rel=1e-5)


def test_an_event_for_a_page_without_outlinks_is_an_answer_with_no_topics(
        server, reference, page_without_outlinks, event_receiver):
    info = reference.get(EN, action="query", titles=page_without_outlinks, prop="revisions",
                         rvprop="ids")["query"]["pages"][0]
    event = page_change(reference, EN, "enwiki", info["revisions"][0]["revid"])
    since = len(event_receiver.events)
    response = predict(server, {"event": event})
    assert results(response) == []
    (sent,) = sent_for(event_receiver, event, since)
    OUTPUT.validate(sent)
    classification = sent["predicted_classification"]
    assert (classification["predictions"], classification["probabilities"]) == ([], {})


def _refused_events(reference, farm, enwiki) -> list[tuple[dict[str, Any], str]]:
    title = enwiki["special"]["redirect_target"]
    rev_id = first_revision(enwiki, title)
    base = page_change(reference, EN, "enwiki", rev_id)
    talk_page = {**base["page"], "namespace_id": 1, "page_title": f"Talk:{base['page']['page_title']}"}
    hidden = {**base["revision"], "is_content_visible": False}
    wikidata = farm.manifest["wikidatawiki"]
    item = wikidata["pages"][0]
    return [
        (page_change(reference, EN, "enwiki", rev_id, page=talk_page), "not the main (article) namespace"),
        (page_change(reference, EN, "enwiki", rev_id, wiki_id="enwiktionary",
                     meta={**base["meta"], "domain": "en.wiktionary.org"}),
         "wiki 'enwiktionary', which is not a Wikipedia"),
        (page_change(reference, EN, "enwiki", rev_id, wiki_id="enwiktionary"),
         "wiki 'enwiktionary', which is not a Wikipedia"),
        (page_change(reference, EN, "enwiki", rev_id, meta={**base["meta"], "domain": "en.wiktionary.org"}),
         "domain 'en.wiktionary.org' is not a Wikipedia"),
        (page_change(reference, wikidata["host"], "wikidatawiki", item["rev_ids"][0]), "not a Wikipedia"),
        (page_change(reference, EN, "enwiki", rev_id, page_change_kind="delete", changelog_kind="delete"),
         "deletes page"),
        (page_change(reference, EN, "enwiki", rev_id, page_change_kind="visibility_change", revision=hidden),
         "is hidden"),
    ]


def test_events_without_an_article_to_predict_are_refused_and_post_nothing(
        server, reference, farm, enwiki, event_receiver):
    for event, message in _refused_events(reference, farm, enwiki):
        since = len(event_receiver.events)
        response = predict(server, {"event": event})
        assert response.status_code == 400, (event, response.text)
        assert message in response.json()["error"], response.json()
        assert sent_for(event_receiver, event, since) == []


@pytest.mark.parametrize(("body", "message"), [
    ({"event": {"$schema": "/mediawiki/revision/create/1.1.0"}}, "'event.database' is required"),
    ({"event": "edit"}, "'event' must be a JSON object"),
    ({"event": {"$schema": "/mediawiki/page/change/2.0.0"}}, "Unsupported event schema"),
])
def test_malformed_events_are_400(server, body, message):
    response = predict(server, body)
    assert response.status_code == 400 and message in response.json()["error"], response.text


def test_features_str_beside_an_event_is_refused_and_posts_nothing(server, reference, enwiki, event_receiver):
    """Topics of the client's choosing must never be posted as the page's (the transformer used to forward
    an event with the Q-ids it fetched; the predictor believed any)."""
    rev_id = first_revision(enwiki, enwiki["special"]["many_links_title"])
    event = page_change(reference, EN, "enwiki", rev_id)
    since = len(event_receiver.events)
    response = predict(server, {"event": event, "features_str": "Q1 Q2"})
    assert response.status_code == 400, response.text
    assert "Give either 'event' or 'features_str', not both" in response.json()["error"]
    assert sent_for(event_receiver, event, since) == []


def _page(enwiki: dict, title: str) -> dict:
    return next(page for page in enwiki["pages"] if page["title"] == title)


def test_events_mediawiki_contradicts_are_400_naming_the_contradiction_and_post_nothing(
        server, reference, enwiki, event_receiver):
    title = enwiki["special"]["many_links_title"]
    page, other = _page(enwiki, title), _page(enwiki, enwiki["special"]["redirect_target"])
    rev_id = page["rev_ids"][0]
    base = page_change(reference, EN, "enwiki", rev_id)
    facts = reference.get(EN, action="query", revids=rev_id)["query"]["pages"][0]  # the reference's ids
    assert (facts["pageid"], facts["title"]) == (page["page_id"], title)
    other_title = other["title"].replace(" ", "_")
    cases = [
        ({**base["page"], "page_id": other["page_id"]},  # the page's title with another page's id
         f"The event gives page title {title!r} with page id {other['page_id']}, but on {EN} that title is "
         f"page id {page['page_id']}"),
        ({**base["page"], "page_id": other["page_id"], "page_title": other_title},  # another page's revision
         f"Revision {rev_id} on {EN} belongs to page id {page['page_id']} ({title!r}), not to the event's "
         f"page id {other['page_id']}"),
        ({**base["page"], "page_title": other_title},  # the page's id with another page's title
         f"that title is page id {other['page_id']}; page id {page['page_id']} is {title!r}"),
    ]
    for claimed_page, message in cases:
        event = page_change(reference, EN, "enwiki", rev_id, page=claimed_page)
        since = len(event_receiver.events)
        response = predict(server, {"event": event})
        assert response.status_code == 400, response.text
        assert message in response.json()["error"], response.json()["error"]
        assert sent_for(event_receiver, event, since) == []


def test_the_posted_event_states_mediawikis_facts_not_the_events_claims(
        server, reference, enwiki, event_receiver):
    """A page renamed since the event (same id, an old title that leads nowhere now) is scored under its
    name today; a false redirect flag and a false performer are replaced by MediaWiki's."""
    title = enwiki["special"]["many_links_title"]
    rev_id = _page(enwiki, title)["rev_ids"][0]
    base = page_change(reference, EN, "enwiki", rev_id)
    assert reference.get(EN, action="query", titles=f"{title} (old name)")["query"]["pages"][0]["missing"]
    event = page_change(reference, EN, "enwiki", rev_id,
                        page={**base["page"], "page_title": f"{title}_(old_name)", "is_redirect": True},
                        performer={"user_text": "Somebody else", "groups": ["*", "user", "sysop", "bot"],
                                   "is_bot": True, "user_id": 1})
    since = len(event_receiver.events)
    response = predict(server, {"event": event})
    assert response.status_code == 200, response.text
    assert response.json()["prediction"]["article"] == f"https://{EN}/wiki/{quote(title.replace(' ', '_'))}"
    (sent,) = sent_for(event_receiver, event, since)
    OUTPUT.validate(sent)
    assert sent["page"] == base["page"]  # MediaWiki's title and redirect flag
    assert sent["performer"] == user_performer(reference, EN, base["performer"]["user_text"])
    assert sent["meta"]["uri"] == f"https://{EN}/wiki/{quote(title.replace(' ', '_'))}"


def test_other_fields_beside_an_event_are_refused(server, reference, enwiki):
    event = page_change(reference, EN, "enwiki", first_revision(enwiki, enwiki["special"]["redirect_target"]))
    response = predict(server, {"event": event, "lang": "en"})
    assert response.status_code == 400 and "leave out 'lang'" in response.json()["error"], response.text


def _farm_php(farm, *args: str, stdin: str = "") -> None:
    """Runs a MediaWiki maintenance script on the farm, as an administrator would on a real wiki."""
    done = subprocess.run(["php", *args], input=stdin.encode(), cwd=FarmPaths().mw_dir, capture_output=True,
                          env=php_env(FarmPaths(state_dir=farm.state_dir)), timeout=120, check=False)
    assert done.returncode == 0, done.stdout.decode(errors="replace") + done.stderr.decode(errors="replace")


def test_a_page_deleted_between_the_event_and_the_fetch_is_a_400(server, farm, reference, enwiki,
                                                                  event_receiver, tmp_path):
    # A page of its own (created, then really deleted, with MediaWiki's maintenance scripts), so no other
    # test loses a page.
    title = f"Deleted after its event {uuid.uuid4().hex[:8]}"
    linked = enwiki["special"]["redirect_target"]
    _farm_php(farm, "maintenance/edit.php", "--wiki=enwiki", "--user=Farm Editor", "--summary=created",
              "--no-rc", title, stdin=f"Links to [[{linked}]].")
    rev_id = reference.get(EN, action="query", titles=title, prop="revisions",
                           rvprop="ids")["query"]["pages"][0]["revisions"][0]["revid"]
    event = page_change(reference, EN, "enwiki", rev_id)
    listing = tmp_path / "delete.txt"
    listing.write_text(title + "\n")
    _farm_php(farm, "maintenance/deleteBatch.php", "--wiki=enwiki", "--u=Farm Editor", "--r=test",
              str(listing))
    assert reference.get(EN, action="query", titles=title)["query"]["pages"][0].get("missing")

    since = len(event_receiver.events)
    response = predict(server, {"event": event})
    assert response.status_code == 400, response.text
    assert "was deleted after the event" in response.json()["error"]
    assert sent_for(event_receiver, event, since) == []


def test_an_eventgate_failure_is_logged_and_counted_and_the_answer_stands(
        server, outlink_servers, reference, enwiki, event_receiver):
    poster = server  # the predictor alone; in the chain, the transformer (which checked the event)
    title = enwiki["special"]["redirect_target"]
    rev_id = first_revision(enwiki, title)
    event = page_change(reference, EN, "enwiki", rev_id)
    failed_before = metric_total(poster, "eventgate_events_failed_total", stream=EVENT_STREAM)
    event_receiver.status = 500
    try:
        response = predict(server, {"event": event})
    finally:
        event_receiver.status = 201
    assert_same(results(response), expected_results(reference, reference.qids(
        EN, reference.revision_titles(EN, rev_id))))
    assert metric_total(poster, "eventgate_events_failed_total", stream=EVENT_STREAM) == failed_before + 1
    assert "Could not send event to EventGate" in poster.log_tail(400)


def test_behind_the_transformer_the_predictor_never_sees_the_event_or_mediawiki(
        outlink_servers, reference, enwiki, event_receiver):
    """In production the predictor cannot reach MediaWiki: the transformer checks the event and reads the
    outlinks, and posts the one event itself; the predictor only scores."""
    transformer, predictor = outlink_servers["transformer"], outlink_servers["predictor"]
    rev_id = first_revision(enwiki, enwiki["special"]["many_links_title"])
    event = page_change(reference, EN, "enwiki", rev_id)
    calls_before = metric_total(predictor, "mediawiki_request_duration_seconds_count")
    transformer_calls = metric_total(transformer, "mediawiki_request_duration_seconds_count")
    sent_before = metric_total(predictor, "eventgate_events_sent_total", stream=EVENT_STREAM)
    since = len(event_receiver.events)
    response = predict(transformer, {"event": event})
    assert response.status_code == 200, response.text
    (sent,) = sent_for(event_receiver, event, since)
    assert metric_total(transformer, "mediawiki_request_duration_seconds_count") > transformer_calls
    assert metric_total(predictor, "mediawiki_request_duration_seconds_count") == calls_before
    assert metric_total(predictor, "eventgate_events_sent_total", stream=EVENT_STREAM) == sent_before
    assert metric_total(transformer, "eventgate_events_sent_total", stream=EVENT_STREAM) >= 1
