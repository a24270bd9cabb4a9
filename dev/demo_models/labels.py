"""The labels each demo model predicts: the same label sets as the production models of that row."""

from __future__ import annotations

from dev.demo_models.taxonomy import TOPIC_LABELS
from dev.seed_table import IsvcRow

BINARY = (True, False)  # damaging, goodfaith, reverted: `prediction` is a bool

WP10_ENGLISH = ("Stub", "Start", "C", "B", "GA", "FA")

# Article quality scales of the production models, lowest to highest. Wikis not listed use WP10_ENGLISH
# (the English Wikipedia 1.0 scale, which euwiki, fawiki, glwiki, svwiki and ukwiki models adopted).
ARTICLEQUALITY_LABELS: dict[str, tuple[str, ...]] = {
    "frwiki": ("e", "bd", "b", "a", "ba", "adq"),
    "nlwiki": ("E", "D", "C", "B", "A"),
    "ptwiki": ("1", "2", "3", "4", "5", "6"),
    "ruwiki": ("IV", "III", "II", "I", "ХС", "ДС", "ИС"),
    "trwiki": ("Taslak", "Başlangıç", "C", "B", "KM", "SM"),
    # Wikisource proofreading levels of a page, not an article scale.
    "frwikisource": ("without_text", "not_proofread", "problematic", "proofread", "validated"),
}

DRAFTQUALITY_LABELS = ("OK", "attack", "spam", "vandalism")
ITEMQUALITY_LABELS = ("E", "D", "C", "B", "A")  # Wikidata's item quality scale
TOPIC_TYPES = ("articletopic", "drafttopic", "itemtopic")


def labels_for(row: IsvcRow) -> tuple:
    """The label set of `row`'s model, in the order the model lists them."""
    if row.model_type in ("damaging", "goodfaith", "reverted"):
        return BINARY
    if row.model_type == "articlequality":
        return ARTICLEQUALITY_LABELS.get(row.dbname, WP10_ENGLISH)
    if row.model_type == "draftquality":
        return DRAFTQUALITY_LABELS
    if row.model_type == "itemquality":
        return ITEMQUALITY_LABELS
    if row.model_type in TOPIC_TYPES:
        return TOPIC_LABELS
    raise KeyError(f"no labels for model type {row.model_type!r}")


def is_multilabel(row: IsvcRow) -> bool:
    """Topic models predict any number of labels at once (revscoring `multilabel=True`)."""
    return row.model_type in TOPIC_TYPES
