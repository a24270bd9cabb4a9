"""Runs INSIDE the production stack's venv (`python make_fixtures.py OUT_DIR`): more binaries pickled by it.

Production's GradientBoosting topic models are multilabel (revscoring keeps one estimator per label,
wrapped in its own list) and its draftquality models multiclass; ../shared/prodstack has neither, so they
are made here the way the shared ones were made: the real feature lists, synthetic observations, a written
labelling rule, 20 more vectors and the scores this stack gives them. Imports nothing of the project.
"""

from __future__ import annotations

import bz2
import importlib
import json
import random
import sys
from pathlib import Path

import sklearn
from revscoring.features import FeatureVector
from revscoring.scoring.models import GradientBoosting

TOPICS = ["Culture.Media.Media*", "Geography.Regions.Europe.Europe*", "History_and_Society.History",
          "STEM.STEM*"]
DRAFT_CLASSES = ["OK", "attack", "spam", "vandalism"]
FIXTURES = {
    # name: (feature list module, attribute, labels, multilabel)
    "enwiki.articletopic.gradient_boosting": ("drafttopic.feature_lists.enwiki", "articletopic",
                                              TOPICS, True),
    "enwiki.draftquality.gradient_boosting": ("draftquality.feature_lists.enwiki", "draft_quality",
                                              DRAFT_CLASSES, False),
}
ESTIMATOR_PARAMS = {"n_estimators": 20, "max_depth": 3, "learning_rate": 0.1, "max_features": "log2",
                    "random_state": 0}


def synthetic_vector(features: list, rng: random.Random, dimension: int) -> list:
    def value(feature: object) -> object:
        if isinstance(feature, FeatureVector):  # word-vector means: one float per dimension
            return [rng.uniform(-1.0, 1.0) for _ in range(dimension)]
        returns = feature.returns
        if returns is bool:
            return rng.random() < 0.5
        if returns is int:
            return rng.randint(0, 200)
        return rng.uniform(-1.0, 50.0)

    return [value(feature) for feature in features]


def word_vector_size(module: object) -> int:
    """The size of the word vectors a feature list module loaded (0 when it has none)."""
    sizes = {value.vector_size for value in vars(module).values() if hasattr(value, "vector_size")}
    return sizes.pop() if sizes else 0


def label(vector: list, labels: list[str], multilabel: bool) -> object:
    """A rule over the first numeric values: deterministic, and every label of the set occurs."""
    numbers = [float(v) for v in vector if isinstance(v, (int, float)) and not isinstance(v, bool)][:4]
    if multilabel:
        chosen = [topic for topic, number in zip(labels, numbers, strict=False) if int(number) % 2]
        return chosen or [labels[-1]]
    return labels[int(sum(numbers)) % len(labels)]


def make(name: str, module: str, attribute: str, labels: list[str], multilabel: bool, out: Path) -> None:
    feature_module = importlib.import_module(module)
    features = list(getattr(feature_module, attribute))
    rng = random.Random(name)
    dimension = word_vector_size(feature_module)
    train = [synthetic_vector(features, rng, dimension) for _ in range(200)]
    model = GradientBoosting(features, labels=labels, multilabel=multilabel,
                             version=f"prodstack-sklearn-{sklearn.__version__}", **ESTIMATOR_PARAMS)
    model.train([(vector, label(vector, labels, multilabel)) for vector in train])
    with bz2.open(out / f"{name}.model.bz2", "wb") as handle:
        model.dump(handle)
    vectors = [synthetic_vector(features, rng, dimension) for _ in range(20)]
    (out / f"{name}.vectors.json").write_text(json.dumps({
        "model": name, "feature_names": [str(f) for f in features],
        "feature_returns": [f.returns.__name__ for f in features], "vectors": vectors}))
    scores = [model.score(vector) for vector in vectors]
    (out / f"{name}.scores.json").write_text(json.dumps({
        "model": name, "labels": labels, "scored_with": {"scikit-learn": sklearn.__version__},
        "scores": [{"prediction": s["prediction"], "probability": s["probability"]} for s in scores]}))
    (out / f"{name}.meta.json").write_text(json.dumps({
        "model": name, "feature_list": f"{module}.{attribute}", "labels": labels, "multilabel": multilabel,
        "estimator_params": ESTIMATOR_PARAMS}))


def main() -> None:
    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    for name, (module, attribute, labels, multilabel) in FIXTURES.items():
        make(name, module, attribute, labels, multilabel, out)
        print(f"{name}: made with scikit-learn {sklearn.__version__}")


if __name__ == "__main__":
    main()
