"""What demo models are for: standing in for the production binaries (same class, feature list and labels,
so the server fetches and checks them as it would the real ones) as fixed references (deterministic), with
scores that depend on the revision (checked in tests/revscoring_server/test_revscoring_reference.py, where a
constant model would make the comparison with revscoring's own scores vacuous).

Scoring the revisions a model was trained on with labels from the same heuristic proves nothing, so it is
not done here."""

from __future__ import annotations

import functools
import subprocess
import sys
from pathlib import Path

import pytest
from testkit.servers import server_environment

from dev import seed_table
from dev.demo_models import build, outlink
from dev.demo_models.feature_lists import load_feature_list
from dev.demo_models.labels import is_multilabel, labels_for
from dev.demo_models.taxonomy import TOPIC_LABELS

REPO_ROOT = Path(__file__).resolve().parents[2]
ROWS = seed_table.revscoring_rows()


@pytest.fixture(autouse=True)
def _repo_root_cwd(monkeypatch):
    monkeypatch.chdir(REPO_ROOT)  # revscoring finds the word vectors in ./word2vec/


@functools.cache
def _load(path: Path):
    from revscoring import Model

    with open(path, "rb") as handle:
        return Model.load(handle)


@pytest.mark.parametrize("row", ROWS, ids=[row.isvc for row in ROWS])
def test_each_model_has_the_shape_of_its_production_binary(row, demo_models):
    """What the server checks a production binary for, and what it fetches for: a demo model must be a
    revscoring classifier with the production feature list (from the production model packages: editquality,
    articlequality, draftquality, drafttopic) and the production labels, marked as a demo."""
    from revscoring.scoring.models import Classifier

    model = _load(demo_models / row.isvc / "model.bin")
    assert isinstance(model, Classifier) and model.version.endswith("-demo")
    assert [str(f) for f in model.features] == [str(f) for f in load_feature_list(row)]
    assert list(model.labels) == list(labels_for(row))
    assert bool(model.multilabel) == is_multilabel(row)
    if is_multilabel(row):
        assert sorted(model.labels) == sorted(TOPIC_LABELS)


def test_a_rebuilt_model_scores_exactly_as_the_shipped_one(demo_models, farm, tmp_path):
    """`make models` is deterministic: building a row again from the same farm gives the same scores, so a
    demo model is a fixed reference, not a new one each run. (Scores on revisions the build never saw:
    the farm's large revision is left out of training.)"""
    isvc = "enwiki-damaging"
    result = subprocess.run(
        [sys.executable, "-m", "dev.demo_models", "--only", isvc, "--models-dir", str(tmp_path),
         "--farm-url", farm.url, "--processes", "1", "--force"],
        env=server_environment({}), cwd=REPO_ROOT, capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    shipped, rebuilt = _load(demo_models / isvc / "model.bin"), _load(tmp_path / isvc / "model.bin")
    wiki = farm.manifest["enwiki"]
    rev_ids = [wiki["special"][key] for key in ("large_rev_id", "good_rev_id", "anon_rev_id")]
    values = build.extract(build.farm_session(farm.url, wiki["host"]), rev_ids, list(shipped.features))
    for rev_id, row_values in zip(rev_ids, values, strict=True):
        assert rebuilt.score(row_values) == shipped.score(row_values), rev_id


def test_outlink_model_knows_every_topic_and_farm_qids(demo_models, farm):
    import fasttext

    model = fasttext.load_model(str(demo_models / seed_table.OUTLINK_ISVC / "model.bin"))
    assert sorted(label.removeprefix("__label__") for label in model.get_labels()) == sorted(TOPIC_LABELS)
    qids = outlink.farm_qids(farm.manifest)
    assert qids, "the farm manifest names no Q-ids"
    labels, probabilities = model.predict(" ".join(qids[:5]), k=3)
    assert len(labels) == 3 and all(0.0 <= p <= 1.0 for p in probabilities)
    # A bag of one topic's Q-ids is predicted as that topic.
    home = outlink.home_labels(qids[0])
    same_topic = [q for q in qids if outlink.home_labels(q) == home]
    top, _ = model.predict(" ".join(same_topic), k=len(home))
    assert {label.removeprefix("__label__") for label in top} == set(home)


def _kernel_lets_a_process_fix_its_addresses() -> bool:
    """Asked in a throw-away process, so this test process's personality is untouched."""
    probe = ("import ctypes; libc = ctypes.CDLL(None); current = libc.personality(0xFFFFFFFF); "
             "raise SystemExit(current == -1 or libc.personality(current | 0x0040000) == -1)")
    return subprocess.run([sys.executable, "-c", probe], check=False).returncode == 0


def test_outlink_training_is_reproducible(tmp_path):
    if not _kernel_lets_a_process_fix_its_addresses():
        pytest.skip("this kernel refuses personality(ADDR_NO_RANDOMIZE), without which fasttext 0.9.3's "
                    "training differs from run to run (see dev/demo_models/fasttext_train.py)")
    import fasttext

    manifest = {"enwiki": {"pages": [{"qid": f"Q{n}"} for n in (1, 2, 3, 101, 102, 111, 121)]}}
    paths = [outlink.build(manifest, tmp_path / name / "model.bin") for name in ("a", "b")]
    # With address randomisation on, 13 trainings in 30 differed here (fasttext_train.py says why).
    assert paths[0].read_bytes() == paths[1].read_bytes()
    model = fasttext.load_model(str(paths[0]))
    labels, _ = model.predict("Q101 Q111 Q121", k=-1, threshold=0.5)  # one cluster (number mod 10)
    assert labels  # the model isn't degenerate: an on-topic bag does get topics


def test_every_row_has_a_model(demo_models):
    rows = seed_table.load_rows()
    missing = [row.isvc for row in rows if not (demo_models / row.isvc / "model.bin").exists()]
    assert missing == []
