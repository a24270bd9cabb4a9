"""Helpers for the ORES API tests: references computed without the server's code, and metric readings."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import requests

from revscoring_server.scoring import format_score

ORES_ISVCS = (
    "enwiki-damaging",
    "enwiki-goodfaith",
    "enwiki-articlequality",
    "wikidatawiki-damaging",
    "wikidatawiki-itemquality",
)
TIMEOUT_S = 120


def ores_get(server: Any, path: str, timeout_s: float = TIMEOUT_S, **params: Any) -> requests.Response:
    return requests.get(f"{server.url}{path}", params=params or None, timeout=timeout_s)


def farm_host(farm: Any, dbname: str) -> str:
    return farm.manifest[dbname]["host"]


def edits(farm: Any, dbname: str, count: int) -> list[int]:
    """`count` readable revisions of the wiki's main-namespace pages, newest first."""
    manifest = farm.manifest[dbname]
    hidden = {rev["rev_id"] for rev in manifest["revisions"] if rev.get("hidden")}
    rev_ids = [rev_id for page in manifest["pages"] for rev_id in page["rev_ids"] if rev_id not in hidden]
    return sorted(set(rev_ids), reverse=True)[:count]


def reference_score(farm: Any, dbname: str, model_path: Path, rev_id: int) -> dict[str, Any]:
    """The score revscoring itself gives: its own API extractor calling the farm, the model's own `score`
    (formatted with JSON labels, as every Lift Wing answer is)."""
    import mwapi
    from revscoring.extractors.api import Extractor

    from revscoring import Model

    http = requests.Session()
    http.headers["Host"] = farm_host(farm, dbname)
    session = mwapi.Session(
        farm.url, user_agent="ORES API tests", api_path="/w/api.php", session=http, timeout=60
    )
    with open(model_path, "rb") as handle:
        model = Model.load(handle)
    return format_score(model.score(list(Extractor(session).extract(rev_id, model.features))))


def model_version(model_path: Path) -> str:
    from revscoring import Model

    with open(model_path, "rb") as handle:
        return Model.load(handle).version


def metric_value(server: Any, name: str, **labels: str) -> float:
    """One sample of the server's Prometheus text (0 when absent)."""
    text = requests.get(f"{server.url}/metrics", timeout=10).text
    wanted = ",".join(f'{key}="{value}"' for key, value in sorted(labels.items()))
    for line in text.splitlines():
        match = re.fullmatch(rf"{re.escape(name)}(?:\{{(.*)\}})? (\S+)", line)
        if match and ",".join(sorted((match.group(1) or "").split(","))) == wanted:
            return float(match.group(2))
    return 0.0
