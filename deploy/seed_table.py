"""Reads the table of inference services to serve, build and deploy (`../shared/seed-isvcs.tsv`).

This is the one reader of the table: the deploy renderer, the image definitions and the dev tooling
(`dev.seed_table` re-exports it) all go through `load_rows()`.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_SEED_TABLE = REPO_ROOT.parent / "shared" / "seed-isvcs.tsv"
OUTLINK_ISVC = "outlink-topic-model"


@dataclass(frozen=True)
class IsvcRow:
    """One inference service of the seed table."""

    isvc: str
    model_type: str
    dbname: str  # "-" for the outlink model, which serves every Wikipedia
    domain: str
    content_language: str
    namespace: str
    images: tuple[str, ...]  # the outlink row has two images: predictor and transformer

    @property
    def is_revscoring(self) -> bool:
        return self.isvc != OUTLINK_ISVC


def seed_table_path() -> Path:
    """The seed table; `SEED_ISVCS` overrides the default location beside the checkout."""
    return Path(os.environ.get("SEED_ISVCS", DEFAULT_SEED_TABLE))


def load_rows(path: Path | None = None) -> list[IsvcRow]:
    """Every row of the seed table, in file order."""
    with open(path or seed_table_path(), encoding="utf-8", newline="") as handle:
        lines = [line for line in handle if line.strip() and not line.startswith("#")]
    rows = []
    for fields in csv.reader(lines, delimiter="\t"):
        isvc, model_type, dbname, domain, language, namespace, images = fields
        rows.append(IsvcRow(isvc, model_type, dbname, domain, language, namespace, tuple(images.split("+"))))
    return rows


def revscoring_rows(path: Path | None = None) -> list[IsvcRow]:
    return [row for row in load_rows(path) if row.is_revscoring]


def wikis(path: Path | None = None) -> dict[str, IsvcRow]:
    """One row per distinct wiki (dbname) of the revscoring rows: its domain and content language."""
    return {row.dbname: row for row in revscoring_rows(path)}
