"""The seed table for dev tooling; the one reader is `deploy.seed_table` (images and manifests use it too)."""

from deploy.seed_table import (
    DEFAULT_SEED_TABLE,
    OUTLINK_ISVC,
    REPO_ROOT,
    IsvcRow,
    load_rows,
    revscoring_rows,
    seed_table_path,
    wikis,
)

__all__ = [
    "DEFAULT_SEED_TABLE",
    "OUTLINK_ISVC",
    "REPO_ROOT",
    "IsvcRow",
    "load_rows",
    "revscoring_rows",
    "seed_table_path",
    "wikis",
]
