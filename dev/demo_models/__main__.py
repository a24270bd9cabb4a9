"""`python -m dev.demo_models`: writes models/<isvc>/model.bin for every seed-table row.

Rows whose model is current (same builder sources, pins and farm content: see build.fingerprint) are
skipped, so a second run takes seconds. A farm is started for the run (set up first if needed).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from dev import seed_table
from dev.demo_models import build, outlink

DEFAULT_MODELS_DIR = seed_table.REPO_ROOT / "models"


@contextlib.contextmanager
def farm(url: str | None) -> Iterator[tuple[str, dict[str, Any]]]:
    """(url, manifest) of the farm to read: the one at `url` if given, else our own on a free port.

    Our own by default: a farm someone else started (another checkout, `make wiki`) may serve other data,
    and a fixed port could be taken while our farm is being set up.
    """
    from dev.mediawiki_farm import load_manifest, running_farm

    if url:
        yield url, load_manifest()
        return
    with running_farm(port=free_port()) as handle:
        yield handle.url, handle.manifest


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def manifest_path() -> Path:
    from dev.mediawiki_farm import FarmPaths
    from dev.mediawiki_farm.build import DEFAULT_STATE_DIR

    return FarmPaths(Path(DEFAULT_STATE_DIR).resolve()).manifest


def main() -> None:
    parser = argparse.ArgumentParser(description="Build the demo models of every seed-table row.")
    parser.add_argument("--models-dir", type=Path, default=DEFAULT_MODELS_DIR)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--force", action="store_true", help="rebuild current models too")
    parser.add_argument("--only", nargs="*", help="isvc names to build (default: all)")
    parser.add_argument("--farm-url", help="use this running farm (e.g. http://127.0.0.1:8180) instead of "
                        "starting one")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(processName)s %(name)s %(message)s")
    logging.getLogger("dev").setLevel(logging.INFO)

    rows = [row for row in seed_table.load_rows() if not args.only or row.isvc in args.only]
    started = time.monotonic()
    with farm(args.farm_url) as (url, manifest):
        print_ = build.fingerprint(manifest_path())
        todo = [row for row in rows if args.force or not build.is_current(args.models_dir, row, print_)]
        print(f"demo models: {len(rows) - len(todo)} current, {len(todo)} to build", flush=True)
        if any(not row.is_revscoring for row in todo):
            target = args.models_dir / seed_table.OUTLINK_ISVC / "model.bin"
            outlink.build(manifest, target)
            (target.parent / build.FINGERPRINT_FILE).write_text(print_)
            print(f"outlink-topic-model written ({time.monotonic() - started:.0f}s)", flush=True)
        revscoring_rows = [row for row in todo if row.is_revscoring]
        if revscoring_rows:
            jobs = build.wiki_jobs(revscoring_rows, manifest, url, args.models_dir, print_)
            build.run_jobs(jobs, args.processes, len(revscoring_rows))
    summary = {"built": len(todo), "seconds": round(time.monotonic() - started, 1)}
    print("demo models: " + json.dumps(summary), flush=True)


if __name__ == "__main__":
    main()
