"""Runs INSIDE the production stack's venv: scores farm revisions the way ORES did, as a reference.

    python reference.py JOBS_JSON  ->  JSON on stdout

JOBS_JSON: {"farm_url": ..., "jobs": [{"binary": path, "feature_list": "module.attribute",
"host": "en.wikipedia.org", "rev_ids": [...]}]}. For each revision: revscoring's own `api.Extractor` over a
live `mwapi.Session` extracts the feature list as imported from its package (not the copy pickled in the
binary), then the binary's `score()` runs under the production stack. Output per binary and revision:
`{"score": {"prediction": ..., "probability": {...}}, "features": {name: value}}` or `{"error": class name}`.
Imports nothing of the project.
"""

from __future__ import annotations

import bz2
import concurrent.futures
import importlib
import json
import math
import pickle
import sys

import mwapi
import requests
from revscoring.extractors import api
from revscoring.features import trim


class ProductionUnpickler(pickle.Unpickler):
    """pyenchant 2.0 binaries name `enchant.utils.EnchantStr`, which no pyenchant 3 has; the reference only
    needs the binary's estimator (the features come from the package), so the name resolves to `str`."""

    def find_class(self, module: str, name: str) -> object:
        if module == "enchant.utils" and name in ("EnchantStr", "UTF16EnchantStr"):
            return str
        return super().find_class(module, name)


def plain(value: object) -> object:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if hasattr(value, "tolist"):
        return plain(value.tolist())
    if isinstance(value, (list, tuple)):
        return [plain(item) for item in value]
    if isinstance(value, dict):
        return {str(key): plain(item) for key, item in value.items()}
    return value


def key(label: object) -> str:
    return ("true" if label else "false") if isinstance(label, bool) else str(label)


def score_job(farm_url: str, job: dict) -> dict:
    with bz2.open(job["binary"], "rb") as handle:
        model = ProductionUnpickler(handle).load()
    module, attribute = job["feature_list"].rsplit(".", 1)
    features = list(getattr(importlib.import_module(module), attribute))
    if [str(f) for f in features] != [str(f) for f in model.features]:
        raise SystemExit(f"{job['binary']}: its features are not {job['feature_list']}")
    http = requests.Session()
    http.headers["Host"] = job["host"]
    extractor = api.Extractor(mwapi.Session(farm_url, user_agent="lift-wing reference", session=http))
    base = list(trim(features))
    results = {}
    for rev_id in job["rev_ids"]:
        try:  # one extraction for both lists, as the server does: a solve cache shared by both
            extracted = list(extractor.extract(rev_id, features + base))
        except Exception as error:  # noqa: BLE001 - the error class is the reference answer
            results[str(rev_id)] = {"error": type(error).__name__}
            continue
        values, base_values = extracted[: len(features)], extracted[len(features):]
        score = model.score(values)
        prediction = score["prediction"]
        if isinstance(prediction, list):
            prediction = [key(label) for label in prediction]
        results[str(rev_id)] = {
            "score": {
                "prediction": plain(prediction),
                "probability": {key(label): float(p) for label, p in score["probability"].items()},
            },
            "features": {str(f): plain(v) for f, v in zip(base, base_values, strict=True)},
        }
    return results


def main() -> None:
    spec = json.loads(open(sys.argv[1]).read())
    # Jobs are independent; two processes keep both cores (and the farm's PHP workers) busy.
    with concurrent.futures.ProcessPoolExecutor(max_workers=2) as pool:
        results = pool.map(score_job, [spec["farm_url"]] * len(spec["jobs"]), spec["jobs"])
        output = {job["binary"]: result for job, result in zip(spec["jobs"], results, strict=True)}
    json.dump(output, sys.stdout)


if __name__ == "__main__":
    main()
