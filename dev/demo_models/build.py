"""Builds models/<isvc>/model.bin for every seed-table row: real revscoring models trained on farm data.

Per wiki: extract the features of every farm revision once (all of that wiki's feature lists in one
revscoring `api.Extractor` pass), then fit one GradientBoosting model per distinct (feature list, labels)
and write it to every row that uses it. Wikis run in parallel worker processes.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import logging
import multiprocessing
import os
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mwapi
import numpy as np
import requests

from dev.demo_models import training
from dev.demo_models.feature_lists import feature_list_for, load_feature_list
from dev.demo_models.labels import TOPIC_TYPES, is_multilabel, labels_for
from dev.seed_table import REPO_ROOT, IsvcRow

logger = logging.getLogger(__name__)

USER_AGENT = "lift-wing-dev demo model builder"
EXTRACT_BATCH = 50
MODEL_PARAMS = {"n_estimators": 20, "max_depth": 3, "learning_rate": 0.2, "random_state": 0}
# Topic models fit one estimator per label (64): fewer, shallower trees keep `make models` short.
MULTILABEL_PARAMS = {**MODEL_PARAMS, "n_estimators": 10, "max_depth": 2, "learning_rate": 0.3}
SOURCES = [*sorted((REPO_ROOT / "dev" / "demo_models").glob("*.py")), REPO_ROOT / "dev" / "word_vectors.py",
           REPO_ROOT / "requirements" / "constraints.txt"]
FINGERPRINT_FILE = ".demo-fingerprint"  # hidden: the one visible file of the folder is the model
# Content language -> the revscoring language module's name, which prefixes its feature names.
LANGUAGE_NAMES = {
    "ar": "arabic", "bn": "bengali", "bs": "bosnian", "ca": "catalan", "cs": "czech", "de": "german",
    "el": "greek", "en": "english", "es": "spanish", "et": "estonian", "eu": "basque", "fa": "persian",
    "fi": "finnish", "fr": "french", "gl": "galician", "he": "hebrew", "hi": "hindi", "hr": "croatian",
    "hu": "hungarian", "id": "indonesian", "is": "icelandic", "it": "italian", "ja": "japanese",
    "ko": "korean", "lv": "latvian", "nb": "norwegian", "nl": "dutch", "pl": "polish", "pt": "portuguese",
    "ro": "romanian", "ru": "russian", "sq": "albanian", "sr": "serbian", "sv": "swedish", "ta": "tamil",
    "tr": "turkish", "uk": "ukrainian", "vi": "vietnamese", "zh": "chinese",
}


def fingerprint(manifest_path: Path) -> str:
    """Changes when the builder, the pins or the farm's seeded content change (then models are rebuilt)."""
    digest = hashlib.sha256()
    for path in [*SOURCES, manifest_path]:
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


def is_current(models_dir: Path, row: IsvcRow, print_: str) -> bool:
    stamp = models_dir / row.isvc / FINGERPRINT_FILE
    return (models_dir / row.isvc / "model.bin").exists() and stamp.exists() and stamp.read_text() == print_


def farm_session(url: str, domain: str) -> mwapi.Session:
    """A Session for one farm wiki: same endpoint for all, the Host header picks the wiki."""
    http = requests.Session()
    http.headers["Host"] = domain
    return mwapi.Session(url, user_agent=USER_AGENT, api_path="/w/api.php", session=http, timeout=60)


def training_rev_ids(wiki: dict[str, Any]) -> list[int]:
    """Every seeded revision except the huge page (slow diffs, nothing to learn) and the hidden one."""
    special = wiki.get("special", {})
    skip = {special.get("hidden_rev_id"), special.get("large_rev_id")}
    large_title = special.get("large_page_title")
    return sorted(rev_id for page in wiki["pages"] if page["title"] != large_title
                  for rev_id in page["rev_ids"] if rev_id not in skip)


def extract(session: mwapi.Session, rev_ids: list[int], features: list) -> list[list[Any]]:
    """Feature values of each revision that extracts cleanly (deleted/missing ones are skipped)."""
    from revscoring.extractors import api

    extractor = api.Extractor(session)
    values: list[list[Any]] = []
    for start in range(0, len(rev_ids), EXTRACT_BATCH):
        batch = rev_ids[start:start + EXTRACT_BATCH]
        for rev_id, (error, row_values) in zip(batch, extractor.extract(batch, features), strict=True):
            if error is None:
                values.append(list(row_values))
            else:
                logger.debug("r%s skipped: %r", rev_id, error)
    return values


def observations(row: IsvcRow, names: list[str], base: list[list[Any]], seed: int) -> list:
    rng = np.random.default_rng(seed)
    language = LANGUAGE_NAMES.get(row.content_language, "")
    if row.model_type in ("damaging", "reverted"):
        return training.binary_observations(names, base, "damaging", language, rng)
    if row.model_type == "goodfaith":
        return training.binary_observations(names, base, "goodfaith", language, rng)
    if row.model_type in ("articlequality", "itemquality"):
        return training.ordinal_observations(names, base, labels_for(row), rng)
    if row.model_type == "draftquality":
        return training.draft_observations(names, base, labels_for(row), rng)
    return training.topic_observations(base, rng)


def fit(row: IsvcRow, features: list, names: list[str], base: list[list[Any]]) -> Any:
    from revscoring.scoring.models import GradientBoosting

    package = feature_list_for(row)[0].split(".")[0]
    version = f"{importlib.metadata.version(package)}-demo"
    seed = int(hashlib.sha256(f"{row.dbname}:{row.model_type}".encode()).hexdigest()[:8], 16)
    labels = list(labels_for(row))
    params = MULTILABEL_PARAMS if is_multilabel(row) else MODEL_PARAMS
    model = GradientBoosting(features, labels=labels, multilabel=is_multilabel(row), version=version,
                             **params)
    model.train(observations(row, names, base, seed))
    return model


def _group_key(row: IsvcRow, features: list) -> tuple:
    # damaging and reverted share list, labels and rule; articletopic/drafttopic share labels and, except
    # on Wikidata, the feature list (the same Python list under two names).
    kind = "damaging" if row.model_type == "reverted" else row.model_type
    kind = "topic" if kind in TOPIC_TYPES else kind
    return (tuple(str(feature) for feature in features), kind)


@dataclass(frozen=True)
class WikiJob:
    dbname: str
    domain: str
    rows: tuple[IsvcRow, ...]
    rev_ids: tuple[int, ...]
    farm_url: str
    models_dir: Path
    fingerprint: str


def build_wiki(job: WikiJob) -> list[str]:
    """Extracts once, fits once per group, writes every row of one wiki. Returns the isvcs written."""
    os.chdir(REPO_ROOT)  # revscoring finds the word vectors in ./word2vec/
    lists = {}
    for row in job.rows:
        lists.setdefault(feature_list_for(row), load_feature_list(row))
    combined = [feature for features in lists.values() for feature in features]
    started = time.monotonic()
    values = extract(farm_session(job.farm_url, job.domain), list(job.rev_ids), combined)
    if not values:
        raise RuntimeError(f"{job.dbname}: no revision could be extracted from the farm")
    logger.info("%s: %d revisions extracted in %.1fs", job.dbname, len(values), time.monotonic() - started)
    base_by_list, offset = {}, 0
    for key, features in lists.items():
        base_by_list[key] = [v[offset:offset + len(features)] for v in values]
        offset += len(features)
    fitted: dict[tuple, Any] = {}
    for row in job.rows:
        features = lists[feature_list_for(row)]
        key = _group_key(row, features)
        if key not in fitted:
            fitted[key] = fit(row, features, [str(f) for f in features], base_by_list[feature_list_for(row)])
        write_model(job.models_dir, row, fitted[key], job.fingerprint)
    return [row.isvc for row in job.rows]


def write_model(models_dir: Path, row: IsvcRow, model: Any, print_: str) -> None:
    target = models_dir / row.isvc
    target.mkdir(parents=True, exist_ok=True)
    temporary = target / "model.bin.tmp"
    with open(temporary, "wb") as handle:
        model.dump(handle)
    temporary.replace(target / "model.bin")
    (target / FINGERPRINT_FILE).write_text(print_)


def wiki_jobs(rows: Iterable[IsvcRow], manifest: dict[str, Any], farm_url: str, models_dir: Path,
              print_: str) -> list[WikiJob]:
    by_wiki: dict[str, list[IsvcRow]] = {}
    for row in rows:
        by_wiki.setdefault(row.dbname, []).append(row)
    wikis = manifest["wikis"] if "wikis" in manifest else manifest
    jobs = []
    for dbname, wiki_rows in by_wiki.items():
        wiki = wikis[dbname]
        jobs.append(WikiJob(dbname, wiki["host"], tuple(wiki_rows), tuple(training_rev_ids(wiki)), farm_url,
                            models_dir, print_))
    # Biggest first, so two workers finish at about the same time.
    return sorted(jobs, key=lambda job: -len(job.rows) * len(job.rev_ids))


def run_jobs(jobs: list[WikiJob], processes: int, total: int) -> None:
    done = 0
    started = time.monotonic()
    context = multiprocessing.get_context("fork")
    with context.Pool(processes) as pool:
        for isvcs in pool.imap_unordered(build_wiki, jobs):
            done += len(isvcs)
            print(f"[{done}/{total}] {', '.join(isvcs)} ({time.monotonic() - started:.0f}s)", flush=True)
