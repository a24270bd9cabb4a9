"""Recorded MediaWiki API responses, keyed so that a replay finds them again.

A key is the Host header, the path and the query parameters, normalized: parameters sorted by name and
the parts of pipe-separated values sorted too. revscoring builds some `prop`/`rvprop` lists from sets,
whose order changes between processes (string hashing is randomized), and the answer does not depend on
that order, so the key must not either.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qsl, urlencode

# Parameters that never change an answer: the client's identity and cache busters.
IGNORED_PARAMS = frozenset({"requestid", "curtimestamp", "origin"})


def normalize_params(pairs: Iterable[tuple[str, str]]) -> str:
    """The canonical form of a query: sorted names, sorted pipe-separated parts, URL-encoded."""
    merged: dict[str, str] = {}
    for name, value in pairs:
        if name in IGNORED_PARAMS:
            continue
        merged[name] = "|".join(sorted(value.split("|"))) if "|" in value else value
    return urlencode(sorted(merged.items()))


def request_key(host: str, path: str, query: str, form: str = "") -> str:
    """The key of one API call: Host, path, and the normalized union of query string and form body."""
    pairs = parse_qsl(query, keep_blank_values=True) + parse_qsl(form, keep_blank_values=True)
    return f"{host.lower()} {path} {normalize_params(pairs)}"


@dataclass(frozen=True)
class Response:
    status: int
    body: bytes
    content_type: str = "application/json; charset=utf-8"


@dataclass
class Recording:
    """Responses by key; saved as gzip'd JSON (bodies are the API's UTF-8 JSON text)."""

    responses: dict[str, Response] = field(default_factory=dict)

    def add(self, key: str, response: Response) -> None:
        self.responses[key] = response

    def get(self, key: str) -> Response | None:
        return self.responses.get(key)

    def __len__(self) -> int:
        return len(self.responses)

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        data = {
            key: {"status": r.status, "content_type": r.content_type, "body": r.body.decode("utf-8")}
            for key, r in sorted(self.responses.items())
        }
        tmp = path.with_suffix(path.suffix + ".tmp")
        with gzip.open(tmp, "wt", encoding="utf-8", compresslevel=3) as handle:
            json.dump(data, handle)
        tmp.replace(path)  # a half-written recording never looks complete

    @classmethod
    def load(cls, path: Path) -> Recording:
        with gzip.open(path, "rt", encoding="utf-8") as handle:
            data: Mapping[str, dict] = json.load(handle)
        return cls(
            {
                key: Response(int(v["status"]), v["body"].encode("utf-8"), v["content_type"])
                for key, v in data.items()
            }
        )

    def merge(self, other: Recording) -> None:
        self.responses.update(other.responses)
