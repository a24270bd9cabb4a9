"""Reads blubber.yaml the way Blubber combines it: top level + `includes` + the variant itself.

Shared by the blubber, pipeline, build-file and manifest tests, so they all look at the committed file
(what CI builds), not at the generator that wrote it.
"""

from __future__ import annotations

import copy
from functools import cache
from pathlib import Path
from typing import Any

import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
BLUBBER_FILE = REPO_ROOT / "blubber.yaml"
TEST_VARIANT = "test"


@cache
def load_blubber(path: Path = BLUBBER_FILE) -> dict[str, Any]:
    with open(path, encoding="utf-8") as handle:
        return yaml.safe_load(handle)


def merge(base: Any, override: Any) -> Any:
    """Blubber's merge rule: mappings merge key by key, sequences append, scalars are replaced."""
    if isinstance(base, dict) and isinstance(override, dict):
        merged = dict(base)
        for key, value in override.items():
            merged[key] = merge(base[key], value) if key in base else copy.deepcopy(value)
        return merged
    if isinstance(base, list) and isinstance(override, list):
        return base + override
    return copy.deepcopy(override)


def effective_variant(name: str, config: dict[str, Any] | None = None) -> dict[str, Any]:
    """The configuration Blubber builds for variant `name`."""
    config = config if config is not None else load_blubber()
    common = {key: value for key, value in config.items() if key not in ("version", "variants")}
    return merge(common, _own(name, config))


def _own(name: str, config: dict[str, Any]) -> dict[str, Any]:
    """A variant's settings with those of the variants it includes merged in first."""
    variant = config["variants"][name]
    result: dict[str, Any] = {}
    for included in variant.get("includes", []):
        result = merge(result, _own(included, config))
    return merge(result, {key: value for key, value in variant.items() if key != "includes"})


def copied_from(variant: dict[str, Any]) -> list[str]:
    """The other variants a variant copies files from (its build stages), in order."""
    found = [copy["from"] for copy in variant.get("copies", [])
             if isinstance(copy, dict) and copy.get("from") not in (None, "local")]
    found += [copy for copy in variant.get("copies", []) if isinstance(copy, str)]
    return list(dict.fromkeys(found))


def production_variants(config: dict[str, Any] | None = None) -> list[str]:
    """The images: every variant but the test one and those only other variants copy from (build stages)."""
    config = config if config is not None else load_blubber()
    stages = {source for variant in config["variants"].values() for source in copied_from(variant)}
    return [name for name in config["variants"] if name != TEST_VARIANT and name not in stages]


def build_variant(name: str, config: dict[str, Any] | None = None) -> dict[str, Any]:
    """The effective variant `name` is built in: the one it copies its venv from, or itself (the test
    variant builds and runs in one stage)."""
    variant = effective_variant(name, config)
    sources = copied_from(variant)
    assert len(sources) <= 1, (name, sources)
    return effective_variant(sources[0], config) if sources else variant


def builders(variant: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(kind, settings) of every builder in order: `builders` entries plus standalone python/builder."""
    found = [(kind, settings) for entry in variant.get("builders", []) for kind, settings in entry.items()]
    for kind in ("python", "builder"):
        if kind in variant:
            found.append(("custom" if kind == "builder" else kind, variant[kind]))
    return found


def apt_packages(variant: dict[str, Any]) -> list[str]:
    packages = variant.get("apt", {}).get("packages", [])
    if isinstance(packages, dict):  # {release: [packages]}
        return [package for group in packages.values() for package in group]
    return list(packages)
