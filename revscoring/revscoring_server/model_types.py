"""THE table of revscoring model types: everything that differs between them is data here.

Per type: which MediaWiki documents its features need besides the revision itself, the shape of its
output, the content models it can read, the feature list its production models were built with, and
the image family that serves it. The server never branches on a type name; it reads this table.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Output(enum.Enum):
    """How a model's prediction looks."""

    BINARY = "binary"  # prediction: bool, probability: {"true": p, "false": 1-p}
    MULTICLASS = "multiclass"  # prediction: one label, probability per label (sums to 1)
    MULTILABEL = "multilabel"  # prediction: a list of labels, an independent probability per label


class Need(enum.Enum):
    """MediaWiki documents a feature list may depend on, beyond the revision (always fetched).

    Each value is the name of the api.Extractor datasource that would otherwise call the API itself.
    """

    PARENT_REVISION = "datasource.revision.parent.doc"
    USER_INFO = "datasource.revision.user.info.doc"
    PAGE_CREATION = "datasource.revision.page.creation.doc"
    USER_LAST_REVISION = "datasource.revision.user.last_revision.doc"
    PROPERTY_SUGGESTIONS = "datasource.revision.page.suggested.properties.doc"


WIKITEXT = ("wikitext",)
WIKIBASE_ITEM = ("wikibase-item",)


@dataclass(frozen=True)
class ModelType:
    name: str
    package: str  # the Python package whose feature lists the models were built with
    feature_list_attribute: str  # attribute of `<package>.feature_lists.<wiki module>`
    output: Output
    needs: frozenset[Need]
    image: str  # the image family (production images are per family, not per type)
    content_models: tuple[str, ...] = WIKITEXT
    # dbname -> content models, where a wiki's pages are not wikitext (Wikidata items, Wikisource pages)
    content_models_by_wiki: tuple[tuple[str, tuple[str, ...]], ...] = ()
    # dbname -> (module, attribute) where the feature list does not follow "<package>.feature_lists.<dbname>"
    feature_list_exceptions: tuple[tuple[str, tuple[str, str]], ...] = ()

    def accepted_content_models(self, dbname: str) -> tuple[str, ...]:
        return dict(self.content_models_by_wiki).get(dbname, self.content_models)

    def feature_list(self, dbname: str) -> tuple[str, str]:
        """(module, attribute) of the feature list this type's model for `dbname` was built with."""
        exception = dict(self.feature_list_exceptions).get(dbname)
        if exception is not None:
            return exception
        return f"{self.package}.feature_lists.{dbname}", self.feature_list_attribute


# Edit quality reads the diff against the parent revision and the editor's account (edit count, groups,
# registration); Wikidata edits are diffs of item JSON, and property pages are edited too.
_EDIT_QUALITY_NEEDS = frozenset({Need.PARENT_REVISION, Need.USER_INFO})
_WIKIDATA_EDITS = (("wikidatawiki", ("wikibase-item", "wikibase-property")),)


def _edit_quality(name: str) -> ModelType:
    return ModelType(
        name,
        "editquality",
        name,
        Output.BINARY,
        _EDIT_QUALITY_NEEDS,
        "editquality",
        content_models_by_wiki=_WIKIDATA_EDITS,
    )


MODEL_TYPES: dict[str, ModelType] = {
    model_type.name: model_type
    for model_type in (
        _edit_quality("damaging"),
        _edit_quality("goodfaith"),
        _edit_quality("reverted"),
        ModelType(
            "articlequality",
            "articlequality",
            "wp10",
            Output.MULTICLASS,
            frozenset(),
            "articlequality",
            # Wikisource pages live in the Page: namespace with ProofreadPage's content model.
            content_models_by_wiki=(("frwikisource", ("proofread-page", "wikitext")),),
            feature_list_exceptions=(
                ("frwikisource", ("articlequality.feature_lists.frwikisource", "pagelevel")),
            ),
        ),
        # ORES's names for the Wikidata models: quality and topics of an item, read from its entity JSON.
        ModelType(
            "itemquality",
            "articlequality",
            "item_quality",
            Output.MULTICLASS,
            frozenset(),
            "articlequality",
            content_models=WIKIBASE_ITEM,
        ),
        ModelType(
            "draftquality", "draftquality", "draft_quality", Output.MULTICLASS, frozenset(), "draftquality"
        ),
        ModelType(
            "articletopic",
            "drafttopic",
            "articletopic",
            Output.MULTILABEL,
            frozenset(),
            "topic",
        ),
        ModelType(
            "itemtopic",
            "drafttopic",
            "articletopic",
            Output.MULTILABEL,
            frozenset(),
            "topic",
            content_models=WIKIBASE_ITEM,
            # drafttopic names its Wikidata module after the project, not the dbname.
            feature_list_exceptions=(
                ("wikidatawiki", ("drafttopic.feature_lists.wikidata", "articletopic")),
            ),
        ),
        ModelType("drafttopic", "drafttopic", "drafttopic", Output.MULTILABEL, frozenset(), "topic"),
    )
}
