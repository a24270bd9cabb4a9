"""The fastText model wrapper: damaged binaries are refused by name before fastText reads them."""

from __future__ import annotations

import fasttext
import pytest

from outlink_server.fasttext_model import ModelLoadError, TopicModel, probability


def test_topics_and_scores_come_from_the_binary(outlink_model):
    model = TopicModel(outlink_model)
    raw = fasttext.load_model(str(outlink_model))
    assert sorted(model.topics) == sorted(label.removeprefix("__label__") for label in raw.get_labels())
    scores = dict(model.scores("Q1 Q2 Q101"))
    assert set(scores) == set(model.topics)
    labels, values = raw.predict("Q1 Q2 Q101", k=-1)
    assert scores[labels[0].removeprefix("__label__")] == pytest.approx(values[0] - 1e-5)


def test_probability_undoes_fasttexts_log_epsilon():
    assert probability(1.00001) == 1.0
    assert probability(0.50001) == pytest.approx(0.5)
    assert probability(0.000004) == 0.0


@pytest.mark.parametrize(("cut", "message"), [
    (0, "too short"),
    (40, "too short"),
    (200, "truncated"),
    (-1, "truncated or corrupt"),
    (-4000, "truncated or corrupt"),
])
def test_truncated_binaries_are_refused(outlink_model, tmp_path, cut, message):
    data = outlink_model.read_bytes()
    damaged = tmp_path / "model.bin"
    damaged.write_bytes(data[:cut] if cut >= 0 else data[:cut])
    with pytest.raises(ModelLoadError, match=message):
        TopicModel(damaged)


def test_other_files_are_refused(tmp_path):
    with pytest.raises(ModelLoadError, match="No such file"):
        TopicModel(tmp_path / "absent.bin")
    text = tmp_path / "model.txt"
    text.write_text("__label__STEM.Physics Q1 Q2\n" * 20)
    with pytest.raises(ModelLoadError, match="not a fastText binary"):
        TopicModel(text)
    with pytest.raises(ModelLoadError, match="Cannot read"):
        TopicModel(tmp_path)  # a directory
