"""ORES's v3 API on the revscoring server: a real server, the farm behind a counting proxy, demo models.

Scores are checked against revscoring's own extractor calling the farm; MediaWiki calls are counted by the
proxy, extraction jobs by the server's own `feature_extraction_duration_seconds` histogram.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from ores_testing import (
    ORES_ISVCS,
    edits,
    metric_value,
    model_version,
    ores_get,
    reference_score,
)
from testkit.ores_client import ensure_client_venv, ores_client_score
from testkit.reference_scoring import ReferenceJob, entry_problems, run_all
from testkit.servers import ServerProcess, start_server

MISSING_TTL_S = 3.0


@pytest.fixture(scope="module")
def ores_server(proxy, demo_models) -> Iterator[ServerProcess]:
    """Five services of two wikis, no score cache (so every request fetches and extracts)."""
    env = {
        "WIKI_URL": proxy.url,
        "SCORE_CACHE_SIZE": "0",
        "EXTRACTION_WORKERS": "1",
        "MEDIAWIKI_TIMEOUT_S": "8",
        "MEDIAWIKI_ATTEMPTS": "1",
        "MISSING_REVISION_TTL_S": str(MISSING_TTL_S),
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


def test_one_model_of_one_revision_answers_in_the_kserve_routes_document_shape(ores_server, farm):
    """The document's shape (models, version, scores) is the KServe route's; the values themselves are
    compared with revscoring's own extraction below and in test_revscoring_reference.py."""
    rev_id = edits(farm, "enwiki", 1)[0]
    kserve = ores_server.predict("enwiki-articlequality", {"rev_id": rev_id, "extended_output": True}).json()
    ores = ores_get(ores_server, f"/v3/scores/enwiki/{rev_id}/articlequality", features="").json()
    assert ores == kserve


def test_features_adds_each_models_base_features_as_revscoring_extracts_them(ores_server, farm, demo_models):
    rev_id = edits(farm, "enwiki", 1)[0]
    body = ores_get(
        ores_server, "/v3/scores/enwiki/", models="damaging|articlequality", revids=rev_id, features=""
    ).json()
    models = tuple(
        (isvc, str(demo_models / isvc / "model.bin")) for isvc in ("enwiki-damaging", "enwiki-articlequality")
    )
    reference = run_all(
        [ReferenceJob(farm.url, farm.manifest["enwiki"]["host"], rev_id, models)], processes=1
    )
    for isvc, _ in models:
        entry = body["enwiki"]["scores"][str(rev_id)][isvc.split("-")[1]]
        assert entry["features"]
        assert not entry_problems(reference[(rev_id, isvc)], entry, f"{isvc} {rev_id}")


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


def test_a_mediawiki_timeout_is_a_timeouterror_of_the_revisions_it_was_fetching(ores_server, proxy, farm):
    slow, fine = edits(farm, "enwiki", 2)
    proxy.inject(
        "delay", times=-1, delay_s=10.0, match=lambda params: str(slow) in params.get("revids", "").split("|")
    )
    body = ores_get(ores_server, "/v3/scores/enwiki/", models="damaging", revids=f"{slow}|{fine}").json()
    scores = body["enwiki"]["scores"]
    # A batch is fetched in one call: its revisions share that call's fate, and the request is answered.
    assert {scores[str(rev_id)]["damaging"]["error"]["type"] for rev_id in (slow, fine)} == {"TimeoutError"}
    body = ores_get(ores_server, "/v3/scores/enwiki/", models="damaging", revids=str(fine)).json()
    assert "score" in body["enwiki"]["scores"][str(fine)]["damaging"]


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


def test_a_batch_costs_one_call_for_the_revisions_and_one_for_their_parents_and_editors(
    ores_server, proxy, farm
):
    rev_ids = edits(farm, "enwiki", 50)
    assert len(rev_ids) >= 20, len(rev_ids)
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
    scores = response.json()["enwiki"]["scores"]
    scored = [rev_id for rev_id in rev_ids if all("score" in entry for entry in scores[str(rev_id)].values())]
    assert len(scored) >= len(rev_ids) - 5, scores  # a few may have a hidden parent
    seen = list(proxy.requests)
    # Three models and up to 50 revisions, yet two calls: the revisions, then their parents and their
    # editors in one query (two modules of it), which the real MediaWiki answered.
    assert len(seen) == 2, seen
    assert sorted(map(int, seen[0]["revids"].split("|"))) == sorted(rev_ids)
    assert {"revids", "ususers"} <= set(seen[1]) and seen[1]["list"] == "users"
    # One extraction job per revision (labelled with the wiki), none per model.
    jobs = metric_value(ores_server, "feature_extraction_duration_seconds_count", model="enwiki")
    readable = [rev_id for rev_id in rev_ids if "error" not in scores[str(rev_id)]["articlequality"]]
    assert jobs - jobs_before == len(readable)
    for isvc, before in per_service_before.items():
        assert metric_value(ores_server, "feature_extraction_duration_seconds_count", model=isvc) == before


def test_a_missing_revision_is_remembered_briefly(ores_server, proxy):
    missing = 987_000_123

    def ask() -> tuple[str, int]:
        proxy.clear()
        body = ores_get(ores_server, f"/v3/scores/enwiki/{missing}/damaging").json()
        return body["enwiki"]["scores"][str(missing)]["damaging"]["error"]["type"], len(proxy.requests)

    assert ask() == ("RevisionNotFound", 1)
    assert ask() == ("RevisionNotFound", 0)  # from memory: MediaWiki is not asked again at once...
    time.sleep(MISSING_TTL_S + 0.5)
    assert ask() == ("RevisionNotFound", 1)  # ...but after MISSING_REVISION_TTL_S it is (undeletions happen)


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
