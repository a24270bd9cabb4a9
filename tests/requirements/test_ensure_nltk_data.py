"""The NLTK set-up of a fresh machine (`requirements/ensure_nltk_data.py`, run by `make setup`/`make run`):
with NLTK_DATA unset it finds the project's offline corpus beside the checkout (../shared/nltk_data)."""

from __future__ import annotations

import os
import subprocess
import sysconfig
import venv
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
SCRIPT = REPO_ROOT / "requirements" / "ensure_nltk_data.py"
SHARED_NLTK_DATA = REPO_ROOT.parent / "shared" / "nltk_data"


def run_in_new_venv(tmp_path: Path, nltk_source: str | None) -> tuple[subprocess.CompletedProcess, Path]:
    """The script run by a new, empty venv's Python (its sys.prefix is where the corpora go), with this
    venv's packages (nltk) on its path and neither NLTK_DATA nor, unless given, NLTK_SOURCE set."""
    target = tmp_path / "venv"
    venv.create(target, with_pip=False)
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "LANG": "C.UTF-8",
           "PYTHONPATH": sysconfig.get_path("purelib")}
    if nltk_source is not None:
        env["NLTK_SOURCE"] = nltk_source  # the Makefile exports it empty when NLTK_DATA is unset
    result = subprocess.run([str(target / "bin" / "python"), str(SCRIPT)], env=env, cwd=tmp_path,
                            capture_output=True, text=True, timeout=300)
    return result, target / "nltk_data"


def test_without_nltk_data_the_corpus_beside_the_checkout_is_used(tmp_path):
    if not (SHARED_NLTK_DATA / "corpora" / "stopwords").is_dir():
        pytest.skip(f"absent: {SHARED_NLTK_DATA} (the project's shared folder beside the checkout)")
    result, data = run_in_new_venv(tmp_path, nltk_source="")
    assert result.returncode == 0, result.stdout + result.stderr
    shipped = sorted(p.name for p in (SHARED_NLTK_DATA / "corpora" / "stopwords").iterdir())
    copied = data / "corpora" / "stopwords"
    assert sorted(p.name for p in copied.iterdir()) == shipped
    english = (copied / "english").read_bytes()
    assert english == (SHARED_NLTK_DATA / "corpora" / "stopwords" / "english").read_bytes()
    assert (copied / "english").stat().st_nlink == 1  # a copy of its own: NLTK refuses multiply-linked files


def test_nltk_source_when_set_wins_over_the_shared_corpus(tmp_path):
    source = tmp_path / "elsewhere"
    (source / "corpora" / "stopwords").mkdir(parents=True)
    (source / "corpora" / "stopwords" / "english").write_text("the\nmarker-of-this-test\n")
    result, data = run_in_new_venv(tmp_path, nltk_source=str(source))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "marker-of-this-test" in (data / "corpora" / "stopwords" / "english").read_text()
