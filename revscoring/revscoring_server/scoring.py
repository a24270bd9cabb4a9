"""Feature extraction and scoring: one pure function of plain data, so it can run in a thread or a process.

`score_revision_models(RevisionJob)` builds a revscoring `api.Extractor` whose MediaWiki session refuses
every call, fills its `MWAPICache` with the documents fetched beforehand, extracts each model's
features (and, for extended output, the base features, from the same solve cache) and scores. Models are
looked up by file path in a per-process registry, so a worker process loads each model once and jobs stay
small.
"""

from __future__ import annotations

import logging
import math
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from revscoring.errors import (
    CaughtDependencyError,
    CommentDeleted,
    DependencyError,
    EntityNotFound,
    PageNotFound,
    QueryNotSupported,
    RevisionNotFound,
    TextDeleted,
    UnexpectedContentType,
    UserDeleted,
    UserNotFound,
)
from revscoring.extractors.api import Extractor, MWAPICache
from revscoring.features import trim
from revscoring.scoring.models import Classifier

from revscoring import Model
from revscoring_server.binaries import ModelLoadError, read_model
from revscoring_server.definitions import DefinitionIndex, definition_index
from revscoring_server.fetch import ApiDocs, UnscorableRevision
from revscoring_server.model_types import Output
from wikiserve.errors import MediaWikiError, MediaWikiTimeout, ServingError

logger = logging.getLogger(__name__)


class FeatureExtractionError(ServingError):
    status = 500


class ScoringError(ServingError):
    status = 500


class NetworkForbidden(Exception):
    """Feature extraction asked for MediaWiki data that was not fetched beforehand (a fetch-plan bug)."""


class NoNetworkSession:
    """Stands in for `mwapi.Session`: extraction must be served entirely from the pre-filled cache."""

    def get(self, **params: Any) -> dict:
        raise NetworkForbidden(f"feature extraction tried to call the MediaWiki API itself with {params!r}")

    post = get


_MODELS: dict[str, Model] = {}
_MODELS_LOCK = threading.Lock()


def load_model(path: Path | str) -> Model:
    """The revscoring model at `path` (see binaries.read_model), loaded once per process."""
    key = str(path)
    with _MODELS_LOCK:
        if key not in _MODELS:
            seed_randomised_features()
            _MODELS[key] = read_model(Path(path))
        return _MODELS[key]


def seed_randomised_features() -> None:
    """Fixes the seed of the one randomised feature source, so a revision always gets the same score.

    langdetect (translatewiki's language features) samples n-grams at random unless its factory has a
    seed; with one, every detection starts from the same seed. Set per process, before any extraction.
    """
    try:
        from langdetect import DetectorFactory
    except ImportError:  # only the editquality image has it
        return
    DetectorFactory.seed = 0


def check_output_shape(model: Classifier, output: Output, path: Path | str) -> None:
    """Fails when the binary's labels do not fit the model type (e.g. a topic model served as damaging)."""
    labels = list(model.labels)
    if output is Output.MULTILABEL:
        fits = bool(model.multilabel)
    elif output is Output.BINARY:
        fits = not model.multilabel and set(labels) == {True, False}
    else:
        fits = (
            not model.multilabel and len(labels) >= 2 and not all(isinstance(label, bool) for label in labels)
        )
    if not fits:
        raise ModelLoadError(
            f"Model binary {path} does not fit a {output.value} model type: its labels are "
            f"{labels[:8]} (multilabel={model.multilabel})."
        )


@dataclass(frozen=True)
class RevisionJob:
    """One revision scored by one or several models of its wiki: one extraction job, sent to a worker."""

    models: tuple[tuple[str, str], ...]  # (model name in the response, model path)
    rev_id: int
    docs: ApiDocs
    extended_output: bool = False


Outcome = dict[str, Any] | ServingError  # a model's entry `{"score": ...}`, or why it has none


def score_revision_models(job: RevisionJob) -> dict[str, Outcome]:
    """Every model's entry for one revision, computing what the models share once.

    The MediaWiki documents and what revscoring reads from them are shared. Beyond that, each model solves in
    its own solve cache, seeded with the values earlier models computed for dependents whose *definition* is
    the same as its own (`definitions.py`): revscoring keys its cache by name, and two models may define
    different features under one name. A model that cannot score the revision gets the ServingError saying
    why, while the others are still scored.
    """
    extractor = Extractor(NoNetworkSession(), http_cache=_http_cache(job.docs))
    roots = _solve_cache(extractor, job.docs)
    shared = len(job.models) > 1
    solved: dict[tuple[str, str], Any] = {}
    outcomes: dict[str, Outcome] = {}
    for name, path in job.models:
        index = model_definitions(path) if shared else None
        cache = {**roots, **index.seed(solved)} if index is not None else dict(roots)
        try:
            outcomes[name] = _model_entry(extractor, cache, path, job.rev_id, job.extended_output)
        except ServingError as error:
            outcomes[name] = error
        if index is not None:
            index.harvest(cache, solved)
    return outcomes


_DEFINITIONS: dict[str, DefinitionIndex] = {}
_DEFINITIONS_LOCK = threading.Lock()


def model_definitions(path: str) -> DefinitionIndex:
    """The definition index of the model at `path`'s features, built once per process (at load time)."""
    with _DEFINITIONS_LOCK:
        index = _DEFINITIONS.get(path)
        if index is None:
            # The api.Extractor's context: the datasources every request's extractor solves with.
            index = definition_index(load_model(path).features, Extractor(None).context)
            _DEFINITIONS[path] = index
        return index


def error_entry(error: ServingError) -> dict[str, Any]:
    """ORES's per-revision error object for `error`: the type names what went wrong, as ORES named it."""
    return {"error": {"type": ores_error_type(error), "message": error.message}}


def ores_error_type(error: ServingError) -> str:
    error_type = getattr(error, "error_type", None)
    if error_type:
        return error_type
    if isinstance(error, MediaWikiTimeout):
        return "TimeoutError"
    if error.api_code in ("nosuchrevid", "badrevids"):
        return "RevisionNotFound"
    return type(error).__name__


def _model_entry(extractor: Extractor, cache: dict, model_path: str, rev_id: int, extended: bool) -> dict:
    model = load_model(model_path)
    features = list(model.features)
    base_features = (
        [feature for feature in trim(features) if feature not in set(features)] if extended else []
    )
    wanted = features + base_features
    try:
        if all(feature in cache for feature in wanted):
            # Every value is already solved (another model of the same job shares this feature list): read
            # them as revscoring's solver would, without walking the dependency graph again.
            values = [cache[feature] for feature in wanted]
        else:
            values = list(extractor.extract(rev_id, wanted, cache=cache))
    except DependencyError as error:
        raise _extraction_error(error, rev_id) from None
    entry: dict[str, Any] = {"score": _score(model, values[: len(features)], rev_id, model_path)}
    if extended:
        # Base features: the unmodified features the model's (possibly log/sub-modified) ones are built on.
        base = list(trim(features))
        by_feature = {
            **dict(zip(features, values, strict=False)),
            **dict(zip(base_features, values[len(features) :], strict=True)),
        }
        entry["features"] = {str(feature): jsonable(by_feature[feature]) for feature in base}
    return entry


def _score(model: Model, values: list, rev_id: int, model_path: str) -> dict[str, Any]:
    try:
        return format_score(model.score(values))
    except Exception as error:  # noqa: BLE001 - the estimator's own errors (e.g. a feature count mismatch)
        logger.exception("Scoring failed", extra={"rev_id": rev_id, "model_path": model_path})
        message = f"Scoring revision {rev_id} failed: {type(error).__name__}: {str(error)[:200]}"
        raise ScoringError(message) from None


def _http_cache(docs: ApiDocs) -> MWAPICache:
    http_cache = MWAPICache()
    http_cache.add_revisions_batch_doc([docs.rev_id], docs.revision)
    if docs.parent is not None and docs.parent_id is not None:
        http_cache.add_revisions_batch_doc([docs.parent_id], docs.parent)
    if docs.user is not None and docs.user_text is not None:
        http_cache.add_users_batch_doc([docs.user_text], docs.user)
    if docs.property_suggestions is not None and docs.entity_id is not None:
        http_cache.add_wbsgetsuggestions_doc(docs.entity_id, docs.property_suggestions)
    return http_cache


def _solve_cache(extractor: Extractor, docs: ApiDocs) -> dict:
    """Values injected straight into the solve cache, for datasources MWAPICache cannot serve.

    revscoring's `get_page_creation_doc` reads a cached doc with `.values()['revisions']`, which fails, and
    its `LastUserRevDoc` asks for `revision.user.last_revision.text`, which does not exist: so both
    documents are injected as their datasources' values instead.
    """
    cache: dict = {}
    page = getattr(extractor.revision, "page", None)
    creation = getattr(page, "creation", None)
    if docs.page_creation is not None and creation is not None:
        cache[creation.doc] = docs.page_creation
    last_revision = getattr(getattr(extractor.revision, "user", None), "last_revision", None)
    if docs.last_user_revision is not None and last_revision is not None:
        contribs = docs.last_user_revision.get("query", {}).get("usercontribs") or []
        cache[last_revision.doc] = contribs[0] if contribs else None  # no earlier edit is fine
    return cache


def _extraction_error(error: DependencyError, rev_id: int) -> ServingError:
    """revscoring's extraction errors, as messages a client can act on."""
    if isinstance(error, CaughtDependencyError):
        cause = error.exception
        if isinstance(cause, NetworkForbidden):
            logger.error("Feature extraction needed data that was not fetched", extra={"error": str(cause)})
            return FeatureExtractionError(
                f"Feature extraction for revision {rev_id} needed MediaWiki data the "
                "server did not fetch; this is a server bug."
            )
        logger.error(
            "Feature extraction failed", extra={"rev_id": rev_id, "error": error.formatted_exception}
        )
        return FeatureExtractionError(
            f"Feature extraction failed for revision {rev_id}: {type(cause).__name__}: {str(cause)[:200]}"
        )
    subject = _subject(error, rev_id)
    kind = type(error).__name__  # revscoring's class names are ORES's error types
    if isinstance(error, TextDeleted):
        return UnscorableRevision(kind, f"The text of {subject} is deleted or hidden; it cannot be scored.")
    if isinstance(error, CommentDeleted):
        return UnscorableRevision(
            kind, f"The edit summary of {subject} is deleted or hidden; it cannot be scored."
        )
    if isinstance(error, UserDeleted):
        return UnscorableRevision(kind, f"The user of {subject} is deleted or hidden; it cannot be scored.")
    if isinstance(error, RevisionNotFound):
        return UnscorableRevision(
            kind,
            f"{subject[0].upper()}{subject[1:]} was not found (deleted?); "
            f"revision {rev_id} cannot be scored.",
        )
    if isinstance(error, (UserNotFound, PageNotFound, EntityNotFound)):
        return UnscorableRevision(kind, f"Could not score revision {rev_id}: {error.message}")
    if isinstance(error, UnexpectedContentType):
        return UnscorableRevision(kind, f"The content of revision {rev_id} cannot be parsed: {error.message}")
    if isinstance(error, QueryNotSupported):
        return MediaWikiError(
            f"The MediaWiki API does not support a query revision {rev_id} needs: {error.message}",
            kind="unsupported_action",
        )
    return FeatureExtractionError(f"Feature extraction failed for revision {rev_id}: {error}")


def _subject(error: DependencyError, rev_id: int) -> str:
    """Which revision an error is about, from the datasource name revscoring puts in its message."""
    message = str(error)
    if "revision.parent" in message:
        return f"the parent revision of revision {rev_id}"
    if "revision.page.creation" in message:
        return f"the first revision of the page of revision {rev_id}"
    if "revision.user.last_revision" in message:
        return f"the previous edit by the user of revision {rev_id}"
    return f"revision {rev_id}"


def format_score(score: dict[str, Any]) -> dict[str, Any]:
    """revscoring's score with JSON-friendly labels: booleans become "true"/"false" keys, floats floats."""
    prediction = score["prediction"]
    if isinstance(prediction, (list, tuple)):
        prediction = [jsonable(label) for label in prediction]
    else:
        prediction = jsonable(prediction)
    probability = {label_key(label): float(value) for label, value in score["probability"].items()}
    return {"prediction": prediction, "probability": probability}


def label_key(label: Any) -> str:
    if isinstance(label, bool):
        return "true" if label else "false"
    return str(label)


def jsonable(value: Any) -> Any:
    """Feature values as JSON values: numpy scalars and arrays become Python numbers and lists."""
    if isinstance(value, bool) or value is None or isinstance(value, (int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if hasattr(value, "tolist"):  # numpy scalar or array
        return jsonable(value.tolist())
    if isinstance(value, (list, tuple)):
        return [jsonable(item) for item in value]
    if isinstance(value, dict):
        return {str(key): jsonable(item) for key, item in value.items()}
    return str(value)


_WARM_UP_WIKITEXT = (
    "'''Warm-up''' is a [[page]] about [[physics]] and {{cite web|title=energy}}.<ref>Source</ref>\n"
    "== History ==\nThe [[theory]] of matter was written in 1900 by a scientist.[[Category:Science]]\n"
)
_WARM_UP_ENTITY = (
    '{"type":"item","id":"Q1","labels":{"en":{"language":"en","value":"Warm-up"}},'
    '"descriptions":{"en":{"language":"en","value":"an item"}},"aliases":{},"claims":{},"sitelinks":{}}'
)


def warm_up_docs(content_model: str, needs_parent: bool, needs_user: bool) -> ApiDocs:
    """Synthetic documents for one made-up edit in `content_model`, for `warm_up`."""
    wikibase = content_model.startswith("wikibase")
    text, title = (_WARM_UP_ENTITY, "Q1") if wikibase else (_WARM_UP_WIKITEXT, "Warm-up")
    parent_text = _WARM_UP_ENTITY.replace("an item", "item") if wikibase else _WARM_UP_WIKITEXT[:80]

    def revision(rev_id: int, parent_id: int, content: str) -> dict[str, Any]:
        return {
            "query": {
                "pages": {
                    "1": {
                        "pageid": 1,
                        "ns": 0,
                        "title": title,
                        "revisions": [
                            {
                                "revid": rev_id,
                                "parentid": parent_id,
                                "user": "Warm-up",
                                "userid": 1,
                                "timestamp": "2024-01-01T00:00:00Z",
                                "size": len(content),
                                "comment": "warm-up edit",
                                "slots": {"main": {"contentmodel": content_model, "*": content}},
                            }
                        ],
                    }
                }
            }
        }

    users = {
        "query": {
            "users": [
                {
                    "userid": 1,
                    "name": "Warm-up",
                    "editcount": 10,
                    "groups": ["*", "user"],
                    "registration": "2020-01-01T00:00:00Z",
                    "gender": "unknown",
                }
            ]
        }
    }
    return ApiDocs(
        rev_id=2,
        revision=revision(2, 1 if needs_parent else 0, text),
        parent_id=1 if needs_parent else None,
        parent=revision(1, 0, parent_text) if needs_parent else None,
        user_text="Warm-up" if needs_user else None,
        user=users if needs_user else None,
    )


def warm_up(model_path: str, model_name: str, docs: ApiDocs) -> None:
    """Scores one synthetic edit before the model reports ready.

    Feature lists load resources lazily on first use (draftquality's SentiWordNet takes seconds), and a
    binary whose features do not match its estimator only fails when scoring: both belong in start-up,
    not in a client's first request. The model's definition index is built here too, before workers fork.
    """
    model_definitions(model_path)
    job = RevisionJob(((model_name, model_path),), docs.rev_id, docs, extended_output=True)
    outcome = score_revision_models(job)[model_name]
    if isinstance(outcome, ServingError):
        raise ModelLoadError(f"Model binary {model_path} failed to score a synthetic edit: {outcome.message}")
