"""Request validation, the language allowlist, article URLs and settings (the farm only for its wiki list)."""

from __future__ import annotations

import subprocess
import sys
from urllib.parse import quote

import pytest

from outlink_server.languages import DEFAULT_SOURCE, LANGUAGES_FILE, parse_languages, render, wikipedias
from outlink_server.outlinks import MAX_TITLES_PARAM_BYTES, TITLES_PER_CALL, title_batches
from outlink_server.request import parse_request
from outlink_server.response import article_url, build_response
from outlink_server.settings import OutlinkSettings
from wikiserve.errors import InvalidRequest

WIKIS = wikipedias()


def parse(**body):
    return parse_request(body, WIKIS)


def sitematrix() -> list[tuple[str, str]]:
    """(dbname, subdomain) rows of the sitematrix's list, read here without the package's parser."""
    lines = DEFAULT_SOURCE.read_text(encoding="utf-8").splitlines()
    return [tuple(line.split("\t")) for line in lines if line.strip() and not line.startswith("#")]


def test_the_shipped_list_is_exactly_what_the_generator_writes():
    shipped = LANGUAGES_FILE.read_text(encoding="utf-8")
    assert shipped == render(DEFAULT_SOURCE.read_text(encoding="utf-8")), (
        "regenerate: python -m outlink_server.languages --write")


def test_every_wikipedia_of_the_sitematrix_is_accepted_by_lang_and_by_wiki_id():
    rows = sitematrix()
    assert len(rows) == 364
    assert WIKIS.dbname_of == {subdomain: dbname for dbname, subdomain in rows}
    for dbname, subdomain in rows:
        assert parse(lang=subdomain, page_id=1).domain == f"{subdomain}.wikipedia.org"
        assert parse(wiki_id=dbname, page_id=1).domain == f"{subdomain}.wikipedia.org"


@pytest.mark.parametrize("lang", ["bdr", "bol", "isv", "kai", "kaj", "mag", "ppl", "rki", "tok"])
def test_the_wikipedias_the_hand_written_list_missed_are_accepted(lang):
    assert parse(lang=lang, page_title="Berlin").domain == f"{lang}.wikipedia.org"
    assert parse(wiki_id=f"{lang}wiki", page_title="Berlin").lang == lang


def test_the_generator_command_prints_the_shipped_file(tmp_path):
    source = tmp_path / "wikipedias.tsv"
    source.write_text("# comment\nenwiki\ten\nbe_x_oldwiki\tbe-tarask\n")
    result = subprocess.run([sys.executable, "-m", "outlink_server.languages", str(source)],
                            capture_output=True, text=True, timeout=60, check=True)
    lines = [line for line in result.stdout.splitlines() if not line.startswith("#")]
    assert lines == ["be_x_oldwiki\tbe-tarask", "enwiki\ten"]


@pytest.mark.parametrize("text", ["enwiki\ten\nenwiki\tfr\n", "enwiki\ten\nfrwiki\ten\n",
                                  "enwiki en\n", "enwiki\ten.evil.example\n", "en\ten\n",
                                  "enwiki\tEN\n", "enwiki\ten\textra\n", "# nothing\n"])
def test_malformed_or_duplicate_lists_are_refused(text):
    with pytest.raises(ValueError):
        parse_languages(text)


def test_every_wikipedia_of_the_farm_is_allowed(farm):
    hosts = [wiki["host"] for wiki in farm.manifest.values() if wiki["host"].endswith(".wikipedia.org")]
    assert hosts
    for host in hosts:
        lang = host.removesuffix(".wikipedia.org")
        assert parse(lang=lang, page_id=1).domain == host


def test_language_from_lang_or_wiki_id():
    assert parse(lang="de", page_title="Berlin").domain == "de.wikipedia.org"
    assert parse(wiki_id="be_x_oldwiki", page_title="Мінск").domain == "be-tarask.wikipedia.org"
    assert parse(wiki_id="enwiki", lang="en", page_id=3).lang == "en"


@pytest.mark.parametrize("lang", ["en.evil.example", "../", "EN", "en ", " en", "en/", "evil.com#", "",
                                  "wiki", "enwiki", "en\nHost: x", "xn--en", "en-US"])
def test_unlisted_languages_are_refused(lang):
    with pytest.raises(InvalidRequest):
        parse(lang=lang, page_title="Berlin")


@pytest.mark.parametrize("wiki_id", ["en", "enwiki.evil", "enwiktionary", "wikidatawiki", "ENWIKI",
                                     "../wiki"])
def test_unlisted_wiki_ids_are_refused(wiki_id):
    with pytest.raises(InvalidRequest, match="'wiki_id'"):
        parse(wiki_id=wiki_id, page_title="Berlin")


@pytest.mark.parametrize("title", ["A|B", "A#b", "A<b", "A>b", "A[b", "A]b", "A{b", "A}b", "A\x00b", "A\x1fb",
                                   "A\x7fb", "A\x85b", "A\ufffdb", "A%7Cb", "~~~~", ".", "..", "./A", "../A",
                                   "A/../B", "A/.", "_", "x" * 256, "é" * 128])
def test_titles_mediawiki_refuses_are_refused(title):
    with pytest.raises(InvalidRequest, match="'page_title'"):
        parse(lang="en", page_title=title)


@pytest.mark.parametrize("title", ["Berlin", "AC/DC", "C++", "Rock & roll", "Don't Stop", "100% (song)",
                                   "Zürich", "東京", "جزیره", "Ἀθῆναι", "With_underscores", "..A", "A.."])
def test_valid_titles_including_non_latin_ones_pass(title):
    assert parse(lang="en", page_title=title).page_title == title


def test_debug_means_threshold_zero_and_defaults():
    assert parse(lang="en", page_id=5).threshold == 0.5
    assert parse(lang="en", page_id=5, threshold=0.8).threshold == 0.8
    assert parse(lang="en", page_id=5, threshold=1, debug=True).threshold == 0.0


def test_features_are_normalised_and_checked():
    assert parse(lang="en", page_id=5, features_str=" Q1\tQ22  Q333\n").features == "Q1 Q22 Q333"
    for bad in ["Q1 P31", "Q0", "q1", "Q1|Q2", "Q1 Q2 L5", "Q-1", "Q" + "9" * 20]:
        with pytest.raises(InvalidRequest, match="'features_str'"):
            parse(lang="en", page_id=5, features_str=bad)
    with pytest.raises(InvalidRequest, match="at most 1000"):
        parse(lang="en", page_id=5, features_str=" ".join(["Q1"] * 1001))
    with pytest.raises(InvalidRequest, match="'features_str' must be a string"):
        parse(lang="en", page_id=5, features_str=["Q1"])


def test_forwarded_body_is_a_valid_request_with_the_same_meaning():
    original = parse(wiki_id="dewiki", page_title="Berlin", threshold=0.7)
    forwarded = parse_request(original.forwarded("Q64 Q183"), WIKIS)
    assert (forwarded.domain, forwarded.page_title, forwarded.threshold, forwarded.features) == (
        "de.wikipedia.org", "Berlin", 0.7, "Q64 Q183")
    debug = parse_request(parse(lang="en", page_id=9, debug=True).forwarded("Q1"), WIKIS)
    assert (debug.page_id, debug.debug, debug.threshold) == (9, True, 0.0)


@pytest.mark.parametrize(("title", "path"), [
    ("Frida Kahlo", "Frida_Kahlo"),
    ("AC/DC", "AC/DC"),
    ("Rock & roll", "Rock_%26_roll"),
    ("C++", "C%2B%2B"),
    ("Who? (song)", "Who%3F_(song)"),
    ("100% pure", "100%25_pure"),
    ("Don't", "Don%27t"),
    ("Zürich", "Z%C3%BCrich"),
    ("Talk:A=B", "Talk:A%3DB"),
])
def test_article_url_encodes_titles_like_mediawiki(title, path):
    assert article_url("en.wikipedia.org", title, None) == f"https://en.wikipedia.org/wiki/{path}"


def test_article_url_for_page_ids():
    assert article_url("fr.wikipedia.org", None, 42) == "https://fr.wikipedia.org/wiki/?curid=42"


def test_response_keeps_scores_at_or_above_threshold_sorted():
    request = parse(lang="en", page_title="X", threshold=0.5)
    response = build_response(request, [("b", 0.5), ("a", 0.2), ("c", 0.9), ("d", 0.5)])
    assert response == {"prediction": {"article": "https://en.wikipedia.org/wiki/X", "results": [
        {"topic": "c", "score": 0.9}, {"topic": "b", "score": 0.5}, {"topic": "d", "score": 0.5}]}}


def test_title_batches_respect_count_and_length_limits():
    short = [f"Page {n}" for n in range(123)]
    batches = list(title_batches(short))
    assert [len(batch) for batch in batches] == [TITLES_PER_CALL, TITLES_PER_CALL, 23]
    long = ["Ж" * 200 + str(n) for n in range(30)]  # 200 Cyrillic letters: 1200 bytes once %-encoded
    batches = list(title_batches(long))
    assert sum(batches, []) == long and len(batches) > 1
    assert all(len(quote("|".join(batch), safe="")) <= MAX_TITLES_PARAM_BYTES for batch in batches)


def test_settings_from_environment():
    settings = OutlinkSettings.from_env({"MODEL_PATH": "/tmp/m.bin", "OUTLINK_LINKS_PER_CALL": "7"})
    assert (str(settings.model_path), settings.links_per_call) == ("/tmp/m.bin", "7")
    assert OutlinkSettings.from_env({}).links_per_call == "max"
    for bad in ("0", "501", "lots", "-3"):
        with pytest.raises(ValueError, match="OUTLINK_LINKS_PER_CALL"):
            OutlinkSettings.from_env({"OUTLINK_LINKS_PER_CALL": bad})
