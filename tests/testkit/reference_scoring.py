"""The independent reference for revscoring scores: revscoring's own `api.Extractor` over a live
`mwapi.Session` against the farm (the way ORES scored) and the binary's own `score`. Nothing of the server's
code is used here, so a bug in its fetching, caching, feature or response code shows as a difference.

One reference job is one (wiki, revision) with every model of that wiki (each model extracted on its own, with
one mwapi session); jobs run in a process pool to use both cores.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from typing import Any

Answer = dict[str, Any]  # {"probability": {...}, "features": {...}} or {"error": "<revscoring error class>"}


@dataclass(frozen=True)
class ReferenceJob:
    farm_url: str
    host: str
    rev_id: int
    models: tuple[tuple[str, str], ...]  # (isvc, model path)


_LOADED: dict[str, Any] = {}


def _model(path: str) -> Any:
    from revscoring import Model

    if path not in _LOADED:
        with open(path, "rb") as handle:
            _LOADED[path] = Model.load(handle)
    return _LOADED[path]


def _session(farm_url: str, host: str) -> Any:
    import mwapi
    import requests

    http = requests.Session()
    http.headers["Host"] = host  # the farm picks the wiki by Host, as production's internal endpoint does
    return mwapi.Session(
        farm_url, user_agent="lift-wing reference tests", api_path="/w/api.php", session=http, timeout=60
    )


def reference_answers(job: ReferenceJob) -> dict[str, Answer]:
    """Per isvc: what revscoring itself gives for `job.rev_id` with that binary.

    Each model is extracted on its own: features of different packages can share a name but not a
    definition (draftquality's and articlequality's `ptwiki.revision.category_links` match different
    patterns), so one extraction for all of a wiki's models would give one of them the other's values."""
    from revscoring.extractors.api import Extractor

    extractor = Extractor(_session(job.farm_url, job.host))
    return {isvc: _answer_alone(extractor, job.rev_id, path) for isvc, path in job.models}


def _answer_alone(extractor: Any, rev_id: int, path: str) -> Answer:
    """One model's answer, or the name of the revscoring error it refuses the revision with."""
    from revscoring.errors import DependencyError
    from revscoring.features import trim

    model = _model(path)
    wanted = {str(feature): feature for feature in list(model.features) + list(trim(model.features))}
    try:
        values = dict(zip(wanted, extractor.extract(rev_id, list(wanted.values())), strict=True))
    except DependencyError as error:
        return {"error": type(error).__name__}
    return _answer(model, values)


def _answer(model: Any, values: dict[str, Any]) -> Answer:
    from revscoring.features import trim

    score = model.score([values[str(feature)] for feature in model.features])
    return {
        "prediction": score["prediction"],
        "probability": dict(score["probability"]),
        "features": {str(feature): values[str(feature)] for feature in trim(model.features)},
    }


def run_all(jobs: Sequence[ReferenceJob], processes: int = 2) -> dict[tuple[int, str], Answer]:
    """Every job's answers keyed by (rev_id, isvc); jobs spread over `processes` worker processes."""
    answers: dict[tuple[int, str], Answer] = {}
    with ProcessPoolExecutor(processes) as pool:
        for job, result in zip(jobs, pool.map(reference_answers, jobs), strict=True):
            for isvc, answer in result.items():
                answers[(job.rev_id, isvc)] = answer
    return answers


def label_key(label: Any) -> str:
    """How a class label is written as a JSON key: true/false for booleans (JSON's own spelling)."""
    if isinstance(label, bool):
        return "true" if label else "false"
    return str(label)


def as_json(value: Any) -> Any:
    """A reference value as JSON can carry it: numpy to Python, NaN and infinities (not JSON) to null."""
    if hasattr(value, "tolist"):
        value = value.tolist()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, (list, tuple)):
        return [as_json(item) for item in value]
    return value


# langdetect (translatewiki's language features) draws random samples of the text: two runs over the same text
# differ by about 1e-6, so these features are compared to 1e-4; everything else as below.
RANDOMIZED_FEATURES = ("lang_vector", "lang_delta")


def differences(expected: Any, actual: Any, where: str = "") -> Iterable[str]:
    """Where `actual` (a server's JSON value) differs from `expected` (the reference, JSON-shaped): exact
    for booleans, integers and strings; floats to 1e-9 relative (JSON's round trip of a double is exact, the
    slack only covers summation order)."""
    if isinstance(expected, bool) or isinstance(actual, bool):
        if expected is not actual:
            yield f"{where}: {actual!r} != {expected!r}"
    elif isinstance(expected, (int, float)) and isinstance(actual, (int, float)):
        slack = 1e-4 if any(name in where for name in RANDOMIZED_FEATURES) else 1e-12
        if not math.isclose(expected, actual, rel_tol=1e-9, abs_tol=slack):
            yield f"{where}: {actual!r} != {expected!r}"
    elif isinstance(expected, list) and isinstance(actual, list) and len(expected) == len(actual):
        for index, (e, a) in enumerate(zip(expected, actual, strict=True)):
            yield from differences(e, a, f"{where}[{index}]")
    elif isinstance(expected, dict) and isinstance(actual, dict):
        if set(expected) != set(actual):
            yield f"{where}: keys {sorted(set(actual) ^ set(expected))[:5]} differ"
        for key in set(expected) & set(actual):
            yield from differences(expected[key], actual[key], f"{where}.{key}")
    elif expected != actual:
        yield f"{where}: {actual!r} != {expected!r}"


def entry_problems(expected: dict[str, Any], entry: dict[str, Any], label: str) -> list[str]:
    """How a served entry `{"score", "features"}` differs from the reference's answer."""
    assert "error" not in expected, f"the reference could not score {label}: {expected}"
    assert "score" in entry, f"{label}: {entry}"
    probability = {label_key(k): v for k, v in expected["probability"].items()}
    prediction = expected["prediction"]
    prediction = (
        [label_key(p) if isinstance(p, bool) else p for p in prediction]
        if isinstance(prediction, list)
        else prediction
    )
    features = {name: as_json(value) for name, value in expected["features"].items()}
    score = entry["score"]
    return (
        [f"{label} probability{d}" for d in differences(probability, score["probability"])]
        + [f"{label} prediction{d}" for d in differences(prediction, score["prediction"])]
        + [f"{label} features{d}" for d in differences(features, entry["features"])]
    )
