"""Reading a revscoring model binary the way production pickled it.

Production binaries were pickled by Lift Wing's production stack: scikit-learn 1.0.2 and, for the older
ones, pyenchant 2.0.0. This server runs scikit-learn 1.2.2 and pyenchant 3.3.0 (see
requirements/constraints.txt). Two differences between those stacks break such binaries; both are
translated here, while a binary is read, and nowhere else (nothing is patched when a module is imported):

1. pyenchant 2.0 stored, on every `enchant.Dict`, the class it encoded words with for the C library
   (`_StringClass`: `enchant.utils.EnchantStr`, or `UTF16EnchantStr` for the old myspell provider).
   pyenchant 3 removed both classes and encodes plain `str` itself, so unpickling fails on the missing
   name. The reference is resolved to `str` and the stale attribute dropped; pyenchant 3's own
   `__setstate__` then reopens the dictionary by its language tag from the installed dictionaries.
2. scikit-learn 1.1 renamed the fitted loss object of gradient-boosting estimators from `loss_` to `_loss`
   (same class and values; `loss_` became a read-only alias of `_loss`). An estimator pickled by 1.0 keeps
   its loss under the old name and fails in `predict_proba` (`no attribute '_loss'`). It is moved to the
   new name in every gradient-boosting estimator of the binary, however it is wrapped (a multilabel model
   holds one per label).

The tests in tests/revscoring_server/test_production_binaries.py prove, against binaries and scores made
with the production stack (../shared/prodstack), that translated binaries score identically.
"""

from __future__ import annotations

import bz2
import logging
import pickle
import re
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import numpy
from revscoring.scoring.models import Classifier
from sklearn.ensemble._gb import BaseGradientBoosting

logger = logging.getLogger(__name__)

# scikit-learn 1.2 warns once per estimator class it unpickles from another version, with this text.
SKLEARN_VERSION = re.compile(r"Trying to unpickle estimator \w+ from version (\S+) when using version")
BZ2_MAGIC = b"BZh"  # every bzip2 stream starts with it, whatever the file is called

# (module, name) pickled by an older stack -> what it means under the pinned one.
LEGACY_GLOBALS: dict[tuple[str, str], Any] = {
    ("enchant.utils", "EnchantStr"): str,
    ("enchant.utils", "UTF16EnchantStr"): str,
}
LEGACY_ENCHANT_ATTRIBUTE = "_StringClass"
READ_ERRORS = (
    pickle.UnpicklingError,
    EOFError,
    OSError,
    ValueError,
    TypeError,
    AttributeError,
    ImportError,
    IndexError,
    KeyError,
)


class ModelLoadError(Exception):
    """The model binary is missing, unreadable or not a revscoring classifier of the expected kind."""


class LegacyUnpickler(pickle.Unpickler):
    """A pickle reader that resolves the names older stacks pickled (LEGACY_GLOBALS) to current ones."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in LEGACY_GLOBALS:
            return LEGACY_GLOBALS[(module, name)]
        return super().find_class(module, name)


def read_model(path: Path) -> Classifier:
    """The revscoring classifier in the binary at `path` (bzip2 recognised by content), translated.

    Raises ModelLoadError naming the path and what is wrong.
    """
    if not path.is_file():
        raise ModelLoadError(
            f"Model binary {path} does not exist (set MODEL_PATH or mount it at /mnt/models)."
        )
    try:
        with open_binary(path) as handle, warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", UserWarning)
            model = read_pickle(handle)
    except READ_ERRORS as error:
        raise ModelLoadError(
            f"Model binary {path} could not be read as a revscoring model: {type(error).__name__}: {error}"
        ) from None
    if not isinstance(model, Classifier):
        raise ModelLoadError(
            f"Model binary {path} holds a {type(model).__name__}, not a revscoring classifier."
        )
    pickled_by = _versions_warned_about(caught, path)
    translated = translate_legacy_objects(model)
    if pickled_by or translated:
        # scikit-learn warns once per estimator class; one line says it all, with what was translated.
        logger.info("Binary pickled by another scikit-learn; translated where needed",
                    extra={"path": str(path), "pickled_by_scikit_learn": pickled_by, **translated})
    # revscoring's own check: logs a warning when the binary was built with other versions.
    model.info["environment"].check(raise_exception=False)
    return model


def _versions_warned_about(caught: list[warnings.WarningMessage], path: Path) -> list[str]:
    """The scikit-learn versions the binary's estimators were pickled by; other warnings are logged."""
    versions = set()
    for warning in caught:
        match = SKLEARN_VERSION.search(str(warning.message))
        if match:
            versions.add(match.group(1))
        else:
            logger.warning("Warning while reading a model binary",
                           extra={"path": str(path), "warning": str(warning.message)[:300]})
    return sorted(versions)


def open_binary(path: Path) -> IO[bytes]:
    """The file, decompressed when it is bzip2 (production names it `.bz2`, `.model`, `model.bin`, ...)."""
    with open(path, "rb") as probe:
        compressed = probe.read(len(BZ2_MAGIC)) == BZ2_MAGIC
    return bz2.open(path, "rb") if compressed else open(path, "rb")


def read_pickle(handle: IO[bytes]) -> Any:
    return LegacyUnpickler(handle).load()


def translate_legacy_objects(model: Any) -> dict[str, int]:
    """Applies the in-memory translations of the module docstring; returns how many objects of each kind."""
    counts = {"gradient_boosting_losses": 0, "enchant_dicts": 0}
    for obj in object_graph(model):
        if isinstance(obj, BaseGradientBoosting) and "loss_" in vars(obj) and "_loss" not in vars(obj):
            vars(obj)["_loss"] = vars(obj).pop("loss_")
            counts["gradient_boosting_losses"] += 1
        elif _is_enchant_dict(obj) and LEGACY_ENCHANT_ATTRIBUTE in vars(obj):
            del vars(obj)[LEGACY_ENCHANT_ATTRIBUTE]
            counts["enchant_dicts"] += 1
    return {kind: count for kind, count in counts.items() if count}


def _is_enchant_dict(obj: Any) -> bool:
    return type(obj).__module__ == "enchant" and type(obj).__name__ == "Dict"


def object_graph(root: Any) -> Iterator[Any]:
    """Every object reachable from `root` through containers, instance attributes and bound methods."""
    seen: set[int] = set()
    stack = [root]
    while stack:
        obj = stack.pop()
        if id(obj) in seen or isinstance(obj, (str, bytes, int, float, bool, type(None))):
            continue
        seen.add(id(obj))
        yield obj
        stack.extend(_children(obj))


def _children(obj: Any) -> list[Any]:
    if isinstance(obj, dict):
        return [*obj.keys(), *obj.values()]
    if isinstance(obj, (list, tuple, set, frozenset)):
        return list(obj)
    if isinstance(obj, numpy.ndarray):  # GradientBoosting keeps its trees in an object array
        return list(obj.ravel()) if obj.dtype.hasobject else []
    children = []
    if hasattr(obj, "__self__"):  # a bound method (e.g. enchant.Dict(tag).check in a feature list)
        children.append(obj.__self__)
    if hasattr(obj, "__dict__") and not isinstance(obj, type):
        children.extend(vars(obj).values())
    return children
