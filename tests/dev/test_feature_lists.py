"""Every seed-table row's production feature list imports in the dev venv (dictionaries, NLTK data,
word vectors, extras such as langdetect present); the venv layout does not shadow libraries."""

from __future__ import annotations

import csv
import importlib
import subprocess
from pathlib import Path

import pytest

from dev import seed_table, word_vectors
from dev.demo_models.feature_lists import feature_list_for
from revscoring import Feature

REPO_ROOT = Path(__file__).resolve().parents[2]
ROWS = seed_table.revscoring_rows()


@pytest.fixture(autouse=True)
def _repo_root_cwd(monkeypatch):
    # revscoring searches word vectors in "word2vec/" relative to the working directory.
    monkeypatch.chdir(REPO_ROOT)


@pytest.mark.parametrize("row", ROWS, ids=[row.isvc for row in ROWS])
def test_feature_list_imports(row):
    module_name, attribute = feature_list_for(row)
    features = getattr(importlib.import_module(module_name), attribute)
    assert len(features) > 0
    assert all(isinstance(feature, Feature) for feature in features), module_name


def test_unknown_model_type_is_refused():
    row = seed_table.IsvcRow("x-nope", "nope", "enwiki", "en.wikipedia.org", "en", "ns", ("img",))
    with pytest.raises(KeyError):
        feature_list_for(row)


def test_revscoring_is_the_library_not_the_repo_folder():
    import revscoring

    assert "site-packages" in Path(revscoring.__file__).parts
    assert not (REPO_ROOT / "revscoring" / "__init__.py").exists()


def _dictionary_rows() -> dict[str, list[str]]:
    with open(REPO_ROOT / "requirements" / "dictionaries.tsv", encoding="utf-8") as handle:
        lines = [line for line in handle if not line.startswith("#")]
    return {fields[0]: fields[1].split() for fields in csv.reader(lines, delimiter="\t")}


def test_every_content_language_has_a_dictionary_entry():
    languages = {row.content_language for row in ROWS}
    assert languages <= set(_dictionary_rows())


def test_dictionary_packages_are_installed():
    packages = sorted({pkg for pkgs in _dictionary_rows().values() for pkg in pkgs if pkg != "-"})
    result = subprocess.run(["dpkg-query", "-W", "-f=${Package} ${db:Status-Status}\n", *packages],
                            capture_output=True, text=True, check=False)
    installed = {line.split()[0] for line in result.stdout.splitlines() if line.endswith(" installed")}
    assert set(packages) - installed == set()


def test_vector_files_are_the_ones_drafttopic_loads():
    names = word_vectors.kv_file_names()
    assert "enwiki-20200501-learned_vectors.50_cell.10k.kv" in names  # parsed from drafttopic's source
    assert all((REPO_ROOT / "word2vec" / name).is_file() for name in names)


def test_vector_generation_is_deterministic(tmp_path):
    first = word_vectors.write_all(tmp_path / "a")
    second = word_vectors.write_all(tmp_path / "b")
    assert [path.read_bytes() for path in first] == [path.read_bytes() for path in second]


def test_topic_words_are_closer_within_a_cluster():
    from gensim.models import KeyedVectors

    kv = KeyedVectors.load(str(REPO_ROOT / "word2vec" / "enwiki-20200501-learned_vectors.50_cell.10k.kv"))
    assert kv.vector_size == 50
    assert kv.similarity("physics", "quantum") > kv.similarity("physics", "football")

