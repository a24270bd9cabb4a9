"""The allowlist of Wikipedia editions: the only languages (and wiki ids) a request may name."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path

LANGUAGES_FILE = Path(__file__).with_name("wikipedia_languages.txt")


@dataclass(frozen=True)
class Wikipedias:
    """Language code <-> database name (wiki id) of every supported Wikipedia."""

    dbname_of: dict[str, str]
    lang_of: dict[str, str]

    def domain(self, lang: str) -> str:
        """The public domain of an allowlisted language; never called with anything else."""
        if lang not in self.dbname_of:
            raise KeyError(lang)
        return f"{lang}.wikipedia.org"


def parse_languages(text: str) -> Wikipedias:
    dbname_of: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        fields = line.split()
        if len(fields) > 2 or fields[0] in dbname_of:
            raise ValueError(f"{LANGUAGES_FILE.name}:{number}: malformed or duplicate line {raw!r}")
        code = fields[0]
        dbname_of[code] = fields[1] if len(fields) == 2 else code.replace("-", "_") + "wiki"
    return Wikipedias(dbname_of, {dbname: code for code, dbname in dbname_of.items()})


@cache
def wikipedias() -> Wikipedias:
    """Read once, on first use (start-up validates a request shape, so this happens before serving)."""
    return parse_languages(LANGUAGES_FILE.read_text(encoding="utf-8"))
