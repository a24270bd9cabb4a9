"""Which feature list (module, attribute) the production model of a seed-table row was built with.

The model repositories name them in their Makefiles, e.g. editquality's
`editquality.feature_lists.enwiki.damaging`, articlequality's `...enwiki.wp10`, drafttopic's
`...enwiki.drafttopic`. The exceptions to the "<package>.feature_lists.<dbname>.<name>" pattern are
listed explicitly below. The lead moves this table into revscoring_server/model_types.py.
"""

from __future__ import annotations

import importlib

from dev.seed_table import IsvcRow

# model type -> (package, attribute); the module is "<package>.feature_lists.<dbname>".
PACKAGE_AND_ATTRIBUTE: dict[str, tuple[str, str]] = {
    "damaging": ("editquality", "damaging"),
    "goodfaith": ("editquality", "goodfaith"),
    "reverted": ("editquality", "reverted"),
    "articlequality": ("articlequality", "wp10"),
    "draftquality": ("draftquality", "draft_quality"),
    "articletopic": ("drafttopic", "articletopic"),
    "drafttopic": ("drafttopic", "drafttopic"),
    "itemquality": ("articlequality", "item_quality"),
    "itemtopic": ("drafttopic", "articletopic"),
}

# (model type, dbname) -> (module, attribute) where the production model deviates from the pattern.
EXCEPTIONS: dict[tuple[str, str], tuple[str, str]] = {
    # Wikisource page quality: proofreading levels, not the Wikipedia wp10 scale.
    ("articlequality", "frwikisource"): ("articlequality.feature_lists.frwikisource", "pagelevel"),
    # drafttopic names its Wikidata module "wikidata", not the dbname.
    ("itemtopic", "wikidatawiki"): ("drafttopic.feature_lists.wikidata", "articletopic"),
}


def feature_list_for(row: IsvcRow) -> tuple[str, str]:
    """The (module name, attribute) of the feature list that `row`'s production model uses."""
    exception = EXCEPTIONS.get((row.model_type, row.dbname))
    if exception is not None:
        return exception
    if row.model_type not in PACKAGE_AND_ATTRIBUTE:
        raise KeyError(f"no feature list for model type {row.model_type!r} ({row.isvc})")
    package, attribute = PACKAGE_AND_ATTRIBUTE[row.model_type]
    return f"{package}.feature_lists.{row.dbname}", attribute


def load_feature_list(row: IsvcRow) -> list:
    """Imports the feature list of `row` (needs NLTK stopwords, dictionaries, word vectors)."""
    module_name, attribute = feature_list_for(row)
    return list(getattr(importlib.import_module(module_name), attribute))
