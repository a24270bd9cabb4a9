"""`python -m dev.prodstack [--force]`: the production stack's venv and the binaries made with it.

Skipped while its inputs (the pins, requirements/prodstack.txt, ../shared/prodstack, the fixture maker)
are unchanged (hash stamp), so `make test` pays for it once.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from dev.seed_table import REPO_ROOT

SHARED = REPO_ROOT.parent / "shared" / "prodstack"
STATE = REPO_ROOT / ".state" / "prodstack"
VENV = STATE / "venv"
FIXTURES = STATE / "fixtures"
PYTHON = VENV / "bin" / "python"
HERE = Path(__file__).resolve().parent
REQUIREMENTS = REPO_ROOT / "requirements" / "prodstack.txt"
CONSTRAINTS = REPO_ROOT / "requirements" / "constraints.txt"
WHEELHOUSE = REPO_ROOT / ".state" / "wheelhouse"
# The versions that differ from this project's pins; every other package is pinned as in constraints.txt.
PRODUCTION_ONLY = ("scikit-learn", "pyenchant")


def production_versions(shared: Path = SHARED) -> dict[str, str]:
    """What the production stack runs, as recorded beside its binaries (`scored_with`).

    The binaries agree on everything but pyenchant: the older ones were pickled under pyenchant 2.0.0,
    which cannot run here (and is what the server translates from); the reference takes the newest.
    """
    seen: dict[str, set[str]] = {}
    for path in sorted((shared / "models").glob("*.scores.json")):
        for package, version in json.loads(path.read_text())["scored_with"].items():
            seen.setdefault(package, set()).add(version)
    disagreeing = {package: sorted(versions) for package, versions in seen.items()
                   if len(versions) > 1 and package != "pyenchant"}
    if disagreeing:
        raise RuntimeError(f"{shared}: the binaries disagree on the production stack: {disagreeing}")
    newest = {package: max(versions, key=lambda v: tuple(int(part) for part in v.split(".")))
              for package, versions in seen.items()}
    return newest


def reference_constraints(versions: dict[str, str]) -> str:
    """constraints.txt with production's versions of PRODUCTION_ONLY."""
    lines = []
    for line in CONSTRAINTS.read_text().splitlines():
        name = line.split("==")[0].strip().lower()
        if name in PRODUCTION_ONLY:
            line = f"{name}=={versions[name]}"
        lines.append(line)
    return "\n".join(lines) + "\n"


def inputs_hash(paths: list[Path]) -> str:
    digest = hashlib.sha256()
    for path in paths:
        if path.is_file():
            digest.update(str(path).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def venv_inputs() -> list[Path]:
    return [CONSTRAINTS, REQUIREMENTS, HERE / "__main__.py", *sorted(SHARED.rglob("*.json")),
            *sorted((SHARED / "wheels").glob("*.whl"))]


def fixture_inputs() -> list[Path]:
    return [*venv_inputs(), HERE / "make_fixtures.py"]


def build_venv(versions: dict[str, str]) -> None:
    shutil.rmtree(VENV, ignore_errors=True)
    subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    pip = [str(PYTHON), "-m", "pip", "install", "--quiet"]
    subprocess.run([*pip, "-r", str(REPO_ROOT / "requirements" / "bootstrap.txt")], check=True, cwd=REPO_ROOT)
    # PyPI has no scikit-learn 1.0.2 for Python 3.11: the wheel built for the reference goes in first.
    wheel = next((SHARED / "wheels").glob(f"scikit_learn-{versions['scikit-learn']}-*.whl"))
    subprocess.run([*pip, "--no-deps", str(wheel)], check=True)
    constraints = STATE / "constraints.txt"
    constraints.write_text(reference_constraints(versions))
    # The wheelhouse `make setup` filled holds every shared pin (mmh3 already compiled); PyPI the rest.
    subprocess.run([*pip, "--find-links", str(WHEELHOUSE), "-r", str(REQUIREMENTS), "-c", str(constraints)],
                   check=True)
    subprocess.run([str(PYTHON), "-m", "pip", "check"], check=True)


def make_fixtures() -> None:
    """Runs make_fixtures.py inside the reference venv (it imports only what production had)."""
    shutil.rmtree(FIXTURES, ignore_errors=True)
    subprocess.run([str(PYTHON), str(HERE / "make_fixtures.py"), str(FIXTURES)], check=True, cwd=REPO_ROOT,
                   env=reference_env())


def reference_env() -> dict[str, str]:
    """The environment to run the reference venv's python with: the dev venv's NLTK corpora (a project-owned
    copy, see requirements/ensure_nltk_data.py), no project folders on the path."""
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    env["NLTK_DATA"] = str(REPO_ROOT / ".venv" / "nltk_data")
    return env


def build(force: bool = False) -> bool:
    """Builds what is out of date (the venv, then the fixtures); False when both were current."""
    STATE.mkdir(parents=True, exist_ok=True)
    built = False
    if _stale(STATE / ".venv-stamp", venv_inputs(), force) or not PYTHON.exists():
        build_venv(production_versions())
        (STATE / ".venv-stamp").write_text(inputs_hash(venv_inputs()) + "\n")
        built = True
    if built or _stale(STATE / ".fixtures-stamp", fixture_inputs(), force):
        make_fixtures()
        (STATE / ".fixtures-stamp").write_text(inputs_hash(fixture_inputs()) + "\n")
        built = True
    return built


def _stale(stamp: Path, inputs: list[Path], force: bool) -> bool:
    return force or not stamp.exists() or stamp.read_text().strip() != inputs_hash(inputs)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--force", action="store_true", help="rebuild even if the stamp is current")
    args = parser.parse_args(argv)
    built = build(force=args.force)
    print(f"production stack {STATE}: {'built' if built else 'up to date'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
