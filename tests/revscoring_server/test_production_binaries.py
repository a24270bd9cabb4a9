"""Binaries pickled by the production stack load and score exactly as the production stack scores them.

The references are not this project's: ../shared/prodstack holds binaries, vectors and scores made with
scikit-learn 1.0.2 (one binary under pyenchant 2.0.0), and `make prodstack` builds that stack as a venv of
its own, makes two more binaries with it (multilabel articletopic, draftquality) and, through
dev/prodstack/reference.py, scores farm revisions with revscoring's own api.Extractor the way ORES did.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import enchant
import pytest
from testkit.servers import ServerProcess, free_port

from dev.prodstack import __main__ as prodstack
from dev.prodstack.make_fixtures import FIXTURES
from revscoring_server import binaries
from revscoring_server.scoring import format_score, load_model

SHARED_MODELS = prodstack.SHARED / "models"
TOLERANCE = 1e-9
WORDS = ["hello", "world", "dictionary", "helo", "wrold", "qzxv", "colour", "color", "Wikipedia"]

# Each binary: the inference service it stands in for and the feature list it was built with, as
# ../shared/prodstack/README.md and make_fixtures.py describe them (not as the server's table says).
BINARIES: dict[str, tuple[str, str, str]] = {
    # name: (isvc, feature list, wiki host)
    "enwiki.damaging.gradient_boosting": (
        "enwiki-damaging", "editquality.feature_lists.enwiki.damaging", "en.wikipedia.org"),
    "enwiki.damaging.random_forest": (
        "enwiki-damaging", "editquality.feature_lists.enwiki.damaging", "en.wikipedia.org"),
    "enwiki.wp10.gradient_boosting": (
        "enwiki-articlequality", "articlequality.feature_lists.enwiki.wp10", "en.wikipedia.org"),
    "eswiki.damaging.random_forest.pyenchant2": (
        "eswiki-damaging", "editquality.feature_lists.eswiki.damaging", "es.wikipedia.org"),
    "enwiki.articletopic.gradient_boosting": (
        "enwiki-articletopic", "drafttopic.feature_lists.enwiki.articletopic", "en.wikipedia.org"),
    "enwiki.draftquality.gradient_boosting": (
        "enwiki-draftquality", "draftquality.feature_lists.enwiki.draft_quality", "en.wikipedia.org"),
}
# The farm revisions each binary is asked about: with and without parent, anonymous, new account,
# large, hidden (manifest "special" keys), plus every page creation of the wiki's articles.
SPECIAL_REVISIONS = ("good_rev_id", "anon_rev_id", "newcomer_rev_id", "large_rev_id", "hidden_rev_id")


def binary_path(name: str) -> Path:
    folder = prodstack.FIXTURES if name in FIXTURES else SHARED_MODELS
    path = folder / f"{name}.model.bz2"
    if not path.exists():
        pytest.fail(f"{path} is missing: run `make prodstack` (make test does it)")
    return path


def reference_file(name: str, kind: str) -> dict[str, Any]:
    return json.loads(binary_path(name).with_name(f"{name}.{kind}.json").read_text())


def test_every_shared_binary_is_covered():
    shared = {path.name.removesuffix(".model.bz2") for path in SHARED_MODELS.glob("*.model.bz2")}
    assert shared <= set(BINARIES), f"binaries without a test: {sorted(shared - set(BINARIES))}"
    assert set(FIXTURES) <= set(BINARIES)


@pytest.mark.parametrize("name", sorted(BINARIES))
def test_binary_scores_its_vectors_as_the_production_stack(name):
    model = load_model(binary_path(name))  # the server's own loading code
    vectors = reference_file(name, "vectors")["vectors"]
    expected = reference_file(name, "scores")["scores"]
    assert len(vectors) == len(expected) == 20
    worst = 0.0
    for vector, reference in zip(vectors, expected, strict=True):
        score = format_score(model.score(vector))
        assert score["prediction"] == reference["prediction"], (vector, reference)
        assert set(score["probability"]) == set(reference["probability"])
        for label, probability in reference["probability"].items():
            worst = max(worst, abs(score["probability"][label] - probability))
    assert worst <= TOLERANCE, f"largest probability difference {worst}"


@pytest.mark.parametrize("pickle_name", ["enchant2-reference.pickle", "enchant2-reference-utf16.pickle"])
def test_pyenchant2_dictionary_still_checks_words(pickle_name):
    with open(prodstack.SHARED / "pickles" / pickle_name, "rb") as handle:
        check = binaries.read_pickle(handle)
    reference = enchant.Dict("en_US").check
    assert [check(word) for word in WORDS] == [reference(word) for word in WORDS]
    assert check("hello") and not check("helo")


def test_pyenchant2_binary_dictionaries_check_words_against_installed_ones():
    model = load_model(binary_path("eswiki.damaging.random_forest.pyenchant2"))
    dictionaries = [obj for obj in binaries.object_graph(model) if isinstance(obj, enchant.Dict)]
    assert dictionaries, "the eswiki binary should hold Spanish dictionaries"
    words = ["casa", "perro", "kasa", "hola", "olaa"]
    for dictionary in dictionaries:
        assert not hasattr(dictionary, binaries.LEGACY_ENCHANT_ATTRIBUTE)
        fresh = enchant.Dict(dictionary.tag).check
        assert [dictionary.check(word) for word in words] == [fresh(word) for word in words]


def test_gradient_boosting_binaries_were_translated(caplog):
    for name in ("enwiki.damaging.gradient_boosting", "enwiki.articletopic.gradient_boosting"):
        with binaries.open_binary(binary_path(name)) as handle:
            model = binaries.read_pickle(handle)
        counts = binaries.translate_legacy_objects(model)
        # one estimator for a binary model, one per label for a multilabel one
        expected = len(reference_file(name, "scores")["labels"]) if name in FIXTURES else 1
        assert counts == {"gradient_boosting_losses": expected}, name


# --- Through HTTP: a server started as the image starts it, against the farm ---------------------------


@pytest.fixture(scope="session")
def reference_scores(farm: Any, tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    """What the production stack (its own venv) gives for the farm revisions of every binary."""
    jobs = [
        {"binary": str(binary_path(name)), "feature_list": feature_list, "host": host,
         "rev_ids": farm_revisions(farm, isvc.split("-")[0])}
        for name, (isvc, feature_list, host) in sorted(BINARIES.items())
    ]
    spec = tmp_path_factory.mktemp("prodstack") / "jobs.json"
    spec.write_text(json.dumps({"farm_url": farm.url, "jobs": jobs}))
    result = subprocess.run(
        [str(prodstack.PYTHON), str(prodstack.HERE / "reference.py"), str(spec)],
        capture_output=True, text=True, cwd=prodstack.REPO_ROOT, env=prodstack.reference_env(), timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    by_path = json.loads(result.stdout)
    return {name: by_path[str(binary_path(name))] for name in BINARIES}


def farm_revisions(farm: Any, dbname: str) -> list[int]:
    wiki = farm.manifest[dbname]
    specials = [wiki["special"][key] for key in SPECIAL_REVISIONS if key in wiki["special"]]
    creations = [rev["rev_id"] for rev in wiki["revisions"] if rev.get("parent_id") == 0][:3]
    return sorted(set(specials + creations))


@pytest.fixture(scope="session")
def production_servers(farm: Any) -> Any:
    """One server per binary, each started as its image starts it: INFERENCE_NAME and MODEL_PATH only."""
    servers: dict[str, ServerProcess] = {}
    try:
        for name, (isvc, _, _) in BINARIES.items():
            port = free_port()
            env = {"INFERENCE_NAME": isvc, "MODEL_PATH": str(binary_path(name)), "WIKI_URL": farm.url,
                   "HTTP_PORT": str(port), "EXTRACTION_WORKERS": "1"}
            servers[name] = ServerProcess(f"prodstack-{name}", [sys.executable, "-m", "revscoring_server"],
                                          env, port)
        for name, server in servers.items():
            server.wait_ready([BINARIES[name][0]], timeout_s=180)
        yield servers
    finally:
        for server in servers.values():
            server.stop()


@pytest.mark.parametrize("name", sorted(BINARIES))
def test_server_scores_farm_revisions_as_the_production_stack(name, production_servers, reference_scores):
    isvc = BINARIES[name][0]
    server = production_servers[name]
    compared = 0
    worst = 0.0
    for rev_id, reference in reference_scores[name].items():
        response = server.predict(isvc, {"rev_id": int(rev_id), "extended_output": True}, timeout_s=60)
        if "error" in reference:  # e.g. TextDeleted for the hidden revision: both must refuse it
            assert 400 <= response.status_code < 500, (rev_id, reference, response.text)
            continue
        assert response.status_code == 200, (rev_id, response.text)
        entry = response.json()[isvc.split("-")[0]]["scores"][rev_id][isvc.split("-", 1)[1]]
        assert entry["score"]["prediction"] == reference["score"]["prediction"], rev_id
        for label, probability in reference["score"]["probability"].items():
            worst = max(worst, abs(entry["score"]["probability"][label] - probability))
        assert _features_equal(entry["features"], reference["features"]), rev_id
        compared += 1
    assert worst <= TOLERANCE, f"largest probability difference {worst}"
    assert compared >= 3, f"only {compared} revisions could be compared"


def _features_equal(served: dict[str, Any], reference: dict[str, Any]) -> bool:
    if set(served) != set(reference):
        return False
    for key, value in reference.items():
        other = served[key]
        if isinstance(value, float) and isinstance(other, (int, float)):
            if not math.isclose(value, other, rel_tol=TOLERANCE, abs_tol=TOLERANCE):
                return False
        elif value != other:
            return False
    return True
