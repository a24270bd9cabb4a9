"""Training data for the demo revscoring models: perturbed copies of farm revisions, labelled by heuristics.

Each farm revision's features are extracted once; `observations()` then makes jittered copies (numbers
scaled by a random factor, flags flipped now and then, word vectors nudged) so a few dozen revisions
become a few hundred observations, and labels each copy with the rule of its model type.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from dev.demo_models import heuristics
from dev.demo_models.taxonomy import CLUSTER_LABELS, TOPIC_LABELS
from dev.word_vectors import DIMENSIONS, unit_vector

COPIES_PER_REVISION = 4
PUSHED_PER_TOPIC = 4  # observations pushed towards each topic label, so every label has positives
TOPIC_SIMILARITY = 0.5  # a vector this close (cosine) to a label's direction carries that label

Observation = tuple[list[Any], Any]


def perturb(values: Sequence[Any], rng: np.random.Generator) -> list[Any]:
    """A jittered copy of one revision's feature values (types kept: bools stay bools, ints ints)."""
    copy: list[Any] = []
    for value in values:
        if isinstance(value, bool):
            copy.append(bool(value) != (rng.random() < 0.05))
        elif isinstance(value, int):
            scaled = value * math.exp(rng.normal(0, 0.35)) if value else rng.choice([0, 0, 0, 1])
            copy.append(int(round(scaled)))
        elif isinstance(value, float):
            copy.append(value * math.exp(rng.normal(0, 0.35)) + rng.normal(0, 0.01) if math.isfinite(value)
                        else value)
        elif isinstance(value, list) and value and isinstance(value[0], int | float):
            copy.append([float(x) + rng.normal(0, 0.05) for x in value])
        else:
            copy.append(value)
    return copy


def jittered(base: Sequence[Sequence[Any]], rng: np.random.Generator) -> list[list[Any]]:
    """The revisions themselves plus COPIES_PER_REVISION perturbed copies of each."""
    rows = [list(values) for values in base]
    for values in base:
        rows.extend(perturb(values, rng) for _ in range(COPIES_PER_REVISION))
    return rows


def _ensure_every_label(labels: list[Any], order: Sequence[float], wanted: Sequence[Any]) -> list[Any]:
    """Gives each label that no observation has to the observations ranked highest by `order`.

    sklearn needs every class in the training data; on a tiny farm some rule may never fire.
    """
    ranked = sorted(range(len(labels)), key=lambda i: order[i], reverse=True)
    taken: set[int] = set()
    for label in wanted:
        if label in labels:
            continue
        counts = {lab: labels.count(lab) for lab in set(labels)}
        donors = [i for i in ranked if i not in taken and counts[labels[i]] > 3]
        for i in donors[: max(3, len(labels) // 20)]:
            labels[i] = label
            taken.add(i)
    return labels


def binary_observations(names: list[str], base: list[list[Any]], rule: str, language: str,
                        rng: np.random.Generator) -> list[Observation]:
    """damaging/reverted (rule "damaging") or goodfaith (rule "goodfaith"): labels drawn with the odds of
    each observation's damage score (heuristics.DAMAGING_ODDS / BADFAITH_ODDS)."""
    rows = jittered(base, rng)
    scores = [heuristics.damage_score(names, values, language) for values in rows]
    if rule == "damaging":
        labels = [bool(rng.random() < heuristics.odds(s, heuristics.DAMAGING_ODDS)) for s in scores]
        order = scores
    else:
        labels = [bool(rng.random() >= heuristics.odds(s, heuristics.BADFAITH_ODDS)) for s in scores]
        order = [-s for s in scores]
    labels = _ensure_every_label(labels, [o + rng.random() * 0.1 for o in order], [True, False])
    return list(zip(rows, labels, strict=True))


def ordinal_observations(names: list[str], base: list[list[Any]], classes: Sequence[str],
                         rng: np.random.Generator) -> list[Observation]:
    """articlequality: observations ranked by size-and-references score, cut into equal-size classes."""
    rows = jittered(base, rng)
    scores = [heuristics.quality_score(names, values) + rng.random() * 1e-3 for values in rows]
    ranks = np.argsort(np.argsort(scores))
    labels = [classes[min(int(r) * len(classes) // len(rows), len(classes) - 1)] for r in ranks]
    return list(zip(rows, labels, strict=True))


def draft_observations(names: list[str], base: list[list[Any]], classes: Sequence[str],
                       rng: np.random.Generator) -> list[Observation]:
    """draftquality: the draft_class rule; classes the farm never shows go to the most suspicious copies."""
    rows = jittered(base, rng)
    labels = [heuristics.draft_class(names, values) for values in rows]
    suspicion = [heuristics.damage_score(names, v) + rng.random() for v in rows]
    return list(zip(rows, _ensure_every_label(labels, suspicion, classes), strict=True))


def label_directions() -> np.ndarray:
    """One unit vector per topic label: its word cluster's centroid, or a fixed random direction."""
    directions = []
    for label in TOPIC_LABELS:
        clusters = [name for name, labels in CLUSTER_LABELS.items() if label in labels]
        seeds = [f"topic:{name}" for name in clusters] or [f"label:{label}"]
        vector = sum(unit_vector(seed) for seed in seeds)
        directions.append(vector / np.linalg.norm(vector))
    return np.array(directions)


def _vector_index(values: Sequence[Any]) -> int:
    for index, value in enumerate(values):
        if isinstance(value, list) and len(value) == DIMENSIONS:
            return index
    raise ValueError("the topic feature list has no word-vector feature")


def _topics_of(vector: np.ndarray, directions: np.ndarray) -> set[str]:
    norm = np.linalg.norm(vector)
    if norm == 0:
        return set()
    similarity = directions @ (vector / norm)
    return {TOPIC_LABELS[i] for i in np.flatnonzero(similarity > TOPIC_SIMILARITY)}


def topic_observations(base: list[list[Any]], rng: np.random.Generator) -> list[Observation]:
    """articletopic/drafttopic: a text carries the labels whose direction its mean word vector is close to."""
    directions = label_directions()
    index = _vector_index(base[0])
    rows = jittered(base, rng)
    observations = [(values, sorted(_topics_of(np.array(values[index]), directions))) for values in rows]
    for label_index, label in enumerate(TOPIC_LABELS):
        for _ in range(PUSHED_PER_TOPIC):
            values = perturb(base[int(rng.integers(len(base)))], rng)
            vector = 0.3 * np.array(values[index]) + directions[label_index] + rng.normal(0, 0.1, DIMENSIONS)
            values[index] = [float(x) for x in vector]
            observations.append((values, sorted(_topics_of(vector, directions) | {label})))
    return observations
