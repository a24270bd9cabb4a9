"""ORES's v3 API on the revscoring server: a real server, the farm behind a counting proxy, demo models.

Scores are checked against revscoring's own extractor calling the farm; MediaWiki calls are counted by the
proxy, extraction jobs by the server's own `feature_extraction_duration_seconds` histogram.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from ores_testing import (
    ORES_ISVCS,
    calls_for,
    edits,
    metric_value,
    model_version,
    ores_get,
    reference_score,
)
from testkit.ores_client import ensure_client_venv, ores_client_score
from testkit.servers import ServerProcess, start_server


@pytest.fixture(scope="module")
def ores_server(proxy, demo_models) -> Iterator[ServerProcess]:
    """Five services of two wikis, no score cache (so every request fetches and extracts)."""
    env = {
        "WIKI_URL": proxy.url,
        "SCORE_CACHE_SIZE": "0",
        "EXTRACTION_WORKERS": "1",
        "MEDIAWIKI_TIMEOUT_S": "8",
        "MEDIAWIKI_ATTEMPTS": "1",
    }
    args = ["revscoring_server", f"--models_dir={demo_models}", *[f"--isvc={isvc}" for isvc in ORES_ISVCS]]
    server = start_server("revscoring-ores", args, env, list(ORES_ISVCS), timeout_s=300)
    yield server
    assert server.stop() == 0, server.log_tail()


@pytest.fixture(autouse=True)
def no_faults(proxy) -> Iterator[None]:
    proxy.clear()
    yield
    proxy.clear()


def close_scores(actual: dict[str, Any], expected: dict[str, Any]) -> bool:
    return actual["prediction"] == expected["prediction"] and all(
        math.isclose(actual["probability"][label], value, rel_tol=1e-9)
        for label, value in expected["probability"].items()
    )


# 1. The API


def test_every_context_lists_its_models_with_the_binaries_versions(ores_server, demo_models):
    response = ores_get(ores_server, "/v3/scores/")
    assert response.status_code == 200, response.text
    expected: dict[str, dict[str, Any]] = {}
    for isvc in ORES_ISVCS:
        dbname, model = isvc.split("-")
        expected.setdefault(dbname, {"models": {}})["models"][model] = {
            "version": model_version(demo_models / isvc / "model.bin")
        }
    assert response.json() == expected


def test_a_context_lists_its_models(ores_server, demo_models):
    response = ores_get(ores_server, "/v3/scores/wikidatawiki/")
    assert response.status_code == 200, response.text
    assert response.json() == {
        "wikidatawiki": {
            "models": {
                "damaging": {"version": model_version(demo_models / "wikidatawiki-damaging" / "model.bin")},
                "itemquality": {
                    "version": model_version(demo_models / "wikidatawiki-itemquality" / "model.bin")
                },
            }
        }
    }


def test_scores_of_several_models_and_revisions_are_revscorings_own(ores_server, farm, demo_models):
    rev_ids = edits(farm, "enwiki", 4)
    response = ores_get(
        ores_server, "/v3/scores/enwiki/", models="damaging|goodfaith", revids="|".join(map(str, rev_ids))
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert list(body) == ["enwiki"]
    assert set(body["enwiki"]["models"]) == {"damaging", "goodfaith"}
    assert list(body["enwiki"]["scores"]) == [str(rev_id) for rev_id in rev_ids]
    for rev_id in rev_ids:
        for model in ("damaging", "goodfaith"):
            entry = body["enwiki"]["scores"][str(rev_id)][model]
            assert list(entry) == ["score"], entry
            expected = reference_score(farm, "enwiki", demo_models / f"enwiki-{model}" / "model.bin", rev_id)
            assert close_scores(entry["score"], expected), (rev_id, model, entry, expected)


def test_the_score_is_the_kserve_routes_score(ores_server, farm):
    rev_id = edits(farm, "enwiki", 1)[0]
    kserve = ores_server.predict("enwiki-articlequality", {"rev_id": rev_id, "extended_output": True}).json()
    ores = ores_get(ores_server, f"/v3/scores/enwiki/{rev_id}/articlequality", features="").json()
    assert ores == kserve


def test_features_adds_each_models_base_features(ores_server, farm):
    rev_id = edits(farm, "enwiki", 1)[0]
    body = ores_get(
        ores_server, "/v3/scores/enwiki/", models="damaging|articlequality", revids=rev_id, features=""
    ).json()
    for isvc, model in (("enwiki-damaging", "damaging"), ("enwiki-articlequality", "articlequality")):
        single = ores_server.predict(isvc, {"rev_id": rev_id, "extended_output": True}).json()
        assert body["enwiki"]["scores"][str(rev_id)][model] == single["enwiki"]["scores"][str(rev_id)][model]
        assert body["enwiki"]["scores"][str(rev_id)][model]["features"]


def test_one_revision_with_every_model_of_the_context(ores_server, farm):
    rev_id = edits(farm, "enwiki", 1)[0]
    body = ores_get(ores_server, f"/v3/scores/enwiki/{rev_id}/").json()
    assert set(body["enwiki"]["models"]) == {"damaging", "goodfaith", "articlequality"}
    assert set(body["enwiki"]["scores"][str(rev_id)]) == {"damaging", "goodfaith", "articlequality"}
    one = ores_get(ores_server, f"/v3/scores/enwiki/{rev_id}/goodfaith").json()
    assert one["enwiki"]["scores"] == {
        str(rev_id): {"goodfaith": body["enwiki"]["scores"][str(rev_id)]["goodfaith"]}
    }
    assert one["enwiki"]["models"] == {"goodfaith": body["enwiki"]["models"]["goodfaith"]}


def test_revisions_that_cannot_be_scored_get_their_own_error_and_the_rest_is_scored(ores_server, farm):
    good = edits(farm, "enwiki", 1)[0]
    hidden = farm.manifest["enwiki"]["special"]["hidden_rev_id"]
    missing = 987654321
    body = ores_get(
        ores_server, "/v3/scores/enwiki/", models="damaging|goodfaith", revids=f"{good}|{missing}|{hidden}"
    ).json()
    scores = body["enwiki"]["scores"]
    for model in ("damaging", "goodfaith"):
        assert "score" in scores[str(good)][model]
        assert scores[str(missing)][model]["error"]["type"] == "RevisionNotFound"
        assert str(missing) in scores[str(missing)][model]["error"]["message"]
        assert scores[str(hidden)][model]["error"]["type"] == "TextDeleted"


def test_each_model_checks_the_content_model_it_reads(ores_server, farm):
    wikitext_rev = next(
        r["rev_id"]
        for r in farm.manifest["wikidatawiki"]["revisions"]
        if not r["title"].startswith("Q") and not r["hidden"]
    )
    item_rev = farm.manifest["wikidatawiki"]["special"]["good_rev_id"]
    body = ores_get(ores_server, "/v3/scores/wikidatawiki/", revids=f"{item_rev}|{wikitext_rev}").json()
    scores = body["wikidatawiki"]["scores"]
    assert set(scores[str(item_rev)]["itemquality"]) == {"score"}
    assert set(scores[str(item_rev)]["damaging"]) == {"score"}
    wrong = scores[str(wikitext_rev)]
    assert {entry["error"]["type"] for entry in wrong.values()} == {"UnexpectedContentType"}
    # Each model names what it reads: edit quality reads items and properties, itemquality items only.
    assert "'wikibase-item' or 'wikibase-property'" in wrong["damaging"]["error"]["message"]
    assert "'wikibase-item' content only" in wrong["itemquality"]["error"]["message"]


def test_a_mediawiki_timeout_is_that_revisions_timeouterror(ores_server, proxy, farm):
    slow, fine = edits(farm, "enwiki", 2)
    proxy.inject("delay", times=-1, delay_s=10.0, match=lambda params: params.get("revids") == str(slow))
    body = ores_get(ores_server, "/v3/scores/enwiki/", models="damaging", revids=f"{slow}|{fine}").json()
    scores = body["enwiki"]["scores"]
    assert scores[str(slow)]["damaging"]["error"]["type"] == "TimeoutError"
    assert "score" in scores[str(fine)]["damaging"]


@pytest.mark.parametrize(
    ("path", "params", "status", "fragment"),
    [
        ("/v3/scores/xxwiki/", {"revids": "1"}, 404, "xxwiki"),
        ("/v3/scores/xxwiki/12/", {}, 404, "xxwiki"),
        ("/v3/scores/enwiki/", {"models": "damaging|nonsense", "revids": "1"}, 400, "'nonsense'"),
        ("/v3/scores/enwiki/12/itemquality", {}, 400, "'itemquality'"),
        ("/v3/scores/enwiki/", {"revids": "12|abc"}, 400, "'abc'"),
        ("/v3/scores/enwiki/", {"revids": "-3"}, 400, "'-3'"),
        ("/v3/scores/enwiki/", {"revids": "|".join(str(n) for n in range(1, 52))}, 400, "Max of 50"),
        ("/v3/scores/enwiki/notanumber/", {}, 400, "'notanumber'"),
    ],
)
def test_bad_requests_are_refused_naming_the_problem(ores_server, path, params, status, fragment):
    response = ores_get(ores_server, path, **params)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == ("not found" if status == 404 else "bad request")
    assert fragment in error["message"]


def test_fifty_revisions_are_accepted(ores_server):
    revids = "|".join(str(n) for n in range(900_000_001, 900_000_051))
    body = ores_get(ores_server, "/v3/scores/enwiki/", models="damaging", revids=revids).json()
    assert len(body["enwiki"]["scores"]) == 50
    assert {entry["damaging"]["error"]["type"] for entry in body["enwiki"]["scores"].values()} == {
        "RevisionNotFound"
    }


# 2. One fetch and one extraction per revision


def test_several_models_of_a_revision_share_one_fetch_and_one_extraction_job(ores_server, proxy, farm):
    rev_ids = edits(farm, "enwiki", 3)
    # What one model alone costs, through the KServe route: the reference count of MediaWiki calls.
    single_calls = {}
    for rev_id in rev_ids:
        proxy.clear()
        assert ores_server.predict("enwiki-damaging", {"rev_id": rev_id}).status_code == 200
        single_calls[rev_id] = len(proxy.requests)
        assert single_calls[rev_id] >= 2  # the revision and at least its parent or its user
    jobs_before = metric_value(ores_server, "feature_extraction_duration_seconds_count", model="enwiki")
    per_service_before = {
        isvc: metric_value(ores_server, "feature_extraction_duration_seconds_count", model=isvc)
        for isvc in ("enwiki-damaging", "enwiki-goodfaith", "enwiki-articlequality")
    }
    proxy.clear()
    response = ores_get(
        ores_server,
        "/v3/scores/enwiki/",
        models="damaging|goodfaith|articlequality",
        revids="|".join(map(str, rev_ids)),
    )
    assert response.status_code == 200
    seen = list(proxy.requests)
    # Three models, yet exactly the calls one edit-quality model needs: each document fetched once.
    assert len(seen) == sum(single_calls.values()), seen
    for rev_id in rev_ids:
        assert len(calls_for(seen, rev_id)) == 1
    # One extraction job per revision (labelled with the wiki), none per model.
    assert (
        metric_value(ores_server, "feature_extraction_duration_seconds_count", model="enwiki")
        == jobs_before + 3
    )
    for isvc, before in per_service_before.items():
        assert metric_value(ores_server, "feature_extraction_duration_seconds_count", model=isvc) == before


def test_the_kserve_route_scores_a_batch_like_the_ores_route(ores_server, farm):
    rev_ids = [*edits(farm, "enwiki", 3), 987654321]
    response = ores_server.predict("enwiki-goodfaith", {"rev_ids": rev_ids})
    assert response.status_code == 200, response.text
    ores = ores_get(ores_server, "/v3/scores/enwiki/", models="goodfaith", revids="|".join(map(str, rev_ids)))
    assert response.content == ores.content
    scores = response.json()["enwiki"]["scores"]
    assert scores["987654321"]["goodfaith"]["error"]["type"] == "RevisionNotFound"
    assert all("score" in scores[str(rev_id)]["goodfaith"] for rev_id in rev_ids[:3])


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"rev_ids": list(range(1, 52))}, "at most 50"),
        ({"rev_ids": "12"}, "'rev_ids' must be an array"),
        ({"rev_ids": [12, "x"]}, "'rev_ids[1]' must be an integer"),
        ({"rev_ids": [12, 0]}, "'rev_ids[1]' must be between"),
        ({"rev_ids": [12], "rev_id": 12}, "exactly one of"),
    ],
)
def test_bad_kserve_batches_are_400s(ores_server, body, fragment):
    response = ores_server.predict("enwiki-damaging", body)
    assert response.status_code == 400, response.text
    assert fragment in response.json()["error"]


def test_an_empty_kserve_batch_gives_the_models_version(ores_server, demo_models):
    response = ores_server.predict("enwiki-damaging", {"rev_ids": []})
    assert response.status_code == 200, response.text
    version = model_version(demo_models / "enwiki-damaging" / "model.bin")
    assert response.json() == {"enwiki": {"models": {"damaging": {"version": version}}, "scores": {}}}


def test_single_revision_requests_still_refuse_unscorable_revisions(ores_server):
    response = ores_server.predict("enwiki-damaging", {"rev_id": 987654321})
    assert response.status_code == 400
    assert "Revision 987654321 does not exist on enwiki" in response.json()["error"]


def test_ores_routes_answer_with_a_request_id(ores_server):
    response = requests.get(f"{ores_server.url}/v3/scores/", headers={"x-request-id": "ores-1"}, timeout=10)
    assert response.headers["x-request-id"] == "ores-1"


def test_the_real_ores_client_scores_through_the_api(ores_server, farm, demo_models):
    """`ores.api.Session(host).score(...)`, unchanged: 50 revisions a request, 4 requests in parallel."""
    python = ensure_client_venv()
    rev_ids = edits(farm, "enwiki", 30)
    missing = list(range(900_000_001, 900_000_031))  # 60 ids: two requests of the client, in parallel
    answers = ores_client_score(
        python, ores_server.url, "enwiki", ["damaging", "goodfaith"], rev_ids + missing
    )
    assert len(answers) == 60
    for rev_id, answer in zip(rev_ids + missing, answers, strict=True):
        if rev_id in missing:
            assert answer["damaging"]["error"]["type"] == "RevisionNotFound"
            continue
        for model in ("damaging", "goodfaith"):
            single = ores_server.predict(f"enwiki-{model}", {"rev_id": rev_id})
            if single.status_code == 200:
                assert answer[model] == single.json()["enwiki"]["scores"][str(rev_id)][model]
            else:  # e.g. a parent with hidden text: the KServe route's 400 is the batch entry's error
                assert single.status_code == 400
                assert answer[model]["error"]["message"] == single.json()["error"]
    expected = reference_score(farm, "enwiki", demo_models / "enwiki-damaging" / "model.bin", rev_ids[0])
    assert close_scores(answers[0]["damaging"]["score"], expected)
