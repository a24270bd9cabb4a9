"""The helpers behind blubber.yaml and the wheelhouse: include resolution, dictionaries, hash stamps."""

import pytest

from deploy import images, wheelhouse
from deploy.seed_table import IsvcRow


def write_requirements(root):
    (root / "requirements").mkdir()
    (root / "requirements" / "constraints.txt").write_text("a==1\nb==2\n")
    (root / "requirements" / "base.txt").write_text("-c constraints.txt\na\n")
    (root / "requirements" / "image.txt").write_text("# top\n-c constraints.txt\n-r base.txt\nb  # pin\n")


def test_requirement_closure_follows_includes_relative_to_the_including_file(tmp_path):
    write_requirements(tmp_path)
    assert images.requirement_closure("requirements/image.txt", tmp_path) == [
        "requirements/image.txt", "requirements/constraints.txt", "requirements/base.txt"]


def test_wheelhouse_stamp_changes_when_an_included_file_changes(tmp_path):
    write_requirements(tmp_path)
    before = wheelhouse.requirements_hash(["requirements/image.txt"], tmp_path)
    assert wheelhouse.requirements_hash(["requirements/image.txt"], tmp_path) == before
    (tmp_path / "requirements" / "constraints.txt").write_text("a==1\nb==3\n")
    assert wheelhouse.requirements_hash(["requirements/image.txt"], tmp_path) != before


def row(isvc, model_type, language, image):
    dbname = isvc.split("-")[0]
    return IsvcRow(isvc, model_type, dbname, f"{language}.wikipedia.org", language, "ns", (image,))


def test_dictionaries_follow_the_languages_an_image_serves():
    rows = [row("plwiki-damaging", "damaging", "pl", "editquality"),
            row("jawiki-damaging", "damaging", "ja", "editquality"),
            row("enwiki-articlequality", "articlequality", "en", "articlequality")]
    table = {"pl": ("aspell-pl",), "ja": (), "en": ("hunspell-en-us",)}
    assert images.dictionary_packages(images.image("editquality"), rows, table) == ["aspell-pl"]
    assert images.dictionary_packages(images.image("articlequality"), rows, table) == ["hunspell-en-us"]
    assert images.dictionary_packages(images.image("outlink"), rows, table) == []


def test_a_language_missing_from_dictionaries_tsv_is_an_error():
    rows = [row("xxwiki-damaging", "damaging", "xx", "editquality")]
    with pytest.raises(ValueError, match="xx"):
        images.dictionary_packages(images.image("editquality"), rows, {"en": ()})


def test_every_content_language_of_the_seed_table_is_in_dictionaries_tsv():
    table = images.load_dictionaries()
    for spec in images.IMAGES:
        images.dictionary_packages(spec, dictionaries=table)  # raises on a missing language
    assert table["pl"] == ("aspell-pl",) and table["ja"] == ()
