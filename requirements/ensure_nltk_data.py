"""Makes sure the NLTK corpora revscoring and the model packages read are findable.

- `stopwords` (revscoring's language modules load it at import): with NLTK_DATA set, that path is used
  as is and only checked; without it, NLTK's own downloader fetches the corpus when it is missing.
- `wordnet` and `sentiwordnet` (draftquality's enwiki sentiment features): found or downloaded the same
  way; offline, stand-ins go to `<venv>/nltk_data` (on NLTK's default search path, whatever NLTK_DATA
  says): WordNet 3.0 itself from Debian's `wordnet-base`, and a small demo SentiWordNet lexicon
  (a few dozen clearly positive/negative words; the real file is not available offline). Production
  images download the real corpora at build time.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import nltk

REQUIRED = ("stopwords",)
SENTIMENT = ("wordnet", "sentiwordnet")
DEBIAN_WORDNET = Path("/usr/share/wordnet")  # Debian package wordnet-base
LOCAL_DATA = Path(sys.prefix) / "nltk_data"

# WordNet's lexicographer files (lexnames(5WN)); wordnet-base ships the table only as a man page.
LEXNAMES = (
    "adj.all adj.pert adv.all noun.Tops noun.act noun.animal noun.artifact noun.attribute noun.body "
    "noun.cognition noun.communication noun.event noun.feeling noun.food noun.group noun.location "
    "noun.motive noun.object noun.person noun.phenomenon noun.plant noun.possession noun.process "
    "noun.quantity noun.relation noun.shape noun.state noun.substance noun.time verb.body verb.change "
    "verb.cognition verb.communication verb.competition verb.consumption verb.contact verb.creation "
    "verb.emotion verb.motion verb.perception verb.possession verb.social verb.stative verb.weather adj.ppl"
).split()
SYNTACTIC_CATEGORY = {"noun": 1, "verb": 2, "adj": 3, "adv": 4}

DEMO_POSITIVE = ("good great excellent best notable famous beautiful love success award popular important "
                 "brilliant wonderful admired").split()
DEMO_NEGATIVE = ("bad stupid terrible hate worst idiot awful ugly liar fraud evil dumb kill disgusting "
                 "pathetic loser").split()


def corpus_present(name: str) -> bool:
    try:
        nltk.data.find(f"corpora/{name}")
    except LookupError:
        return False
    return True


def fetch(name: str) -> bool:
    """Downloads `name` with NLTK's downloader, only when NLTK_DATA is unset (then it is ours to fill)."""
    if os.environ.get("NLTK_DATA"):
        return False
    return bool(nltk.download(name, quiet=True)) and corpus_present(name)


def write_wordnet_standin(target: Path) -> None:
    """NLTK's wordnet layout: Debian's WordNet 3.0 files plus the lexnames table.

    Copies, not symlinks: NLTK refuses corpus files that resolve outside the corpus folder.
    """
    target.mkdir(parents=True, exist_ok=True)
    for source in DEBIAN_WORDNET.iterdir():
        if source.is_file():
            shutil.copyfile(source, target / source.name)
    lines = [f"{i:02d}\t{name}\t{SYNTACTIC_CATEGORY[name.split('.')[0]]}" for i, name in enumerate(LEXNAMES)]
    (target / "lexnames").write_text("\n".join(lines) + "\n", encoding="utf-8")


def write_sentiwordnet_standin(target: Path) -> None:
    """A demo SentiWordNet file: the first WordNet sense of a few words, scored 0.75 positive or negative."""
    from nltk.corpus import wordnet

    target.mkdir(parents=True, exist_ok=True)
    lines = ["# Demo stand-in for SentiWordNet 3.0 (offline development only): POS ID PosScore NegScore "
             "SynsetTerms Gloss"]
    for words, scores in ((DEMO_POSITIVE, (0.75, 0.0)), (DEMO_NEGATIVE, (0.0, 0.75))):
        for word in words:
            synsets = wordnet.synsets(word)
            if synsets:
                pos = "a" if synsets[0].pos() == "s" else synsets[0].pos()
                lines.append(f"{pos}\t{synsets[0].offset():08d}\t{scores[0]}\t{scores[1]}\t{word}#1\tdemo")
    (target / "SentiWordNet_3.0.0.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")


def ensure_sentiment_corpora() -> None:
    if LOCAL_DATA.as_posix() not in nltk.data.path:
        nltk.data.path.append(LOCAL_DATA.as_posix())
    if not corpus_present("wordnet") and not fetch("wordnet"):
        write_wordnet_standin(LOCAL_DATA / "corpora" / "wordnet")
    if not corpus_present("sentiwordnet") and not fetch("sentiwordnet"):
        write_sentiwordnet_standin(LOCAL_DATA / "corpora" / "sentiwordnet")


def main() -> int:
    for name in REQUIRED:
        if not corpus_present(name) and not fetch(name):
            where = os.environ.get("NLTK_DATA", "NLTK's default locations")
            print(f"NLTK corpus {name!r} not found in {where} and not downloadable; offline, set NLTK_DATA "
                  "to a folder that has it (../shared/nltk_data)", file=sys.stderr)
            return 1
    ensure_sentiment_corpora()
    missing = [name for name in SENTIMENT if not corpus_present(name)]
    if missing:
        print(f"NLTK corpora {missing} could not be provided", file=sys.stderr)
        return 1
    print("nltk: " + ", ".join(REQUIRED + SENTIMENT) + " present")
    return 0


if __name__ == "__main__":
    sys.exit(main())
