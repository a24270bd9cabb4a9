"""Small, deterministic stand-ins for the word vectors that the topic feature lists load.

drafttopic's feature lists call `revscoring...vectorizers.word2vec.load_gensim_kv(filename=...)` at import
time; revscoring looks for that file name in `vectorizers.ASSET_SEARCH_DIRS` (`word2vec/` relative to the
working directory, `~/.word2vec/`, `/var/share/word2vec/`). Production images download the real 10k-word,
50-dimension vectors at build time; for development and tests `python -m dev.word_vectors` writes
generated ones with exactly the same file names into `<repo>/word2vec/` (git-ignored), which is on that
search path whenever commands run from the repository root.

The file names are read from drafttopic's own source (the `filename=` arguments), so a new drafttopic
release cannot silently need a file we do not make. Vectors are a pure function of the word: words of
one topic cluster share a centroid, so topic models trained on them learn something real.
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import importlib.util
import json
import re
from collections.abc import Iterable
from pathlib import Path

import numpy as np
from gensim.models import KeyedVectors

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DIR = REPO_ROOT / "word2vec"
DIMENSIONS = 50  # the production vectors are "50_cell": models expect 50 inputs per vector feature
WIKIDATA_PROPERTIES = 3000
WIKIDATA_ITEMS = 7000
FARM_PHRASES = REPO_ROOT / "dev" / "mediawiki_farm" / "fixtures" / "phrases.json"
WORD_RE = re.compile(r"\w+")

# Topic clusters: words that should land near each other. English plus a few frequent words of other
# content languages; the farm's pages use these words, and so does the demo-model heuristic.
TOPIC_WORDS: dict[str, tuple[str, ...]] = {
    "physics": tuple(
        "physics quantum particle energy electron photon relativity atom gravity mass "
        "physik physique física fizika 물리학 فيزياء".split()
    ),
    "biology": tuple(
        "biology species cell gene animal plant evolution protein dna organism biologie "
        "biología 생물학 biológia أحياء".split()
    ),
    "mathematics": tuple(
        "mathematics theorem number algebra geometry equation proof matematika "
        "mathématiques matemáticas 수학 رياضيات".split()
    ),
    "biography": tuple(
        "born died he she his her him hers career life married actor writer politician "
        "player singer né née nació született".split()
    ),
    "sports": tuple(
        "football team league season match goal club cup olympic championship fútbol "
        "futball 축구 كرة".split()
    ),
    "music": tuple(
        "music album song band singer guitar concert musique música zene 음악 موسيقى".split()
    ),
    "history": tuple(
        "history war empire century king battle ancient dynasty histoire historia "
        "történelem 역사 تاريخ".split()
    ),
    "geography": tuple(
        "city river mountain country village population region capital island ville "
        "ciudad város 도시 مدينة".split()
    ),
    "technology": tuple(
        "computer software internet technology engineering machine network program "
        "informatique computadora számítógép 컴퓨터 حاسوب".split()
    ),
    "politics": tuple(
        "government election party minister president parliament law politics politique "
        "política politika 정치 سياسة".split()
    ),
}


def kv_file_names() -> list[str]:
    """Every `filename=` passed to `load_gensim_kv` by drafttopic's feature lists, read from its source."""
    spec = importlib.util.find_spec("drafttopic.feature_lists")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("drafttopic is not installed")
    names: set[str] = set()
    for directory in spec.submodule_search_locations:
        for source in sorted(Path(directory).glob("*.py")):
            names.update(_load_kv_file_names(ast.parse(source.read_text(encoding="utf-8"))))
    return sorted(names)


def _load_kv_file_names(tree: ast.AST) -> Iterable[str]:
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "load_gensim_kv":
            for keyword in node.keywords:
                if keyword.arg == "filename" and isinstance(keyword.value, ast.Constant):
                    yield keyword.value.value


def farm_words(lang: str) -> dict[str, tuple[str, ...]]:
    """Words the local farm writes in `lang` (dev/mediawiki_farm/fixtures/phrases.json) and their clusters.

    Page-title nouns are places (geography), the first heading is "History"; other words get no cluster.
    """
    if not FARM_PHRASES.exists():
        return {}
    phrases = json.loads(FARM_PHRASES.read_text(encoding="utf-8")).get(lang)
    if not isinstance(phrases, dict):
        return {}
    words: dict[str, tuple[str, ...]] = {}
    for sentence in [*phrases.get("sentences", []), *phrases.get("headings", [])[1:]]:
        words.update((token.lower(), ()) for token in WORD_RE.findall(sentence))
    for heading in phrases.get("headings", [])[:1]:
        words.update((token.lower(), ("history",)) for token in WORD_RE.findall(heading))
    for noun in phrases.get("nouns", []):
        words.update((token.lower(), ("geography",)) for token in WORD_RE.findall(noun))
    return words


def vocabulary(file_name: str) -> dict[str, tuple[str, ...]]:
    """Word -> clusters of one vector file: property/item ids for Wikidata, else topic and farm words."""
    if file_name.startswith("wikidata"):
        ids = [f"P{n}" for n in range(1, WIKIDATA_PROPERTIES + 1)]
        items = [f"Q{n}" for n in range(1, WIKIDATA_ITEMS + 1)]
        return {**dict.fromkeys(ids, ()), **{qid: (qid_cluster(qid),) for qid in items}}
    words = farm_words(file_name.split("-")[0].removesuffix("wiki"))
    for cluster, members in TOPIC_WORDS.items():
        for word in members:
            words[word] = tuple(sorted({*words.get(word, ()), cluster}))
    return dict(sorted(words.items()))


def qid_cluster(qid: str) -> str:
    """Q-ids are spread over the clusters by number (the outlink demo model uses the same rule)."""
    return sorted(TOPIC_WORDS)[int(qid[1:]) % len(TOPIC_WORDS)]


def unit_vector(seed_text: str) -> np.ndarray:
    # A stable seed from the text (Python's hash() is salted per process, so not usable here).
    seed = int.from_bytes(hashlib.sha256(seed_text.encode("utf-8")).digest()[:8], "little")
    vector = np.random.default_rng(seed).standard_normal(DIMENSIONS)
    return vector / np.linalg.norm(vector)


def word_vector(word: str, clusters: tuple[str, ...]) -> np.ndarray:
    """Cluster words: the sum of their clusters' centroids plus some noise; other words: noise only."""
    noise = unit_vector("word:" + word)
    if not clusters:
        return noise.astype(np.float32)
    centroid = sum(unit_vector("topic:" + name) for name in clusters)
    return (centroid + 0.3 * noise).astype(np.float32)


def build(file_name: str) -> KeyedVectors:
    """The KeyedVectors for one production file name."""
    words = vocabulary(file_name)
    kv = KeyedVectors(vector_size=DIMENSIONS, count=len(words), dtype=np.float32)
    kv.lifecycle_events = None  # gensim would record timestamps in the file: keep the bytes reproducible
    kv.add_vectors(list(words), np.stack([word_vector(word, clusters) for word, clusters in words.items()]))
    return kv


def write_all(directory: Path = DEFAULT_DIR, force: bool = False) -> list[Path]:
    """Writes every vector file drafttopic needs into `directory`; existing files are kept unless forced."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name in kv_file_names():
        path = directory / name
        if force or not path.exists():
            temporary = path.with_name(path.name + ".tmp")
            build(name).save(str(temporary))
            temporary.replace(path)  # never leave a half-written file under the real name
        written.append(path)
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=Path, default=DEFAULT_DIR)
    parser.add_argument("--force", action="store_true", help="rewrite files that already exist")
    args = parser.parse_args()
    paths = write_all(args.dir, args.force)
    print(f"word vectors: {len(paths)} files in {args.dir}")


if __name__ == "__main__":
    main()
