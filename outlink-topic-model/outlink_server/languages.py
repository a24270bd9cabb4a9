"""The allowlist of Wikipedia editions: the only languages (and wiki ids) a request may name.

Production containers cannot read the sitematrix list (`../shared/data/wikipedias.tsv`), so the package
ships `wikipedias.tsv`, generated from it:

    python -m outlink_server.languages [SOURCE_TSV]            # print what the shipped file should hold
    python -m outlink_server.languages [SOURCE_TSV] --write    # rewrite the shipped file

A test fails when the shipped file and the generator's output differ. Host names are only ever built from
this list, so every line is checked: a dbname of lower-case letters, digits and '_' ending in "wiki", and a
subdomain of lower-case letters, digits and '-'.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path

LANGUAGES_FILE = Path(__file__).with_name("wikipedias.tsv")
# outlink-topic-model/outlink_server/ -> the repository -> its sibling `shared/`
DEFAULT_SOURCE = Path(__file__).resolve().parents[3] / "shared" / "data" / "wikipedias.tsv"
_HEADER = (
    "# GENERATED from the sitematrix's list of Wikipedias (../shared/data/wikipedias.tsv) by\n"
    "# `python -m outlink_server.languages --write`; edit the source, not this file.\n"
    "# dbname (wiki_id)\tsubdomain (lang): the wiki is <subdomain>.wikipedia.org\n"
)
_DBNAME = re.compile(r"[a-z][a-z0-9_]*wiki")
_SUBDOMAIN = re.compile(r"[a-z][a-z0-9]*(?:-[a-z0-9]+)*")


@dataclass(frozen=True)
class Wikipedias:
    """Language code (subdomain) <-> database name (wiki id) of every supported Wikipedia."""

    dbname_of: dict[str, str]
    lang_of: dict[str, str]

    def domain(self, lang: str) -> str:
        """The public domain of an allowlisted language; never called with anything else."""
        if lang not in self.dbname_of:
            raise KeyError(lang)
        return f"{lang}.wikipedia.org"


def parse_languages(text: str, name: str = LANGUAGES_FILE.name) -> Wikipedias:
    """Reads `dbname<TAB>subdomain` lines ('#' starts a comment); refuses malformed and duplicate lines."""
    dbname_of: dict[str, str] = {}
    lang_of: dict[str, str] = {}
    for number, dbname, lang in _rows(text.splitlines(), name):
        if lang in dbname_of or dbname in lang_of:
            raise ValueError(f"{name}:{number}: duplicate Wikipedia {dbname} / {lang}")
        dbname_of[lang] = dbname
        lang_of[dbname] = lang
    if not dbname_of:
        raise ValueError(f"{name} lists no Wikipedia")
    return Wikipedias(dbname_of, lang_of)


def _rows(lines: Iterable[str], name: str) -> Iterable[tuple[int, str, str]]:
    for number, raw in enumerate(lines, start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        fields = line.split("\t")
        if len(fields) != 2 or not _DBNAME.fullmatch(fields[0]) or not _SUBDOMAIN.fullmatch(fields[1]):
            raise ValueError(f"{name}:{number}: expected 'dbname<TAB>subdomain', got {raw!r}")
        yield number, fields[0], fields[1]


def render(source_text: str) -> str:
    """The shipped file's content for the sitematrix list: checked, sorted by dbname, with a header."""
    wikis = parse_languages(source_text, "the source list")
    return _HEADER + "".join(f"{dbname}\t{wikis.lang_of[dbname]}\n" for dbname in sorted(wikis.lang_of))


@cache
def wikipedias() -> Wikipedias:
    """Read once, on first use (each server reads it while it starts, before serving)."""
    return parse_languages(LANGUAGES_FILE.read_text(encoding="utf-8"))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Generate the shipped list of Wikipedias.")
    parser.add_argument("source", nargs="?", type=Path, default=DEFAULT_SOURCE, help="the sitematrix list")
    parser.add_argument("--write", action="store_true", help=f"rewrite {LANGUAGES_FILE.name}")
    args = parser.parse_args(argv)
    text = render(args.source.read_text(encoding="utf-8"))
    if args.write:
        LANGUAGES_FILE.write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
