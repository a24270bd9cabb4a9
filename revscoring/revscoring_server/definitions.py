"""What a feature or datasource computes, as a fingerprint: models share solved values only where equal.

revscoring's solver memoizes every value it computes in a dict keyed by the dependent's *name*. Two models
of one wiki may define different features under one name (on ptwiki, articlequality's and draftquality's
`feature.ptwiki.revision.category_links`), so a solve cache shared by both would hand the second model the
first one's value. A definition fingerprint tells such namesakes apart: it covers the dependent's class, its
process function (module, name, code and closure), its other attributes (regexes, word lists, parameters)
and, recursively, its dependencies' fingerprints, after the extractor's context has replaced the abstract
datasources with the ones it solves. Equal fingerprints mean the same computation on the same inputs.

Anything the fingerprint cannot see into (a C object such as a spell-checker) is identified by its type and
identity, so two distinct ones never compare equal: the fingerprint errs towards computing twice, never
towards sharing a value that may differ.
"""

from __future__ import annotations

import hashlib
import re
import threading
import types
from collections.abc import Iterable, Mapping
from typing import Any

from revscoring.dependencies import Dependent
from revscoring.extractors import Extractor

# Attributes of a Dependent that are bookkeeping, not definition: `calls` counts invocations.
_IGNORED_ATTRIBUTES = frozenset({"calls", "name", "_name", "dependencies", "process"})
_MAX_DEPTH = 12  # nested plain objects are followed this deep, then identified by identity

_LOCK = threading.Lock()
# id(dependent) -> (dependent, fingerprint); the dependent is kept so its id cannot be reused.
_MEMO: dict[int, tuple[Any, str]] = {}


class DefinitionIndex:
    """Every dependent a model's features reach (context applied): `{name: (dependent, fingerprint)}`."""

    def __init__(self, entries: Mapping[str, tuple[Dependent, str]]) -> None:
        self.entries = dict(entries)

    def seed(self, solved: Mapping[tuple[str, str], Any]) -> dict[Dependent, Any]:
        """A solve cache for this model: the values in `solved` whose (name, fingerprint) is its own."""
        cache: dict[Dependent, Any] = {}
        for name, (dependent, fingerprint) in self.entries.items():
            key = (name, fingerprint)
            if key in solved:
                cache[dependent] = solved[key]
        return cache

    def harvest(self, cache: Mapping[Any, Any], solved: dict[tuple[str, str], Any]) -> None:
        """Adds the values this model solved to `solved`, under (name, this model's fingerprint)."""
        for dependent, value in cache.items():
            name = str(dependent)
            entry = self.entries.get(name)
            if entry is not None:
                solved.setdefault((name, entry[1]), value)


def definition_index(features: Iterable[Any], context: Mapping[Any, Any]) -> DefinitionIndex:
    """The index of every dependent `features` depend on, resolved through `context` as the solver does."""
    entries: dict[str, tuple[Dependent, str]] = {}
    for dependent in walk(features, context):
        entries[str(dependent)] = (dependent, fingerprint(dependent, context))
    return DefinitionIndex(entries)


def walk(features: Iterable[Any], context: Mapping[Any, Any]) -> list[Any]:
    """`features` and everything they depend on, each replaced by its context entry as the solver does."""
    seen: dict[str, Any] = {}
    stack = list(features)
    while stack:
        dependent = stack.pop()
        dependent = context.get(dependent, dependent)
        name = str(dependent)
        if name in seen:
            continue
        seen[name] = dependent
        stack.extend(getattr(dependent, "dependencies", None) or [])
    return list(seen.values())


def fingerprint(dependent: Any, context: Mapping[Any, Any]) -> str:
    """The definition fingerprint of `dependent` (resolved through `context`), memoized per object."""
    dependent = context.get(dependent, dependent)
    with _LOCK:
        memo = _MEMO.get(id(dependent))
    if memo is not None and memo[0] is dependent:
        return memo[1]
    parts = [
        _type_name(type(dependent)),
        str(dependent),
        _describe(getattr(dependent, "process", None), 0, set()),
        _describe(
            {key: value for key, value in vars(dependent).items() if key not in _IGNORED_ATTRIBUTES}, 0, set()
        ),
        "deps:"
        + ",".join(
            fingerprint(dependency, context) for dependency in getattr(dependent, "dependencies", None) or []
        ),
    ]
    digest = hashlib.sha256("\x1f".join(parts).encode("utf-8", "surrogatepass")).hexdigest()[:32]
    with _LOCK:
        _MEMO[id(dependent)] = (dependent, digest)
    return digest


def _type_name(kind: type) -> str:
    return f"{kind.__module__}.{kind.__qualname__}"


def _describe(value: Any, depth: int, active: set[int]) -> str:
    """A text that is equal for two values only if they compute alike (see the module's docstring)."""
    if value is None or isinstance(value, (bool, int, float, complex, str, bytes)):
        return f"{type(value).__name__}:{value!r}"
    if isinstance(value, Dependent):
        # A dependent held as a parameter (not a dependency): its name and class; its dependencies are
        # walked through `dependencies` when it is one.
        return f"dependent:{_type_name(type(value))}:{value}"
    if isinstance(value, re.Pattern):
        return f"regex:{value.flags}:{value.pattern!r}"
    if isinstance(value, Extractor):
        # The context's datasources hold their extractor; every model of a job is solved by the same one.
        return f"extractor:{_type_name(type(value))}"
    if id(value) in active or depth > _MAX_DEPTH:
        return f"object:{_type_name(type(value))}@{id(value)}"
    active = active | {id(value)}
    if isinstance(value, (list, tuple)):
        return (
            f"{type(value).__name__}[" + ",".join(_describe(item, depth + 1, active) for item in value) + "]"
        )
    if isinstance(value, (set, frozenset)):
        return (
            f"{type(value).__name__}{{"
            + ",".join(sorted(_describe(item, depth + 1, active) for item in value))
            + "}"
        )
    if isinstance(value, dict):
        return (
            "dict{"
            + ",".join(
                sorted(
                    f"{_describe(k, depth + 1, active)}:{_describe(v, depth + 1, active)}"
                    for k, v in value.items()
                )
            )
            + "}"
        )
    if isinstance(value, types.MethodType):
        function = _describe(value.__func__, depth + 1, active)
        return f"method:{function}@{_describe(value.__self__, depth + 1, active)}"
    if isinstance(value, types.FunctionType):
        return _describe_function(value, depth, active)
    if isinstance(value, type):
        return f"type:{_type_name(value)}"
    if isinstance(value, (types.BuiltinFunctionType, types.ModuleType)):
        return f"builtin:{getattr(value, '__module__', '')}.{getattr(value, '__qualname__', value.__name__)}"
    if isinstance(value, Iterable) and not hasattr(value, "__dict__"):
        return f"object:{_type_name(type(value))}@{id(value)}"
    state = getattr(value, "__dict__", None)
    if isinstance(state, dict):
        return f"{_type_name(type(value))}(" + _describe(state, depth + 1, active) + ")"
    return f"object:{_type_name(type(value))}@{id(value)}"


def _describe_function(function: types.FunctionType, depth: int, active: set[int]) -> str:
    """Module and name (globals are the module's), the code, defaults and closure values."""
    closure = [cell.cell_contents for cell in function.__closure__ or () if _cell_filled(cell)]
    return "function:" + "|".join(
        (
            function.__module__ or "",
            function.__qualname__,
            _describe_code(function.__code__),
            _describe(function.__defaults__, depth + 1, active),
            _describe(function.__kwdefaults__, depth + 1, active),
            _describe(closure, depth + 1, active),
        )
    )


def _describe_code(code: types.CodeType) -> str:
    constants = ",".join(
        _describe_code(constant) if isinstance(constant, types.CodeType) else repr(constant)
        for constant in code.co_consts
    )
    return hashlib.sha256(code.co_code + constants.encode() + repr(code.co_names).encode()).hexdigest()[:16]


def _cell_filled(cell: types.CellType) -> bool:
    try:
        cell.cell_contents  # noqa: B018 - an empty cell raises
    except ValueError:
        return False
    return True
