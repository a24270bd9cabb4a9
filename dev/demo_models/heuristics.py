"""Labels for demo training data, computed from a revision's extracted feature values.

The rules are written down in README.md beside this file. They read feature values by feature name,
so the same rules work for every wiki's feature list; a rule whose features a list lacks falls back
to the features that list has. Every function takes parallel lists of names and values.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

NEWCOMER_SECONDS = 7 * 24 * 3600  # registered less than a week before the edit
LARGE_REMOVAL_CHARS = 1000
QUALITY_NAME_PARTS = ("chars", "ref", "cite", "wikilink", "heading", "template", "image", "claim",
                      "statement", "sitelink", "reference", "label", "description", "categor", "words")


def _numeric(value: Any) -> float | None:
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, int | float) and math.isfinite(value):
        return float(value)
    return None


def _matching(names: Sequence[str], values: Sequence[Any], *parts: str) -> list[float]:
    """Numeric values of the features whose name contains every one of `parts`."""
    found = []
    for name, value in zip(names, values, strict=True):
        number = _numeric(value)
        if number is not None and all(part in name for part in parts):
            found.append(number)
    return found


def edit_signals(names: Sequence[str], values: Sequence[Any]) -> dict[str, float]:
    """Who edited and what the edit did: anonymous, newcomer, bad words added, characters removed."""
    anon = any(_matching(names, values, "user.is_anon"))
    age = _matching(names, values, "seconds_since_registration")
    newcomer = not anon and bool(age) and age[0] < NEWCOMER_SECONDS
    bad_added = sum(_matching(names, values, "badwords", "diff")) + sum(
        _matching(names, values, "informals", "diff"))
    removed = max(_matching(names, values, "diff", "chars_removed") or [0.0])
    return {"anon": float(anon), "newcomer": float(newcomer), "bad_added": max(bad_added, 0.0),
            "removed": removed}


def damage_score(names: Sequence[str], values: Sequence[Any]) -> float:
    """2 for added bad words, 1 each for an anonymous/newcomer editor and for a large removal."""
    signals = edit_signals(names, values)
    return (2.0 * (signals["bad_added"] > 0) + signals["anon"] + signals["newcomer"]
            + (signals["removed"] > LARGE_REMOVAL_CHARS))


def is_damaging(names: Sequence[str], values: Sequence[Any]) -> bool:
    """damaging and reverted: at least two of the warning signs (bad words count twice)."""
    return damage_score(names, values) >= 2


def is_goodfaith(names: Sequence[str], values: Sequence[Any]) -> bool:
    """goodfaith: anything but bad words added by an anonymous or brand-new editor."""
    return damage_score(names, values) < 3


def quality_score(names: Sequence[str], values: Sequence[Any]) -> float:
    """Size and references: log-sum of the size/reference/structure counts a feature list has."""
    parts = [v for name, v in zip(names, values, strict=True)
             if any(p in name for p in QUALITY_NAME_PARTS) and (_numeric(v) or 0) > 0]
    if not parts:  # a list without such features: every positive number counts
        parts = [v for v in values if (_numeric(v) or 0) > 0]
    return sum(math.log1p(_numeric(v) or 0.0) for v in parts)


def draft_class(names: Sequence[str], values: Sequence[Any]) -> str:
    """draftquality: bad words -> vandalism; negative tone -> attack; links without references -> spam."""
    bad = sum(_matching(names, values, "badwords")) + sum(_matching(names, values, "informals"))
    negative = sum(_matching(names, values, "negative_polarity"))
    positive = sum(_matching(names, values, "positive_polarity"))
    urls = sum(_matching(names, values, "url_chars")) + sum(_matching(names, values, "external_link"))
    refs = sum(_matching(names, values, "ref_tags"))
    if bad >= 2:
        return "vandalism"
    if negative > positive + 1 or (bad > 0 and negative > 0):
        return "attack"
    if urls > 100 and refs == 0:
        return "spam"
    return "OK"
