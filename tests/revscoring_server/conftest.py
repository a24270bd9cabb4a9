"""Fixtures for the revscoring server tests: tiny real revscoring models and MediaWiki API documents.

The tiny models are real `revscoring` GradientBoosting classifiers trained on a handful of made-up
observations; they use the same kinds of features as production (parent text, user info, comment), so
the fetch -> cache -> extraction path is exercised for real without building the demo models.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from revscoring.features import revision_oriented, temporal
from revscoring.features import wikitext as wikitext_features
from revscoring.features.modifiers import log
from revscoring.scoring.models import GradientBoosting
from revscoring_testdata import EVENT_STREAM, EVENTGATE_TIMEOUT_S
from testkit.event_receiver import EventReceiver
from testkit.faulty_mediawiki import FaultyMediaWiki
from testkit.servers import ServerProcess, start_server

from dev.seed_table import revscoring_rows

# Features needing the revision text, the parent's text, the user's account and the comment.
EDIT_FEATURES = [
    wikitext_features.revision.chars,
    log(wikitext_features.revision.chars + 1),
    wikitext_features.revision.parent.chars,
    wikitext_features.revision.diff.chars_added,
    temporal.revision.user.seconds_since_registration,
    revision_oriented.revision.user.is_anon,
    revision_oriented.revision.comment_matches(r"lol|stupid", name="tests.comment_is_rude"),
]
TEXT_FEATURES = [
    wikitext_features.revision.chars,
    wikitext_features.revision.wikilinks,
    wikitext_features.revision.headings,
]
CLASSES = ["Stub", "Start", "B"]
TOPICS = ["STEM.Physics", "Culture.Media", "History_and_Society.History"]


def _observations(features: list, labels: list[Any], count: int = 40) -> list[tuple[list, Any]]:
    rng = random.Random(7)

    def value(feature: Any) -> Any:
        if feature.returns is bool:
            return rng.random() < 0.5
        if feature.returns is int:
            return rng.randint(0, 50)
        return rng.random() * 100

    return [([value(feature) for feature in features], labels[index % len(labels)]) for index in range(count)]


def _train(
    path: Path, features: list, labels: list, multilabel: bool = False, targets: list | None = None
) -> Path:
    model = GradientBoosting(features, labels=labels, multilabel=multilabel, version="1.2.3", n_estimators=5)
    model.train(_observations(features, targets or labels))
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as handle:
        model.dump(handle)
    return path


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Paths of tiny models: "binary" (edit-quality-like), "multiclass", "multilabel"."""
    root = tmp_path_factory.mktemp("tiny-models")
    topic_sets = [[TOPICS[0]], [TOPICS[1], TOPICS[2]], [TOPICS[2]], [TOPICS[0], TOPICS[1]]]
    return {
        "binary": _train(root / "binary" / "model.bin", EDIT_FEATURES, [True, False]),
        "multiclass": _train(root / "multiclass" / "model.bin", TEXT_FEATURES, CLASSES),
        "multilabel": _train(
            root / "multilabel" / "model.bin", TEXT_FEATURES, TOPICS, multilabel=True, targets=topic_sets
        ),
    }


@pytest.fixture(scope="session")
def revscoring_all(farm: Any, demo_models: Path, event_receiver: EventReceiver) -> Iterator[ServerProcess]:
    """ONE real server process serving all 110 revscoring services (the demo models) against the farm.

    Without a score cache: every answer of every route is computed, so the reference tests compare fresh
    computations whatever ran before them (the cache has its own tests, test_revscoring_score_cache.py)."""
    isvcs = [row.isvc for row in revscoring_rows()]
    missing = [isvc for isvc in isvcs if not (demo_models / isvc / "model.bin").exists()]
    if missing:
        pytest.fail(f"demo models missing for {missing[:5]}...: run `make models`")
    env = {
        "WIKI_URL": farm.url,
        "EVENTGATE_URL": event_receiver.url,
        "EVENTGATE_STREAM": EVENT_STREAM,
        "EVENTGATE_TIMEOUT_S": str(EVENTGATE_TIMEOUT_S),
        "LOG_LEVEL": "INFO",
        "SCORE_CACHE_SIZE": "0",
        # These tests send concurrent batches to compare answers, not to load the server: no admission
        # bound (it has its own tests, test_revscoring_overload.py).
        "MAX_IN_FLIGHT": "0",
    }
    args = ["revscoring_server", f"--models_dir={demo_models}", *[f"--isvc={isvc}" for isvc in isvcs]]
    server = start_server("revscoring-all", args, env, [isvcs[0], isvcs[-1]], timeout_s=300)
    yield server
    assert server.stop() == 0, server.log_tail()


@pytest.fixture(scope="module")
def proxy(farm: Any) -> Iterator[FaultyMediaWiki]:
    """The farm behind a counting fault proxy, new for each test module (its request counts start at 0)."""
    proxy = FaultyMediaWiki(farm.url).start()
    yield proxy
    proxy.stop()
