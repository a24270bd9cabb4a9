"""Bad input, over HTTP, against every server kind: each is a clear 4xx, and the server keeps serving.

The same battery runs against the revscoring server, the outlink predictor and the outlink transformer.
Bodies are sent as raw bytes, so malformed JSON and odd content types reach the server as a client sent them.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
import requests
from reliability_kit import (
    MODEL_OF,
    OUTLINK_MODEL,
    REVSCORING_ISVC,
    good,
    is_ready,
    post_raw,
    reference_outlink_scores,
    reference_revscoring_score,
)

KINDS = ("revscoring", "predictor", "transformer")
ID_FIELD = {"revscoring": "rev_id", "predictor": "page_id", "transformer": "page_id"}
ONE_MB = 1024 * 1024

Body = Callable[[str, dict[str, Any]], Any]  # (server kind, enwiki manifest) -> JSON value


def with_id(value: Any) -> Body:
    """The kind's integer id field (`rev_id`, or outlink's `page_id`) set to `value`."""

    def body(kind: str, enwiki: dict[str, Any]) -> dict[str, Any]:
        if kind == "revscoring":
            return {"rev_id": value}
        return {"lang": "en", "page_id": value}

    return body


def plus(**extra: Any) -> Body:
    return lambda kind, enwiki: {**good(kind, enwiki), **extra}


def outlink_only(**fields: Any) -> Body:
    """An outlink field with a bad value; the revscoring server has no such field (unknown field: 400)."""
    return lambda kind, enwiki: {**good(kind, enwiki), **fields}


# (id, raw body or body builder, content type, expected status, fragments: one of them must be in the error)
RAW_CASES = [
    ("malformed-json", '{"rev_id": 1,', "application/json", 400, ("JSON", "request format")),
    ("malformed-json-text-plain", '{"rev_id": 1,', "text/plain", 400, ("not valid JSON",)),
    ("not-utf8", b'{"rev_id": "\xff\xfe"}', "application/json", 400, ("JSON", "request format", "UTF")),
    ("array", "[1, 2]", "application/json", 400, ("JSON object",)),
    ("string", '"rev_id"', "application/json", 400, ("JSON object",)),
    ("number", "42", "application/json", 400, ("JSON object",)),
    ("null", "null", "application/json", 400, ("JSON object",)),
    ("empty-json", "", "application/json", 400, ("empty", "JSON", "request format")),
    ("empty-text", "", "text/plain", 400, ("empty",)),
    ("whitespace", "  \n ", "text/plain", 400, ("empty",)),
]

FIELD_CASES = [
    ("id-as-string", with_id("12345"), ("integer",)),
    ("id-as-float", with_id(5.0), ("integer",)),
    ("id-as-bool", with_id(True), ("integer",)),
    ("id-as-null", with_id(None), ("required", "exactly one")),
    ("id-as-list", with_id([5]), ("integer",)),
    ("id-as-object", with_id({"id": 5}), ("integer",)),
    ("id-zero", with_id(0), ("between",)),
    ("id-negative", with_id(-7), ("between",)),
    ("id-2^63", with_id(2**63), ("between",)),
    # Beyond 64 bits KServe's JSON decoder (orjson) yields a float: "must be an integer" is still right.
    ("id-2^64+1", with_id(2**64 + 1), ("between", "integer")),
    ("id-1e30", with_id(10**30), ("between", "integer")),
    ("unknown-field", plus(model_path="/etc/passwd"), ("Unknown field",)),
    ("unknown-fields-many", plus(a=1, b=2, c=3), ("Unknown field",)),
]

# Values that end up in host names, URLs or API parameters on the outlink servers.
TITLES = ["A|B", "Foo#bar", "<script>", "Tab\there", "Line\nbreak", "Bell\x07", "Del\x7f", "../../etc",
          "%7C", "~~~~"]
LANGS = ["en.evil.example", "../", "EN", "en ", " en", "en\n", "", "en/../de", "evil.example#", "enwiki"]
WIKI_IDS = ["enwiki.evil.example", "../enwiki", "ENWIKI", "en"]


def _check_4xx(response: requests.Response, status: int, fragments: tuple[str, ...], field: str = "") -> str:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert isinstance(error, str) and 10 <= len(error) <= 1000, error
    assert any(fragment.lower() in error.lower() for fragment in fragments), error
    assert "Traceback" not in error
    if field:
        assert field in error, error
    return error


@pytest.fixture(params=KINDS)
def kind(request: pytest.FixtureRequest, baseline: dict[str, Any]) -> str:
    return request.param


@pytest.mark.parametrize(
    "data, content_type, status, fragments", [case[1:] for case in RAW_CASES], ids=[c[0] for c in RAW_CASES]
)
def test_malformed_bodies_are_400(servers, kind, proxy, data, content_type, status, fragments):
    response = post_raw(servers[kind], MODEL_OF[kind], data, content_type)
    _check_4xx(response, status, fragments)
    assert proxy.requests == []  # refused before any MediaWiki call


@pytest.mark.parametrize(
    "build, fragments", [case[1:] for case in FIELD_CASES], ids=[case[0] for case in FIELD_CASES]
)
def test_bad_fields_are_400_naming_the_field(servers, kind, enwiki, proxy, build, fragments):
    body = build(kind, enwiki)
    response = post_raw(servers[kind], MODEL_OF[kind], json.dumps(body))
    named = sorted(set(body) - set(good(kind, enwiki)))[0] if "nknown" in fragments[0] else ID_FIELD[kind]
    _check_4xx(response, 400, fragments, named)
    assert proxy.requests == []


@pytest.mark.parametrize("title", TITLES)
def test_titles_with_forbidden_characters_are_400(servers, kind, enwiki, proxy, title):
    response = servers[kind].predict(MODEL_OF[kind], plus(page_title=title)(kind, enwiki))
    if kind == "revscoring":
        _check_4xx(response, 400, ("Unknown field",), "page_title")
    else:
        _check_4xx(response, 400, ("page_title",))
    assert proxy.requests == []


@pytest.mark.parametrize("title", ["Несуществующая статья", "存在しないページ", "صفحة غير موجودة"])
def test_non_latin_titles_are_looked_up_not_refused(servers, kind, enwiki, proxy, title):
    """Valid titles in any script reach MediaWiki (URL-encoded) and come back as a clear 'does not exist'."""
    response = servers[kind].predict(MODEL_OF[kind], plus(page_title=title)(kind, enwiki))
    if kind == "revscoring":
        _check_4xx(response, 400, ("Unknown field",), "page_title")
        return
    _check_4xx(response, 400, ("does not exist",))
    assert title in response.json()["error"]
    assert any(params.get("titles") == title for params in proxy.requests), proxy.requests


@pytest.mark.parametrize("lang", LANGS)
def test_languages_outside_the_allowlist_are_400(servers, kind, enwiki, proxy, lang):
    body = {key: value for key, value in good(kind, enwiki).items() if key != "lang"}
    response = servers[kind].predict(MODEL_OF[kind], {**body, "lang": lang})
    if kind == "revscoring":
        _check_4xx(response, 400, ("Unknown field",), "lang")
    else:
        _check_4xx(response, 400, ("lang",))
    assert proxy.requests == []  # no host was ever built from it


@pytest.mark.parametrize("wiki_id", WIKI_IDS)
def test_wiki_ids_outside_the_allowlist_are_400(servers, kind, enwiki, proxy, wiki_id):
    body = {key: value for key, value in good(kind, enwiki).items() if key != "lang"}
    response = servers[kind].predict(MODEL_OF[kind], {**body, "wiki_id": wiki_id})
    _check_4xx(response, 400, ("Unknown field",) if kind == "revscoring" else ("wiki_id",), "wiki_id")
    assert proxy.requests == []


def test_bodies_over_one_megabyte_are_413(servers, kind, enwiki, proxy):
    big = json.dumps({**good(kind, enwiki), "padding": "x" * (ONE_MB + 10)})
    response = post_raw(servers[kind], MODEL_OF[kind], big)
    _check_4xx(response, 413, ("larger than",))
    chunked = requests.post(  # no Content-Length: the limit is enforced while reading
        f"{servers[kind].url}/v1/models/{MODEL_OF[kind]}:predict",
        data=(big[i : i + 65536].encode() for i in range(0, len(big), 65536)),
        headers={"Content-Type": "application/json"},
        timeout=60,
    )
    assert chunked.status_code == 413, chunked.text
    assert proxy.requests == []


def test_a_body_just_under_the_limit_is_read(servers, kind, enwiki):
    """The limit is 1 MB, not less: a large body with an unknown field is refused as such, not as 413."""
    body = json.dumps({**good(kind, enwiki), "padding": "x" * (ONE_MB - 1000)})
    _check_4xx(post_raw(servers[kind], MODEL_OF[kind], body), 400, ("Unknown field",), "padding")


UNKNOWN_MODELS = ["nope", "enwiki-goodfaith", "..%2F..%2Fetc%2Fpasswd", "outlink-topic-model2"]


@pytest.mark.parametrize("name", UNKNOWN_MODELS)
def test_unknown_model_names_are_404(servers, kind, enwiki, name):
    response = servers[kind].predict(name, good(kind, enwiki))
    assert response.status_code == 404, response.text
    # An encoded '/' makes another path: the router answers (FastAPI's {"detail": ...}), not the model.
    answer = response.json()
    assert "does not exist" in answer.get("error", "") or answer.get("detail") == "Not Found", answer


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", None])
def test_valid_json_without_a_json_content_type_works(servers, kind, enwiki, baseline, content_type):
    response = post_raw(servers[kind], MODEL_OF[kind], json.dumps(good(kind, enwiki)), content_type)
    assert response.status_code == 200, response.text
    assert response.json() == baseline[kind]


def test_after_the_battery_every_server_is_ready_and_scores_as_before(servers, enwiki, baseline):
    for kind in KINDS:
        assert servers[kind].process.poll() is None
        assert is_ready(servers[kind], MODEL_OF[kind]), kind
        response = servers[kind].predict(MODEL_OF[kind], good(kind, enwiki))
        assert response.status_code == 200, response.text
        assert response.json() == baseline[kind], kind
    assert baseline["predictor"] == baseline["transformer"]  # two paths, one answer


@pytest.mark.parametrize("rev_key", ["good_rev_id", "anon_rev_id", "newcomer_rev_id"])
def test_after_the_battery_revscoring_scores_correctly(servers, farm, model_paths, rev_key):
    """Correct = what revscoring itself computes (its own API extractor, straight to the farm)."""
    rev_id = farm.manifest["enwiki"]["special"][rev_key]
    response = servers["revscoring"].predict(REVSCORING_ISVC, {"rev_id": rev_id})
    assert response.status_code == 200, response.text
    served = response.json()["enwiki"]["scores"][str(rev_id)]["damaging"]["score"]
    expected = reference_revscoring_score(farm.url, model_paths["revscoring"], rev_id)
    assert served["prediction"] == expected["prediction"]
    for label, probability in expected["probability"].items():
        assert served["probability"][str(label).lower()] == pytest.approx(probability, abs=1e-9)


@pytest.mark.parametrize("kind", ["predictor", "transformer"])
def test_after_the_battery_outlink_scores_correctly(servers, farm, model_paths, enwiki, kind):
    """Correct = fastText's own scores for the Q-ids of the page's links, read straight from the farm."""
    title = enwiki["special"]["many_links_title"]  # more links than one API page (20 here) holds
    response = servers[kind].predict(OUTLINK_MODEL, {"lang": "en", "page_title": title, "debug": True})
    assert response.status_code == 200, response.text
    served = {entry["topic"]: entry["score"] for entry in response.json()["prediction"]["results"]}
    expected = reference_outlink_scores(farm.url, model_paths["outlink"], title)
    assert served.keys() == expected.keys()
    for topic, score in expected.items():
        assert served[topic] == pytest.approx(score, abs=1e-6), topic
