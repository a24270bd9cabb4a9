"""Fills `.state/wheelhouse/` with wheels of every pinned requirement: the development venv's and every
production image's.

    python -m deploy.wheelhouse [--force]

The local image builds (deploy/containerfile.py) cannot reach PyPI from inside a build (outbound TLS is
re-signed by a proxy the image does not trust), so they install with `--no-index --find-links` from this
folder, mounted into the build. The host is Debian bookworm with Python 3.11 like the images, so wheels
compiled here (mmh3, fasttext) work there. This command is the set-up's only download of Python packages:
`make setup` runs it right after the venv's build tools and installs the venv from here, so each wheel is
fetched or compiled once. It is skipped while the requirement files are unchanged (hash stamp), and it
imports only the standard library and deploy.images, so the new venv can run it before anything else.
"""

from __future__ import annotations

import argparse
import hashlib
import subprocess
import sys
from pathlib import Path

from deploy.images import BOOTSTRAP_REQUIREMENTS, IMAGES, requirement_closure
from deploy.seed_table import REPO_ROOT

WHEELHOUSE = REPO_ROOT / ".state" / "wheelhouse"
STAMP = ".stamp"
DEV_REQUIREMENTS = "requirements/dev.txt"
STORAGE_INITIALIZER_REQUIREMENTS = "requirements/storage-initializer.txt"  # the local pod's init container


def top_level_files() -> list[str]:
    return [BOOTSTRAP_REQUIREMENTS, DEV_REQUIREMENTS, STORAGE_INITIALIZER_REQUIREMENTS] + [
        spec.requirements for spec in IMAGES]


def requirements_hash(files: list[str], root: Path = REPO_ROOT) -> str:
    """Hash of every requirement file involved (transitively), so a changed pin refreshes the wheels."""
    digest = hashlib.sha256()
    for path in sorted({f for top in files for f in requirement_closure(top, root)}):
        digest.update(path.encode() + b"\0" + (root / path).read_bytes() + b"\0")
    return digest.hexdigest()


def build(wheelhouse: Path = WHEELHOUSE, force: bool = False) -> bool:
    """Builds/downloads the wheels; returns False when the stamp says they are current already."""
    files = top_level_files()
    expected = requirements_hash(files)
    stamp = wheelhouse / STAMP
    if not force and stamp.exists() and stamp.read_text().strip() == expected:
        return False
    wheelhouse.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "pip", "wheel", "--quiet", "--disable-pip-version-check",
               "--wheel-dir", str(wheelhouse)]
    for top in files:
        command += ["-r", top]
    subprocess.run(command, cwd=REPO_ROOT, check=True)
    stamp.write_text(expected + "\n")
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--force", action="store_true", help="rebuild even if the stamp is current")
    args = parser.parse_args(argv)
    built = build(force=args.force)
    print(f"wheelhouse {WHEELHOUSE}: {'built' if built else 'up to date'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
