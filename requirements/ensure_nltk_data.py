"""Puts the NLTK corpora revscoring and the model packages read into `<venv>/nltk_data` (NLTK's default path).

Every project command runs without NLTK_DATA (the Makefile unexports it): the corpora live in the venv as
regular files of their own. nltk 3.10 refuses corpus files with more than one hard link (CWE-59 guard), and
offline copies such as ../shared/nltk_data are laid out with hard links, so they are copied, never read in
place.

- `stopwords` (revscoring's language modules load it at import): copied from NLTK_SOURCE (the caller's
  NLTK_DATA, passed on by the Makefile) when that has it; with NLTK_SOURCE unset, from the project's offline
  corpus `../shared/nltk_data` beside the checkout when it is there; else fetched with NLTK's downloader.
- `wordnet` and `sentiwordnet` (draftquality's enwiki sentiment features): the same way; offline, stand-ins:
  WordNet 3.0 itself from Debian's `wordnet-base`, and a small demo SentiWordNet lexicon (a few dozen
  clearly positive/negative words; the real file is not available offline). Production images download
  the real corpora at build time.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Mapping
from pathlib import Path

import nltk

# The offline corpus shipped beside the checkout (the project's `shared/` folder): a fresh machine has no
# NLTK_DATA set, and NLTK's downloader needs a server that may not be reachable.
SHARED_NLTK_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "nltk_data"


def source_folders(environ: Mapping[str, str] = os.environ) -> str:
    """The folders (os.pathsep) the corpora can be copied from: NLTK_SOURCE when set, else the shared
    corpus beside the checkout when there is one."""
    chosen = environ.get("NLTK_SOURCE", "")
    if chosen:
        return chosen
    return str(SHARED_NLTK_DATA) if SHARED_NLTK_DATA.is_dir() else ""


SOURCE = source_folders()
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
    return (LOCAL_DATA / "corpora" / name).is_dir()


def copy_from_source(name: str) -> bool:
    """Copies corpus `name` from NLTK_SOURCE into the venv: new files, one link each."""
    for folder in filter(None, SOURCE.split(os.pathsep)):
        source = Path(folder) / "corpora" / name
        if source.is_dir():
            shutil.copytree(source, LOCAL_DATA / "corpora" / name, copy_function=shutil.copyfile)
            return True
    return False


def fetch(name: str) -> bool:
    """NLTK's downloader, into the venv (fails fast offline)."""
    return bool(nltk.download(name, download_dir=str(LOCAL_DATA), quiet=True)) and corpus_present(name)


def provide(name: str) -> bool:
    return corpus_present(name) or copy_from_source(name) or fetch(name)


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
    if not provide("wordnet"):
        write_wordnet_standin(LOCAL_DATA / "corpora" / "wordnet")
    if not provide("sentiwordnet"):
        write_sentiwordnet_standin(LOCAL_DATA / "corpora" / "sentiwordnet")


def readable() -> bool:
    """Reads a stopword list the way revscoring's language modules do (NLTK's own path checks included)."""
    from nltk.corpus import stopwords

    return "the" in stopwords.words("english")


def main() -> int:
    nltk.data.path.insert(0, LOCAL_DATA.as_posix())
    for name in REQUIRED:
        if not provide(name):
            print(f"NLTK corpus {name!r} not found in NLTK_DATA ({SOURCE or 'unset'}) and not downloadable; "
                  "offline, set NLTK_DATA to a folder that has it (../shared/nltk_data)", file=sys.stderr)
            return 1
    ensure_sentiment_corpora()
    missing = [name for name in SENTIMENT if not corpus_present(name)]
    if missing or not readable():
        print(f"NLTK corpora in {LOCAL_DATA} are incomplete or unreadable (missing: {missing})",
              file=sys.stderr)
        return 1
    print(f"nltk: {', '.join(REQUIRED + SENTIMENT)} present in {LOCAL_DATA}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
