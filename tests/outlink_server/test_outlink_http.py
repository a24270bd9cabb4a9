"""The outlink topic model over HTTP against the farm: the predictor alone and the transformer -> predictor
chain (both real subprocess servers) must give the same answers, which must match the reference."""

from __future__ import annotations

from urllib.parse import quote

import pytest
import requests
from outlink_testing import LINKS_PER_CALL, MODEL_NAME, metric_total, predict

EN = "en.wikipedia.org"


def _page(wiki: dict, title: str) -> dict:
    return next(page for page in wiki["pages"] if page["title"] == title)


def _expected(reference, qids: list[str], threshold: float) -> list[tuple[str, float]]:
    scores = reference.scores(qids)
    return sorted(((topic, score) for topic, score in scores.items() if score >= threshold),
                  key=lambda pair: (-pair[1], pair[0]))


def _results(response: requests.Response) -> list[tuple[str, float]]:
    assert response.status_code == 200, response.text
    return [(result["topic"], result["score"]) for result in response.json()["prediction"]["results"]]


def _assert_same(actual: list[tuple[str, float]], expected: list[tuple[str, float]]) -> None:
    assert [topic for topic, _ in actual] == [topic for topic, _ in expected]
    assert [score for _, score in actual] == pytest.approx([score for _, score in expected], rel=1e-5)


def test_by_title(server, reference, enwiki):
    title = enwiki["special"]["redirect_target"]
    qids = reference.page_qids(EN, title)
    assert len(qids) > 1
    response = predict(server, {"lang": "en", "page_title": title})
    assert response.json()["prediction"]["article"] == f"https://{EN}/wiki/{title}"
    _assert_same(_results(response), _expected(reference, qids, 0.5))


def test_by_page_id(server, reference, enwiki):
    page = _page(enwiki, enwiki["special"]["redirect_target"])
    qids = reference.page_qids(EN, page_id=page["page_id"])
    response = predict(server, {"lang": "en", "page_id": page["page_id"], "debug": True})
    assert response.json()["prediction"]["article"] == f"https://{EN}/wiki/?curid={page['page_id']}"
    _assert_same(_results(response), _expected(reference, qids, 0.0))


def test_by_wiki_id_with_a_non_latin_title(server, reference, farm):
    wiki = farm.manifest["fawiki"]
    page = next(page for page in wiki["pages"] if page.get("kind") == "article")
    qids = reference.page_qids(wiki["host"], page["title"])
    assert qids
    response = predict(server, {"wiki_id": "fawiki", "page_title": page["title"], "debug": True})
    url = f"https://fa.wikipedia.org/wiki/{quote(page['title'].replace(' ', '_'))}"
    assert response.json()["prediction"]["article"] == url
    _assert_same(_results(response), _expected(reference, qids, 0.0))


def test_redirect_is_followed(server, reference, enwiki):
    special = enwiki["special"]
    by_redirect = predict(server, {"lang": "en", "page_title": special["redirect_title"], "debug": True})
    by_target = predict(server, {"lang": "en", "page_title": special["redirect_target"], "debug": True})
    assert _results(by_redirect) == _results(by_target)
    assert by_redirect.json()["prediction"]["article"].endswith(f"/wiki/{special['redirect_title']}")


def test_revision_id_uses_that_revisions_links(server, reference, enwiki):
    title = enwiki["special"]["many_links_title"]
    first_revision = _page(enwiki, title)["rev_ids"][0]
    old_qids = reference.qids(EN, reference.revision_titles(EN, first_revision))
    current_qids = reference.page_qids(EN, title)
    assert old_qids and set(old_qids) != set(current_qids)  # otherwise this test could not tell them apart
    body = {"lang": "en", "page_title": title, "revision_id": first_revision, "debug": True}
    response = predict(server, body)
    _assert_same(_results(response), _expected(reference, old_qids, 0.0))
    assert response.json()["prediction"]["article"] == f"https://{EN}/wiki/{title}"


def test_debug_returns_every_topic(server, reference, enwiki):
    title = enwiki["special"]["redirect_target"]
    results = _results(predict(server, {"lang": "en", "page_title": title, "debug": True, "threshold": 0.9}))
    assert len(results) == len(reference.model.get_labels())
    assert min(score for _, score in results) < 0.5  # below the default threshold, yet returned
    assert [score for _, score in results] == sorted((score for _, score in results), reverse=True)
    assert all(0.0 <= score <= 1.0 for _, score in results)


def test_threshold_keeps_scores_at_or_above_it(server, reference, enwiki):
    title = enwiki["special"]["redirect_target"]
    scores = sorted(reference.scores(reference.page_qids(EN, title)).values(), reverse=True)
    threshold = (scores[1] + scores[2]) / 2  # strictly between the 2nd and 3rd best scores
    assert scores[1] > threshold > scores[2]
    results = _results(predict(server, {"lang": "en", "page_title": title, "threshold": threshold}))
    assert [score for _, score in results] == pytest.approx(scores[:2], rel=1e-5)


def test_features_str_needs_no_mediawiki(server, reference, enwiki):
    qids = [page["qid"] for page in enwiki["pages"] if page.get("qid")][:12]
    before = metric_total(server, "mediawiki_request_duration_seconds_count")
    # The title does not exist on the wiki: with features_str it only names the article in the answer.
    body = {"lang": "en", "page_title": "Not a page at all", "features_str": " ".join(qids), "debug": True}
    response = predict(server, body)
    _assert_same(_results(response), _expected(reference, qids, 0.0))
    assert response.json()["prediction"]["article"] == f"https://{EN}/wiki/Not_a_page_at_all"
    assert metric_total(server, "mediawiki_request_duration_seconds_count") == before


def test_pagination_follows_continuation(server, reference, enwiki):
    title = enwiki["special"]["many_links_title"]
    links = reference.linked_titles(EN, title)
    qids = reference.page_qids(EN, title)
    assert len(links) > 2 * int(LINKS_PER_CALL) and len(qids) > int(LINKS_PER_CALL)
    before = metric_total(server, "mediawiki_request_duration_seconds_count", action="query")
    response = predict(server, {"lang": "en", "page_title": title, "debug": True})
    calls = metric_total(server, "mediawiki_request_duration_seconds_count", action="query") - before
    assert calls >= len(links) / int(LINKS_PER_CALL)  # one call per page of links: continuation followed
    _assert_same(_results(response), _expected(reference, qids, 0.0))


def test_response_shape(server, enwiki):
    response = predict(server, {"lang": "en", "page_title": enwiki["special"]["redirect_target"]})
    body = response.json()
    assert set(body) == {"prediction"} and set(body["prediction"]) == {"article", "results"}
    assert all(set(result) == {"topic", "score"} for result in body["prediction"]["results"])
    assert all(result["score"] >= 0.5 for result in body["prediction"]["results"])


@pytest.mark.parametrize("body", [
    {"lang": "en", "debug": True},
    {"lang": "en", "threshold": 0.0},
    {"lang": "en", "features_str": "   "},
])
def test_a_page_without_outlinks_is_an_answer_with_no_topics(server, page_without_outlinks, body):
    response = predict(server, {**body, "page_title": page_without_outlinks})
    assert response.status_code == 200, response.text
    assert response.json() == {"prediction": {
        "article": f"https://{EN}/wiki/{quote(page_without_outlinks.replace(' ', '_'))}", "results": []}}


def test_a_page_without_outlinks_by_id_and_revision_is_an_answer(server, reference, page_without_outlinks):
    page = reference.get(EN, action="query", titles=page_without_outlinks, prop="revisions",
                         rvprop="ids")["query"]["pages"][0]
    revision_id = page["revisions"][0]["revid"]
    assert not reference.qids(EN, reference.revision_titles(EN, revision_id))
    body = {"lang": "en", "page_id": page["pageid"], "revision_id": revision_id, "debug": True}
    response = predict(server, body)
    assert response.status_code == 200, response.text
    assert response.json()["prediction"]["results"] == []


def _bad_requests(enwiki: dict) -> list[tuple[dict, str]]:
    special = enwiki["special"]
    target = special["redirect_target"]
    other_page_revision = _page(enwiki, special["many_links_title"])["rev_ids"][-1]
    return [
        ({"lang": "en", "page_title": target, "page_id": 1}, "exactly one of 'page_title' or 'page_id'"),
        ({"lang": "en"}, "exactly one of 'page_title' or 'page_id'"),
        ({"lang": "en", "page_title": "No such page here"}, "does not exist"),
        ({"lang": "en", "page_id": 987654321}, "does not exist"),
        ({"lang": "en", "page_title": target, "threshold": "high"}, "'threshold' must be a number"),
        ({"lang": "en", "page_title": target, "threshold": 1.5}, "'threshold' must be between"),
        ({"lang": "en", "page_title": target, "debug": "yes"}, "'debug' must be a boolean"),
        ({"lang": "en.evil.example", "page_title": target}, "'lang'"),
        ({"lang": "../", "page_title": target}, "'lang'"),
        ({"lang": "EN", "page_title": target}, "'lang'"),
        ({"lang": "en ", "page_title": target}, "'lang'"),
        ({"lang": "xx", "page_title": target}, "'lang'"),
        ({"wiki_id": "enwiktionary", "page_title": target}, "'wiki_id'"),
        ({"wiki_id": "enwiki", "lang": "fr", "page_title": target}, "different wikis"),
        ({"page_title": target}, "'lang'"),
        ({"lang": "en", "page_title": target, "revision_id": 2**40}, "does not exist"),
        ({"lang": "en", "page_title": target, "revision_id": special["hidden_rev_id"]}, "hidden"),
        ({"lang": "en", "page_title": target, "revision_id": other_page_revision}, "belongs to"),
        ({"lang": "en", "page_title": f"{target}|{special['many_links_title']}"}, "'|'"),
        ({"lang": "en", "page_title": f"{target}#History"}, "'#'"),
        ({"lang": "en", "page_title": "<script>"}, "'<'"),
        ({"lang": "en", "page_title": "{{template}}"}, "'{'"),
        ({"lang": "en", "page_title": "[[link]]"}, "'['"),
        ({"lang": "en", "page_title": "a\u0007b"}, "control characters"),
        ({"lang": "en", "page_title": "../../w/api.php"}, "not a valid page title"),
        ({"lang": "en", "page_title": target, "colour": "red"}, "Unknown field(s) 'colour'"),
        ({"lang": "en", "page_title": target, "features_str": "Q1 Paris"}, "'features_str'"),
        ({"lang": "en", "page_title": target, "features_str": "Q1", "revision_id": 5}, "not both"),
        ({"lang": "en", "page_id": "12"}, "'page_id' must be an integer"),
        ({"lang": "en", "page_id": 0}, "'page_id' must be between"),
    ]


def test_bad_requests_are_400_with_a_clear_message(server, enwiki):
    for body, message in _bad_requests(enwiki):
        response = predict(server, body)
        assert response.status_code == 400, (body, response.text)
        assert message in response.json()["error"], (body, response.json())


def test_body_that_is_not_json_is_400(server):
    response = requests.post(f"{server.url}/v1/models/{MODEL_NAME}:predict", data=b"lang=en&page_title=x",
                             timeout=30)
    assert response.status_code == 400
    assert "JSON" in response.json()["error"]
