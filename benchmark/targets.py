"""What the benchmark runs: each target is one model server, started the way its image starts it.

A target knows its server's command and environment, and which requests to send, taken from the farm's
manifest (`.state/farm/manifest.json`): "ordinary" revisions, and "heavy" ones (>= 500 KB of wikitext).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ORDINARY = "ordinary"
HEAVY = "heavy"


@dataclass(frozen=True)
class Candidate:
    """One request the benchmark may send; kept for the load mix if the server answered it with 200."""

    body: dict[str, Any]
    label: str = ORDINARY

    def encoded(self) -> bytes:
        return json.dumps(self.body, sort_keys=True).encode()


@dataclass(frozen=True)
class Target:
    name: str  # the inference service the server serves (the model name in the URL)
    kind: str  # "revscoring" or "outlink"
    image: str  # the image whose server this is (for the report)
    dbname: str
    domain: str  # the wiki's Host header
    model_path: Path
    module_args: tuple[str, ...]
    extra_env: dict[str, str] = field(default_factory=dict)

    @property
    def predict_path(self) -> str:
        return f"/v1/models/{self.name}:predict"

    @property
    def ready_path(self) -> str:
        return f"/v1/models/{self.name}"

    def server_env(self, wiki_url: str, port: int) -> dict[str, str]:
        env = {
            "MODEL_PATH": str(self.model_path),
            "WIKI_URL": wiki_url,
            "HTTP_PORT": str(port),
            "LOG_LEVEL": "WARNING",
            **self.extra_env,
        }
        if self.kind == "revscoring":
            # The mix repeats its revisions: without the score cache (and the memory of missing revisions)
            # every request is fetched and scored, which is what is measured. Without the admission bound
            # too: the scenarios measure the scoring path at set concurrencies (the overload scenario
            # puts the bound back).
            env.update({"INFERENCE_NAME": self.name, "WIKI_HOST": self.domain, "SCORE_CACHE_SIZE": "0",
                        "MISSING_REVISION_TTL_S": "0", "MAX_IN_FLIGHT": "0"})
        return env

    def server_args(self, port: int) -> list[str]:
        return [*self.module_args, f"--http_port={port}"]

    def candidates(self, manifest: list[dict[str, Any]]) -> list[Candidate]:
        wiki = next((entry for entry in manifest if entry["dbname"] == self.dbname), None)
        if wiki is None:
            raise LookupError(f"the farm has no wiki {self.dbname}")
        return revision_candidates(wiki) if self.kind == "revscoring" else outlink_candidates(wiki)


def revision_candidates(wiki: dict[str, Any]) -> list[Candidate]:
    """Every seeded revision of the wiki but the hidden one; the large page's big revision is heavy."""
    special = wiki.get("special", {})
    hidden, large = special.get("hidden_rev_id"), special.get("large_rev_id")
    rev_ids = sorted({rev for page in wiki["pages"] for rev in page["rev_ids"]} - {hidden})
    return [Candidate({"rev_id": rev}, HEAVY if rev == large else ORDINARY) for rev in rev_ids]


def outlink_candidates(wiki: dict[str, Any]) -> list[Candidate]:
    """Every seeded page by title, as the transformer is asked (it looks the outlinks up)."""
    lang = wiki.get("lang", "en")
    return [Candidate({"lang": lang, "page_title": page["title"]}) for page in wiki["pages"]]


def default_targets(repo: Path, models_dir: Path) -> dict[str, Target]:
    """The targets of the issue: one editquality and one articlequality server, and the outlink predictor."""

    def revscoring(isvc: str, image: str) -> Target:
        return Target(
            isvc,
            "revscoring",
            image,
            "enwiki",
            "en.wikipedia.org",
            models_dir / isvc / "model.bin",
            ("revscoring_server",),
        )

    outlink = Target(
        "outlink-topic-model",
        "outlink",
        "outlink",
        "enwiki",
        "en.wikipedia.org",
        models_dir / "outlink-topic-model" / "model.bin",
        ("outlink_server.predictor",),
    )
    return {
        "editquality": revscoring("enwiki-damaging", "editquality"),
        "articlequality": revscoring("enwiki-articlequality", "articlequality"),
        "outlink": outlink,
    }


def load_manifest(repo: Path) -> list[dict[str, Any]]:
    """The farm's manifest entries (the file maps dbname -> entry)."""
    data = json.loads((repo / ".state" / "farm" / "manifest.json").read_text(encoding="utf-8"))
    return [dict(entry, dbname=entry.get("dbname", dbname)) for dbname, entry in data.items()]
