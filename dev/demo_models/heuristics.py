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
BAD_WORD_DENSITY = 0.1  # bad/informal words per word added
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


def _newcomer(names: Sequence[str], values: Sequence[Any]) -> bool:
    # editquality lists carry log(seconds_since_registration + 1), others the plain number of seconds.
    for name, value in zip(names, values, strict=True):
        number = _numeric(value)
        if "seconds_since_registration" in name and "revision.user" in name and number is not None:
            limit = math.log(NEWCOMER_SECONDS + 1) if name.startswith("feature.log(") else NEWCOMER_SECONDS
            return number < limit
    return False


def _bad_words_added(names: Sequence[str], values: Sequence[Any], language: str) -> float:
    """Bad words and informal words the edit added, counted with the wiki's own language's lists.

    Lists carry other languages' word lists too, and those match innocent words (English "ha" is an
    informal, Catalan "ha" is "has"), so they count only when the wiki's language has no list.
    """
    added = [(name, _numeric(value) or 0.0) for name, value in zip(names, values, strict=True)
             if ("badwords" in name or "informals" in name) and name.endswith("diff.match_delta_increase")]
    own = [number for name, number in added if f".{language}." in name]
    return max(sum(own) if own else sum(number for _, number in added), 0.0)


def edit_signals(names: Sequence[str], values: Sequence[Any], language: str = "") -> dict[str, float]:
    """Who edited and what the edit did: anonymous, newcomer, bad words added, characters removed."""
    anon = any(_matching(names, values, "user.is_anon"))
    newcomer = not anon and _newcomer(names, values)
    removed = max(_matching(names, values, "diff", "chars_removed") or [0.0])
    bad_added = _bad_words_added(names, values, language)
    words_added = max(_matching(names, values, "revision.diff.words_change") or [0.0])
    # A long expansion may hit a word list by chance; vandalism is short and dense with such words.
    bad_density = bad_added / words_added if words_added > 0 else float(bad_added > 0)
    return {"anon": float(anon), "newcomer": float(newcomer), "bad_added": bad_added,
            "bad_density": bad_density, "removed": removed}


def damage_score(names: Sequence[str], values: Sequence[Any], language: str = "") -> float:
    """2 for added bad words (> 10% of the added words), 1 each for an anonymous/newcomer editor and for
    a large removal."""
    signals = edit_signals(names, values, language)
    return (2.0 * (signals["bad_density"] > BAD_WORD_DENSITY) + signals["anon"] + signals["newcomer"]
            + (signals["removed"] > LARGE_REMOVAL_CHARS))


# Probability that an edit with a given damage score (capped at 3) is damaging / done in bad faith.
# Labels are drawn with these odds, as in real data where most anonymous edits are fine but many
# damaging ones are anonymous: the models learn graded probabilities, not a hard rule.
DAMAGING_ODDS = (0.03, 0.3, 0.8, 0.97)
BADFAITH_ODDS = (0.01, 0.1, 0.4, 0.9)


def odds(score: float, table: Sequence[float]) -> float:
    return table[min(int(score), len(table) - 1)]


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
