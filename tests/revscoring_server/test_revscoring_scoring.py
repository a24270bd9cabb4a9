"""Extraction and scoring from pre-fetched documents: no HTTP, one extraction, errors, model loading."""

from __future__ import annotations

import bz2
import copy
import math
import multiprocessing
import pickle
from concurrent.futures import ProcessPoolExecutor

import mwapi
import numpy as np
import pytest
from revscoring.extractors.api import Extractor
from revscoring.features import revision_oriented, temporal
from revscoring.scoring.models import GradientBoosting
from revscoring_testdata import bad_revids_doc, revision_doc, users_doc

from revscoring_server import scoring
from revscoring_server.fetch import ApiDocs, to_formatversion1
from revscoring_server.model_types import Output
from revscoring_server.response import build_response, event_scores
from revscoring_server.scoring import (
    FeatureExtractionError,
    ModelLoadError,
    check_output_shape,
    format_score,
    jsonable,
    load_model,
    warm_up,
    warm_up_docs,
)
from wikiserve.errors import InvalidRequest, ServingError


def score_one(model_path: str, model_name: str, rev_id: int, docs: ApiDocs, extended: bool = False) -> dict:
    """One model's entry for one revision, as the scorer gets it; its ServingError is raised."""
    job = scoring.RevisionJob(((model_name, model_path),), rev_id, docs, extended)
    outcome = scoring.score_revision_models(job)[model_name]
    if isinstance(outcome, ServingError):
        raise outcome
    return outcome

NEW_TEXT = "Physics is the '''science''' of [[matter]]. lol this is stupid!!!"
OLD_TEXT = "Physics is the science of [[matter]]."


def edit_docs(
    rev: dict | None = None, parent: dict | None = None, user: dict | None = None, fetch_parent: bool = True
) -> ApiDocs:
    return ApiDocs(
        rev_id=101,
        revision=to_formatversion1(rev or revision_doc(101, 100, NEW_TEXT)),
        parent_id=100 if fetch_parent else None,
        parent=to_formatversion1(parent or revision_doc(100, 0, OLD_TEXT)) if fetch_parent else None,
        user_text="Alice",
        user=to_formatversion1(user or users_doc()),
    )


class CountingSession(mwapi.Session):
    """A real mwapi.Session that counts requests and never sends one."""

    def __init__(self) -> None:
        super().__init__("http://127.0.0.1:9", user_agent="tests")
        self.requests = 0

    def request(self, *args, **kwargs):
        self.requests += 1
        raise AssertionError(f"unexpected MediaWiki API request {args} {kwargs}")


def test_extraction_makes_no_http_call_when_the_cache_is_filled(tiny_models):
    model = load_model(tiny_models["binary"])
    docs = edit_docs()
    session = CountingSession()
    extractor = Extractor(session, http_cache=scoring._http_cache(docs))
    values = list(extractor.extract(101, model.features, cache=scoring._solve_cache(extractor, docs)))
    assert session.requests == 0
    assert values[0] == len(NEW_TEXT) and values[2] == len(OLD_TEXT)  # revision and parent text read
    # The control: with an empty cache the same extractor does go to the API (and the counter sees it).
    with pytest.raises(Exception):  # noqa: B017 - revscoring wraps the session's error
        list(Extractor(session).extract(101, model.features))
    assert session.requests == 1


def test_binary_score(tiny_models):
    entry = score_one(str(tiny_models["binary"]), "damaging", 101, edit_docs())
    score = entry["score"]
    assert set(score) == {"prediction", "probability"} and "features" not in entry
    assert isinstance(score["prediction"], bool)
    assert set(score["probability"]) == {"true", "false"}
    assert math.isclose(sum(score["probability"].values()), 1.0, abs_tol=1e-6)
    assert score["prediction"] == (score["probability"]["true"] > 0.5)


def test_extended_output_has_base_features_from_one_extraction(tiny_models, monkeypatch):
    extract_calls = []

    class CountingExtractor(Extractor):
        def extract(self, rev_ids, dependents, **kwargs):
            extract_calls.append(list(dependents))
            return super().extract(rev_ids, dependents, **kwargs)

    monkeypatch.setattr(scoring, "Extractor", CountingExtractor)
    entry = score_one(str(tiny_models["binary"]), "damaging", 101, edit_docs(), True)
    assert len(extract_calls) == 1
    features = entry["features"]
    # log(chars + 1) is a modifier: its base feature is reported, not the modified one.
    assert features["feature.wikitext.revision.chars"] == len(NEW_TEXT)
    assert not any(name.startswith("feature.log(") for name in features)
    assert features["feature.wikitext.revision.parent.chars"] == len(OLD_TEXT)
    assert features["feature.tests.comment_is_rude"] is False  # comment "copyedit"
    plain = score_one(str(tiny_models["binary"]), "damaging", 101, edit_docs())
    assert plain["score"] == entry["score"]


def test_multiclass_and_multilabel_scores(tiny_models):
    docs = ApiDocs(rev_id=5, revision=to_formatversion1(revision_doc(5, 0, "== A ==\n[[B]] [[C]]")))
    multiclass = score_one(str(tiny_models["multiclass"]), "articlequality", 5, docs)["score"]
    assert multiclass["prediction"] in multiclass["probability"]
    assert set(multiclass["probability"]) == {"Stub", "Start", "B"}
    assert math.isclose(sum(multiclass["probability"].values()), 1.0, abs_tol=1e-6)
    multilabel = score_one(str(tiny_models["multilabel"]), "drafttopic", 5, docs)["score"]
    assert isinstance(multilabel["prediction"], list)
    assert all(0.0 <= p <= 1.0 for p in multilabel["probability"].values())
    assert set(multilabel["prediction"]) == {
        label for label, p in multilabel["probability"].items() if p > 0.5
    }


def test_the_job_is_picklable_and_scores_the_same_in_another_process(tiny_models):
    job = scoring.RevisionJob(((("damaging", str(tiny_models["binary"])),)), 101, edit_docs(), True)
    assert pickle.loads(pickle.dumps(job)) == job
    context = multiprocessing.get_context("fork")
    with ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
        remote = pool.submit(scoring.score_revision_models, job).result(timeout=120)
    assert remote == scoring.score_revision_models(job)


@pytest.mark.parametrize(
    "docs, message",
    [
        (
            lambda: edit_docs(parent=revision_doc(100, 0, None)),
            r"text of the parent revision of revision 101 is deleted or hidden",
        ),
        (
            lambda: edit_docs(rev=revision_doc(101, 100, NEW_TEXT, comment=None)),
            r"edit summary of revision 101 is deleted or hidden",
        ),
        (
            lambda: edit_docs(rev=revision_doc(101, 100, NEW_TEXT, user=None)),
            r"user of revision 101 is deleted or hidden",
        ),
        (lambda: edit_docs(parent=bad_revids_doc(100)), r"The parent revision of revision 101 was not found"),
    ],
)
def test_revscoring_extraction_errors_are_400s(tiny_models, docs, message):
    with pytest.raises(InvalidRequest, match=message):
        score_one(str(tiny_models["binary"]), "damaging", 101, docs())


def test_unfetched_data_is_a_500_not_a_blocking_http_call(tiny_models):
    with pytest.raises(
        FeatureExtractionError, match="needed MediaWiki data the server did not fetch"
    ) as info:
        score_one(str(tiny_models["binary"]), "damaging", 101, edit_docs(fetch_parent=False))
    assert info.value.status == 500


def test_model_loading_failures(tmp_path, tiny_models):
    with pytest.raises(ModelLoadError, match="does not exist"):
        load_model(tmp_path / "missing.bin")
    (tmp_path / "corrupt.bin").write_bytes(b"\x80\x04not a pickle at all")
    with pytest.raises(ModelLoadError, match="could not be read as a revscoring model"):
        load_model(tmp_path / "corrupt.bin")
    (tmp_path / "dict.bin").write_bytes(pickle.dumps({"not": "a model"}))
    with pytest.raises(ModelLoadError, match="dict.bin holds a dict, not a revscoring classifier"):
        load_model(tmp_path / "dict.bin")
    compressed = tmp_path / "model.bin.bz2"
    compressed.write_bytes(bz2.compress(tiny_models["binary"].read_bytes()))
    assert load_model(compressed).version == "1.2.3"


def test_output_shape_must_fit_the_model_type(tiny_models):
    binary, topics = load_model(tiny_models["binary"]), load_model(tiny_models["multilabel"])
    check_output_shape(binary, Output.BINARY, "b")
    check_output_shape(topics, Output.MULTILABEL, "t")
    with pytest.raises(ModelLoadError, match="does not fit a multilabel model type"):
        check_output_shape(binary, Output.MULTILABEL, "b")
    with pytest.raises(ModelLoadError, match="does not fit a binary model type"):
        check_output_shape(load_model(tiny_models["multiclass"]), Output.BINARY, "m")


def test_format_score_and_json_values():
    formatted = format_score(
        {"prediction": np.bool_(True), "probability": {True: np.float64(0.8), False: 0.2}}
    )
    assert formatted == {"prediction": True, "probability": {"true": 0.8, "false": 0.2}}
    assert type(formatted["probability"]["true"]) is float
    assert jsonable(np.array([1.5, 2.0], dtype=np.float32)) == [1.5, 2.0]
    assert jsonable(float("nan")) is None and jsonable(np.int64(3)) == 3


def test_response_and_event_scores():
    score = {"prediction": False, "probability": {"false": 0.7, "true": 0.3}}
    assert build_response("enwiki", "damaging", "0.5.1", 12345, {"score": score}) == {
        "enwiki": {
            "models": {"damaging": {"version": "0.5.1"}},
            "scores": {"12345": {"damaging": {"score": score}}},
        }
    }
    assert event_scores("damaging", "0.5.1", score) == {
        "damaging": {
            "model_name": "damaging",
            "model_version": "0.5.1",
            "prediction": ["false"],
            "probability": {"false": 0.7, "true": 0.3},
        }
    }
    topics = event_scores("drafttopic", "1", {"prediction": ["A", "B"], "probability": {"A": 0.9, "B": 0.6}})
    assert topics["drafttopic"]["prediction"] == ["A", "B"]


def test_warm_up_scores_a_synthetic_edit_and_rejects_a_broken_binary(tiny_models, tmp_path):
    for name, content_model in (
        ("binary", "wikitext"),
        ("multiclass", "wikitext"),
        ("multilabel", "wikibase-item"),
    ):
        docs = warm_up_docs(content_model, needs_parent=name == "binary", needs_user=name == "binary")
        warm_up(str(tiny_models[name]), name, docs)
    # A binary whose feature list does not match its estimator only fails when it scores.
    model = load_model(tiny_models["multiclass"])
    broken_model = copy.copy(model)
    broken_model.features = model.features + model.features[:1]
    broken = tmp_path / "broken.bin"
    with open(broken, "wb") as handle:
        broken_model.dump(handle)
    with pytest.raises(ModelLoadError, match="failed to score a synthetic edit: Scoring revision 2 failed"):
        warm_up(str(broken), "articlequality", warm_up_docs("wikitext", False, False))


def test_page_creation_and_last_user_revision_come_from_the_prefetched_docs(tmp_path):
    """revscoring's own MWAPICache lookup of the page creation is broken; the solve-cache injection is not."""
    features = [
        temporal.revision.page.creation.seconds_since,
        temporal.revision.user.last_revision.seconds_since,
        revision_oriented.revision.user.is_anon,
    ]
    path = tmp_path / "temporal.bin"
    model = GradientBoosting(features, labels=[True, False], version="1", n_estimators=3)
    model.train([([float(i), float(i * 2), bool(i % 2)], i % 3 == 0) for i in range(30)])
    with open(path, "wb") as handle:
        model.dump(handle)
    creation = to_formatversion1(revision_doc(90, 0, "first"))["query"]["pages"]["10"]["revisions"][0]
    creation["timestamp"] = "2024-01-01T03:04:05Z"  # one day before the scored revision
    contribs = {
        "query": {"usercontribs": [{"revid": 95, "timestamp": "2024-01-02T02:04:05Z", "comment": "x"}]}
    }
    docs = ApiDocs(
        rev_id=101,
        revision=to_formatversion1(revision_doc(101, 100, NEW_TEXT)),
        user_text="Alice",
        page_creation=creation,
        last_user_revision=contribs,
    )
    entry = score_one(str(path), "damaging", 101, docs, extended=True)
    features = entry["features"]
    assert features["feature.temporal.revision.page.creation.seconds_since"] == 86400
    assert features["feature.temporal.revision.user.last_revision.seconds_since"] == 3600


def test_several_models_of_one_revision_share_what_they_define_alike(tiny_models, monkeypatch):
    calls = []

    class RecordingExtractor(Extractor):
        def extract(self, rev_ids, dependents, **kwargs):
            calls.append((list(dependents), kwargs["cache"], set(kwargs["cache"])))
            return super().extract(rev_ids, dependents, **kwargs)

    monkeypatch.setattr(scoring, "Extractor", RecordingExtractor)
    binary, multiclass = str(tiny_models["binary"]), str(tiny_models["multiclass"])
    models = (("damaging", binary), ("articlequality", multiclass), ("goodfaith", binary))
    entries = scoring.score_revision_models(scoring.RevisionJob(models, 101, edit_docs()))
    assert list(entries) == ["damaging", "articlequality", "goodfaith"]
    # goodfaith has damaging's features: all solved already, so it makes no extraction call of its own
    assert len(calls) == 2
    (first_features, first_cache, _), (second_features, second_cache, known_before) = calls
    assert first_cache is not second_cache  # each model solves in its own cache...
    shared = set(first_features) & set(second_features)
    assert shared and shared <= known_before  # ...seeded with what the first computed under equal definitions
    assert entries["goodfaith"] == entries["damaging"]


def test_scoring_models_together_equals_scoring_them_one_by_one(tiny_models):
    docs = edit_docs()
    models = (
        ("damaging", str(tiny_models["binary"])),
        ("articlequality", str(tiny_models["multiclass"])),
        ("drafttopic", str(tiny_models["multilabel"])),
    )
    together = scoring.score_revision_models(scoring.RevisionJob(models, 101, docs, True))
    one_by_one = {name: score_one(path, name, 101, docs, True) for name, path in models}
    assert together == one_by_one


@pytest.mark.parametrize(
    "docs, error_type",
    [
        (lambda: edit_docs(parent=revision_doc(100, 0, None)), "TextDeleted"),
        (lambda: edit_docs(rev=revision_doc(101, 100, NEW_TEXT, comment=None)), "CommentDeleted"),
        (lambda: edit_docs(rev=revision_doc(101, 100, NEW_TEXT, user=None)), "UserDeleted"),
        (lambda: edit_docs(parent=bad_revids_doc(100)), "RevisionNotFound"),
    ],
)
def test_a_model_that_cannot_score_gets_an_ores_error_and_the_others_score(tiny_models, docs, error_type):
    models = (("damaging", str(tiny_models["binary"])), ("articlequality", str(tiny_models["multiclass"])))
    entries = scoring.score_revision_models(scoring.RevisionJob(models, 101, docs()))
    error = scoring.error_entry(entries["damaging"])
    assert error["error"]["type"] == error_type
    assert "revision 101" in error["error"]["message"]
    assert set(entries["articlequality"]) == {"score"}  # reads the revision's own text only


def test_namesakes_with_different_definitions_are_solved_apart(tmp_path):
    """Two models defining different features under one name (as articlequality and draftquality do on
    ptwiki) each get their own value, as revscoring's own extractor gives it for that model alone."""
    from revscoring.datasources.meta import filters
    from revscoring.features import wikitext
    from revscoring.features.meta import aggregators

    links = wikitext.revision.datasources.wikilink_titles
    namesake = "tests.revision.category_links"
    english = aggregators.len(filters.regex_matching(r"Category:", links), name=namesake)
    portuguese = aggregators.len(filters.regex_matching(r"Categoria:", links), name=namesake)
    docs = edit_docs(rev=revision_doc(101, 100, "[[Category:A]] [[Category:B]] [[Categoria:C]] [[x]]"))
    paths = {}
    for name, feature in (("articlequality", english), ("draftquality", portuguese)):
        features = [feature, wikitext.revision.wikilinks]
        model = GradientBoosting(features, labels=["Stub", "Start", "B"], version="1", n_estimators=3)
        model.train([([i % 4, i], ["Stub", "Start", "B"][i % 3]) for i in range(30)])
        paths[name] = tmp_path / f"{name}.bin"
        with open(paths[name], "wb") as handle:
            model.dump(handle)
    models = tuple((name, str(path)) for name, path in paths.items())
    together = scoring.score_revision_models(scoring.RevisionJob(models, 101, docs, True))
    extractor = Extractor(CountingSession(), http_cache=scoring._http_cache(docs))
    for name, feature in (("articlequality", english), ("draftquality", portuguese)):
        (reference,) = extractor.extract(101, [feature])  # this model alone, revscoring's own solve
        assert together[name]["features"][f"feature.{namesake}"] == reference
    assert together["articlequality"]["features"][f"feature.{namesake}"] == 2
    assert together["draftquality"]["features"][f"feature.{namesake}"] == 1


def test_unscorable_revision_errors_survive_a_worker_process():
    error = scoring.UnscorableRevision("TextDeleted", "The text of revision 5 is hidden.")
    copy_ = pickle.loads(pickle.dumps(error))
    assert (copy_.error_type, copy_.message, copy_.status) == ("TextDeleted", error.message, 400)
    assert scoring.error_entry(copy_) == {"error": {"type": "TextDeleted", "message": error.message}}
