"""The demo outlink-topic-model: a supervised fastText model over bags of Wikidata Q-ids.

Production's model reads the Q-ids of the pages an article links to and predicts ORES taxonomy topics.
The demo corpus: every Q-id the farm assigns (`wikibase_item` of its pages) gets a home topic (its
word-vector cluster, the same rule dev.word_vectors uses for Q-ids, mapped to taxonomy labels); a
training line is a bag of Q-ids mostly from one topic, labelled with that topic's labels. Labels no
farm Q-id maps to get lines of synthetic Q-ids of their own, so the model knows all 64 labels.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from dev.demo_models.taxonomy import CLUSTER_LABELS, TOPIC_LABELS
from dev.seed_table import REPO_ROOT
from dev.word_vectors import qid_cluster

LINES_PER_TOPIC = 40
BAG_SIZE = (3, 12)
SYNTHETIC_QID_BASE = 500_000  # synthetic Q-ids for labels no farm item maps to; far above farm ids
FASTTEXT_PARAMS = {"epoch": 25, "lr": 0.2, "dim": 50, "minCount": 1, "loss": "ova", "thread": 1, "seed": 7}


def farm_qids(manifest: dict[str, Any]) -> list[str]:
    """Every distinct Q-id the farm gives its pages, sorted by number."""
    qids = {page["qid"] for wiki in manifest.values() for page in wiki.get("pages", []) if page.get("qid")}
    return sorted(qids, key=lambda qid: int(qid[1:]))


def home_labels(qid: str) -> tuple[str, ...]:
    """The taxonomy labels of a Q-id's cluster (cluster = number modulo the number of clusters)."""
    return CLUSTER_LABELS[qid_cluster(qid)]


def corpus(qids: list[str], rng: np.random.Generator) -> list[str]:
    """fastText training lines: `__label__A __label__B Q1 Q7 ...`."""
    by_labels: dict[tuple[str, ...], list[str]] = {}
    for qid in qids:
        by_labels.setdefault(home_labels(qid), []).append(qid)
    covered = {label for labels in by_labels for label in labels}
    for index, label in enumerate(label for label in TOPIC_LABELS if label not in covered):
        by_labels[(label,)] = [f"Q{SYNTHETIC_QID_BASE + 100 * index + n}" for n in range(10)]
    everything = sorted({qid for members in by_labels.values() for qid in members})
    lines = []
    for labels, members in sorted(by_labels.items()):
        for _ in range(LINES_PER_TOPIC):
            size = int(rng.integers(*BAG_SIZE))
            bag = list(rng.choice(members, size=size))
            bag += list(rng.choice(everything, size=max(1, size // 4)))  # some off-topic links
            rng.shuffle(bag)
            lines.append(" ".join([*(f"__label__{label}" for label in labels), *bag]))
    rng.shuffle(lines)
    return lines


def _train_in_fresh_process(corpus_path: Path, output: Path, attempts: int = 3) -> None:
    """fasttext 0.9.3 now and then aborts with "Encountered NaN" (see fasttext_train.py): try again. With
    address randomisation off, a training repeats itself exactly, so a retry matters only where the kernel
    kept it on."""
    command = [sys.executable, "-m", "dev.demo_models.fasttext_train", str(corpus_path), str(output),
               json.dumps(FASTTEXT_PARAMS)]
    for attempt in range(1, attempts + 1):
        result = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, check=False)
        if result.returncode == 0:
            return
        if "NaN" not in result.stderr or attempt == attempts:
            raise RuntimeError(f"fastText training failed: {result.stderr[-2000:]}")


def build(manifest: dict[str, Any], target: Path) -> Path:
    """Trains (in a fresh process: see fasttext_train.py) and writes models/outlink-topic-model/model.bin."""
    seed = int(hashlib.sha256(b"outlink-topic-model").hexdigest()[:8], 16)
    lines = corpus(farm_qids(manifest), np.random.default_rng(seed))
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", suffix=".txt", encoding="utf-8", delete=False) as handle:
        handle.write("\n".join(lines) + "\n")
        corpus_path = Path(handle.name)
    temporary = target.with_name(target.name + ".tmp")
    try:
        _train_in_fresh_process(corpus_path, temporary)
    finally:
        corpus_path.unlink()
    temporary.replace(target)
    return target
