"""`make fresh-check`: the README's set-up from a fresh clone, where nothing on this machine can help.

The set-up once passed here and failed on a fresh machine because pip's cache and a machine-wide pip
index already held wheels the project never built. This check clones HEAD into a temporary folder (with
`../shared` beside it, as the README asks), and runs there, in an environment holding only PATH, a new
empty HOME and cache folder, `PIP_NO_CACHE_DIR=1` and NLTK_DATA:

1. `make setup`: Debian packages (already installed ones are skipped), the venv from PyPI with no cache,
   the NLTK data, the word vectors, the image wheelhouse;
2. `make manifests` without NLTK_DATA: nothing that does not read stopwords may need them;
3. an import of both server packages and of revscoring from the new venv.

It fails loudly (non-zero exit, the failing command's output) and prints how long each step took.
Uncommitted changes are not in the clone: commit first.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from dev.seed_table import REPO_ROOT

SHARED = REPO_ROOT.parent / "shared"
SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
IMPORT_CHECK = "import kserve, revscoring, revscoring_server.model, outlink_server.predictor"


def clean_env(home: Path, nltk_data: Path | None) -> dict[str, str]:
    env = {
        "PATH": SYSTEM_PATH,
        "HOME": str(home),
        "XDG_CACHE_HOME": str(home / ".cache"),
        "LANG": "C.UTF-8",
        "PIP_NO_CACHE_DIR": "1",
    }
    if nltk_data is not None:
        env["NLTK_DATA"] = str(nltk_data)
    return env


def step(name: str, argv: list[str], cwd: Path, env: dict[str, str], timings: dict[str, float]) -> str:
    print(f"fresh-check: {name}: {' '.join(argv)}", flush=True)
    started = time.monotonic()
    result = subprocess.run(argv, cwd=cwd, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    timings[name] = time.monotonic() - started
    if result.returncode != 0:
        print(result.stdout[-6000:], file=sys.stderr)
        raise SystemExit(f"fresh-check FAILED: {name} exited {result.returncode} after {timings[name]:.0f} s")
    return result.stdout


def run(workdir: Path) -> dict[str, float]:
    clone, home = workdir / "main", workdir / "home"
    home.mkdir()
    (workdir / "shared").symlink_to(SHARED)  # the README's layout: ../shared beside the checkout
    subprocess.run(["git", "clone", "--quiet", "--no-local", str(REPO_ROOT), str(clone)], check=True)
    timings: dict[str, float] = {}
    with_nltk = clean_env(home, workdir / "shared" / "nltk_data")
    step("make setup", ["make", "setup"], clone, with_nltk, timings)
    without_nltk = clean_env(home, None)
    manifests = step("make manifests (no NLTK_DATA)", ["make", "manifests"], clone, without_nltk, timings)
    count = manifests.count("kind: InferenceService")
    if count == 0:
        raise SystemExit("fresh-check FAILED: make manifests printed no InferenceService")
    step("imports", [str(clone / ".venv" / "bin" / "python"), "-c", IMPORT_CHECK], clone, with_nltk, timings)
    leftovers = list((home / ".cache").rglob("*.whl")) if (home / ".cache").exists() else []
    if leftovers:
        raise SystemExit(f"fresh-check FAILED: pip cached wheels despite PIP_NO_CACHE_DIR: {leftovers[:3]}")
    return timings


def main() -> int:
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="fresh-clone-") as workdir:
        timings = run(Path(workdir))
    for name, seconds in timings.items():
        print(f"fresh-check: {name}: {seconds:.0f} s")
    print(f"fresh-check: passed in {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    os.umask(0o022)
    sys.exit(main())
