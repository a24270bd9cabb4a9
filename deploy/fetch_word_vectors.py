"""Downloads the topic models' word vectors into an image at build time (Blubber builder of `topic`).

drafttopic's feature lists load `<wiki>-<date>-learned_vectors.50_cell.10k.kv` files by name from
revscoring's search path (`word2vec/` under the working directory, among others), at import time. The
files are too big for the repository and are published next to the other ORES/Lift Wing artefacts, so
the `topic` image fetches them while it is built. Standard library only: it runs before anything but the
venv exists, and `--verify` loads each file with gensim (installed by then) to fail the build early on a
truncated or wrong file instead of at the first request.

    python3 fetch_word_vectors.py --dest /srv/app/word2vec NAME.kv [NAME.kv ...]

The base URL is `--base-url`, else the `WORD2VEC_BASE_URL` build argument/environment variable.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import urllib.request
from pathlib import Path

DEFAULT_BASE_URL = (
    "https://analytics.wikimedia.org/published/datasets/archive/public-datasets/all/ores/topic/vectors"
)
PICKLE_MAGIC = b"\x80"  # gensim saves KeyedVectors with pickle (protocol >= 2 starts with 0x80)
ATTEMPTS = 4
TIMEOUT_S = 120.0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dest", type=Path, required=True, help="directory to write the files to")
    parser.add_argument("--base-url", default=None, help=f"default: $WORD2VEC_BASE_URL or {DEFAULT_BASE_URL}")
    parser.add_argument("--verify", action="store_true", help="load every file with gensim afterwards")
    parser.add_argument("--dimensions", type=int, default=50, help="vector size --verify expects")
    parser.add_argument("names", nargs="+", help="file names to fetch")
    return parser.parse_args(argv)


def fetch(url: str, target: Path, attempts: int = ATTEMPTS) -> None:
    """Downloads `url` to `target` atomically, retrying transient failures with a growing pause."""
    partial = target.with_name(target.name + ".part")
    for attempt in range(1, attempts + 1):
        try:
            with urllib.request.urlopen(url, timeout=TIMEOUT_S) as response, open(partial, "wb") as out:
                while chunk := response.read(1 << 20):
                    out.write(chunk)
            check_pickle(partial)
            partial.replace(target)
            return
        except (OSError, ValueError) as error:
            partial.unlink(missing_ok=True)
            if attempt == attempts:
                raise RuntimeError(f"could not fetch {url}: {error}") from error
            print(f"retrying {url} after: {error}", file=sys.stderr)
            time.sleep(min(2**attempt, 30))


def check_pickle(path: Path) -> None:
    """An HTML error page or an empty body is not a vector file: refuse it before it is renamed."""
    with open(path, "rb") as handle:
        head = handle.read(2)
    if not head.startswith(PICKLE_MAGIC):
        raise ValueError(f"{path.name} is not a pickled KeyedVectors file (starts with {head!r})")


def verify(path: Path, dimensions: int) -> int:
    """Loads the file the way revscoring does; returns the vocabulary size."""
    from gensim.models import KeyedVectors  # only present once the image's requirements are installed

    vectors = KeyedVectors.load(str(path), mmap="r")
    if vectors.vector_size != dimensions:
        raise ValueError(f"{path.name}: vectors have {vectors.vector_size} dimensions, not {dimensions}")
    return len(vectors.index_to_key)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    base_url = (args.base_url or os.environ.get("WORD2VEC_BASE_URL") or DEFAULT_BASE_URL).rstrip("/")
    args.dest.mkdir(parents=True, exist_ok=True)
    for name in args.names:
        target = args.dest / name
        fetch(f"{base_url}/{name}", target)
        words = verify(target, args.dimensions) if args.verify else None
        print(f"{target}: {target.stat().st_size} bytes" + (f", {words} words" if words is not None else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
