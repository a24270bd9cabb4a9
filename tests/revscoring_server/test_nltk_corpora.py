"""Corpora owned by the account that owns the server's code (as Blubber's build leaves them for the serving
account) are read from a private copy; trusted ones in place; those of any other account, or writable by
others, stay refused. Each case runs in a fresh interpreter: NLTK caches what it found."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

BUILD_ACCOUNT_UID = 65533  # Blubber's `lives.as` (somebody): the owner of what its builders download

# The only NLTK folder is the one under test (no fallback to the venv's own corpora).
PROBE = """
import json, os, sys
import nltk.data
nltk.data.path[:] = [os.environ["NLTK_DATA"]]
replaced = {}
if sys.argv[1] == "with":
    from revscoring_server.nltk_corpora import use_readable_corpora
    replaced = use_readable_corpora(code_owner=int(sys.argv[2]) if len(sys.argv) > 2 else None)
from nltk.corpus import stopwords, wordnet
try:
    found = {"stopwords": stopwords.words("english"), "synsets": [s.name() for s in wordnet.synsets("dog")]}
except LookupError as error:
    found = {"error": type(error).__name__}
copy = nltk.data.path[0]
info = os.stat(copy)
print(json.dumps({**found, "replaced": replaced, "path": copy, "env": os.environ["NLTK_DATA"],
                  "mode": oct(info.st_mode & 0o777), "uid": info.st_uid}))
"""


def probe(data: Path, mode: str, code_owner: int | None = None) -> dict:
    """`code_owner`: the account use_readable_corpora takes for the code's owner (default: the real one)."""
    env = {**os.environ, "NLTK_DATA": str(data)}
    owner = [] if code_owner is None else [str(code_owner)]
    result = subprocess.run([sys.executable, "-c", PROBE, mode, *owner], env=env, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.splitlines()[-1])


@pytest.fixture(scope="module")
def corpora(tmp_path_factory) -> Path:
    """The venv's stopwords and WordNet, as a folder of root's (this test's account: CI runs as root)."""
    import nltk.data

    source = next(Path(p) for p in nltk.data.path if (Path(p) / "corpora" / "wordnet").is_dir())
    folder = tmp_path_factory.mktemp("nltk") / "nltk_data"
    for corpus in ("stopwords", "wordnet"):
        shutil.copytree(source / "corpora" / corpus, folder / "corpora" / corpus)
    return folder


@pytest.fixture(scope="module")
def built_by_another_account(corpora, tmp_path_factory) -> Path:
    if os.geteuid() != 0:
        pytest.skip("absent: root, which giving files to another account needs (CI runs as root)")
    folder = tmp_path_factory.mktemp("foreign") / "nltk_data"
    shutil.copytree(corpora, folder)
    for path in [folder, *folder.rglob("*")]:
        os.chown(path, BUILD_ACCOUNT_UID, BUILD_ACCOUNT_UID)
    return folder


def test_nltk_refuses_corpora_of_another_account(built_by_another_account):
    assert probe(built_by_another_account, "without").get("error") == "LookupError"


def test_a_private_copy_is_read_when_they_belong_to_the_codes_owner(built_by_another_account, corpora):
    found = probe(built_by_another_account, "with", code_owner=BUILD_ACCOUNT_UID)
    expected = probe(corpora, "without")
    assert "error" not in expected
    assert found["stopwords"] == expected["stopwords"] and found["synsets"] == expected["synsets"]
    assert found["replaced"] == {str(built_by_another_account): found["path"]}
    assert found["env"] == found["path"] and found["path"] != str(built_by_another_account)
    assert found["mode"] == "0o700" and found["uid"] == os.geteuid()
    assert not Path(found["path"]).exists()  # removed when the process ended


def test_trusted_corpora_are_read_in_place(corpora):
    found = probe(corpora, "with")
    assert found["replaced"] == {} and found["path"] == str(corpora) and found["env"] == str(corpora)
    assert found["stopwords"]


def test_corpora_of_an_account_that_does_not_own_the_code_stay_refused(built_by_another_account):
    # this checkout's code belongs to root (CI's account), not to the corpora's owner
    assert Path(__file__).stat().st_uid != BUILD_ACCOUNT_UID
    found = probe(built_by_another_account, "with")
    assert found.get("error") == "LookupError" and found["replaced"] == {}


def test_corpora_writable_by_others_stay_refused(built_by_another_account, tmp_path):
    folder = tmp_path / "nltk_data"
    shutil.copytree(built_by_another_account, folder, copy_function=shutil.copy2)
    for path in [folder, *folder.rglob("*")]:
        os.chown(path, BUILD_ACCOUNT_UID, BUILD_ACCOUNT_UID)
    planted = next((folder / "corpora" / "stopwords").iterdir())
    planted.chmod(0o666)  # any account could have rewritten it
    found = probe(folder, "with", code_owner=BUILD_ACCOUNT_UID)
    assert found.get("error") == "LookupError" and found["replaced"] == {}
