"""Finding the model binary the storage initializer put in /mnt/models, whatever its name."""

from __future__ import annotations

import pytest

from wikiserve.model_files import ModelFileError, resolve_model_file


@pytest.mark.parametrize("name", ["model.bin", "model.bz2", "enwiki.damaging.gradient_boosting.model",
                                  "enwiki.damaging.gradient_boosting.model.bz2"])
def test_the_one_file_in_the_folder_is_the_model(tmp_path, name):
    (tmp_path / name).write_bytes(b"x")
    assert resolve_model_file(None, model_dir=tmp_path) == tmp_path / name


def test_hidden_files_and_folders_are_not_candidates(tmp_path):
    (tmp_path / ".storage-initializer-done").write_text("")
    (tmp_path / "lost+found").mkdir()
    (tmp_path / "model.bz2").write_bytes(b"x")
    assert resolve_model_file(None, model_dir=tmp_path) == tmp_path / "model.bz2"


def test_no_model_file_lists_what_is_there(tmp_path):
    (tmp_path / "lost+found").mkdir()
    with pytest.raises(ModelFileError, match=r"No model file in .*found lost\+found"):
        resolve_model_file(None, model_dir=tmp_path)


def test_several_model_files_are_listed(tmp_path):
    for name in ("a.model", "b.model.bz2"):
        (tmp_path / name).write_bytes(b"x")
    with pytest.raises(ModelFileError, match=r"Several model files .*a\.model, b\.model\.bz2.*MODEL_PATH"):
        resolve_model_file(None, model_dir=tmp_path)


def test_a_missing_folder_is_named(tmp_path):
    with pytest.raises(ModelFileError, match="does not exist"):
        resolve_model_file(None, model_dir=tmp_path / "nothing")


def test_model_path_names_a_file_or_a_folder(tmp_path):
    (tmp_path / "x.model").write_bytes(b"x")
    assert resolve_model_file(str(tmp_path / "x.model")) == tmp_path / "x.model"
    assert resolve_model_file(str(tmp_path)) == tmp_path / "x.model"
    # a path that does not exist is the loader's to report, with its name
    assert str(resolve_model_file("/nonexistent/model.bin")) == "/nonexistent/model.bin"
