"""The production images: what each one holds, derived from the seed table and `requirements/`.

One `ImageSpec` per image of the seed table's `image` column. Everything that varies per image and can be
derived is derived here rather than typed into `blubber.yaml`: the Debian dictionaries come from the
content languages of the rows the image serves (via `requirements/dictionaries.tsv`), the Python
requirements from `requirements/<image>.txt` and the files it includes. `deploy.blubber` turns these specs
into `blubber.yaml` (the Deployment Pipeline's input) and `deploy.containerfile` into a container build file
per image (local builds with podman/docker); `tests/deploy/test_containerfile.py` proves the two agree.
Adding an image is one `ImageSpec` line in `IMAGES` (plus its requirements file and seed-table rows).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from deploy.seed_table import REPO_ROOT, IsvcRow, load_rows

BASE_IMAGE = "docker-registry.wikimedia.org/bookworm"  # production base; built locally by deploy.containers
LIVES_IN = "/srv/app"  # where the application files live in every image (blubber `lives.in`)
VENV = "/opt/lib/venv"  # the Blubber-managed virtualenv (python builder `venv`)
VENV_PYTHON = f"{VENV}/bin/python3"
NLTK_DATA = f"{LIVES_IN}/nltk_data"
WORD2VEC_DIR = f"{LIVES_IN}/word2vec"  # revscoring searches `word2vec/` relative to the working directory
SERVER_PORT = 8080
# Blubber's default users, written out so the local build file creates the same ones: `lives.as` owns the
# application and the venv, `runs.as` runs the server and cannot write either (runs.insecurely: false).
LIVES_AS = ("somebody", 65533)
RUNS_AS = ("runuser", 900)
BOOTSTRAP_REQUIREMENTS = "requirements/bootstrap.txt"  # pip, setuptools, wheel: installed before anything
LOCAL_TAG = "localhost/lift-wing/{name}:dev"  # what `make image IMAGE=<name>` tags the local build
GRPC_PORT = 8081  # KServe's default port for its V2 gRPC protocol (the outlink predictor serves it)

SHARED_CORE = "python/wikiserve"
REVSCORING_SOURCES = (SHARED_CORE, "revscoring/revscoring_server")
OUTLINK_SOURCES = (SHARED_CORE, "outlink-topic-model/outlink_server")
REVSCORING_PATH = (f"{LIVES_IN}/python", f"{LIVES_IN}/revscoring")
OUTLINK_PATH = (f"{LIVES_IN}/python", f"{LIVES_IN}/outlink-topic-model")

# Every production image is built in two stages: a build stage (Blubber variant `<image>-build`) makes the
# venv, with a compiler where pip needs one, and fetches the build-time data; the runtime stage (variant
# `<image>`) copies the venv and the data from it onto a base with only what runs: Python, and for revscoring
# images enchant and the dictionaries.
BUILD_SUFFIX = "-build"
PYTHON_APT = ("python3",)  # Debian bookworm's Python 3.11: the venv's interpreter, in both stages
VENV_APT = ("python3-venv",)  # build stage only: makes the venv
SPELLCHECK_APT = ("libenchant-2-2",)  # pyenchant loads it; the dictionaries plug into its providers
# PyPI has no Python 3.11 wheel for these pins, so pip compiles them during the image build (the image
# contents test checks this list against the wheels it had to build locally).
SOURCE_BUILT = ("mmh3", "fasttext")
COMPILER_APT = ("g++", "python3-dev")  # build stage only
# Distributions only the build uses, removed from the venv before the runtime stage copies it: pip and
# wheel install, Cython is a build requirement that revscoring also declares as a runtime one (it never
# imports it). setuptools stays: revscoring imports pkg_resources.
BUILD_ONLY_DISTRIBUTIONS = ("pip", "wheel", "Cython")
# Files of the remaining distributions that never run in production, deleted from the venv in the build stage
# too (about 60 MB in every image, 100 MB with scipy and scikit-learn):
# - their own test suites, folders named `tests` (numpy's, pandas', scipy's, scikit-learn's, revscoring's
#   top-level `tests` package...): no module outside them imports them. Folders named `testing` stay:
#   `numpy.testing` is public API that other libraries import at run time;
# - C, C++ and Cython sources and headers: only a compiler reads them, and production has none;
# - the Ray dashboard's source maps: only a browser's developer tools fetch them.
# Kept on purpose: `__pycache__` (the root filesystem is read-only in production: without the bytecode every
# start would compile every module again) and shared objects unstripped (`strip` breaks the
# auditwheel-patched OpenBLAS of numpy and scipy).
NEVER_RUN_FOLDERS = ("tests",)
NEVER_RUN_FILES = ("*.c", "*.cpp", "*.h", "*.hpp", "*.pyx", "*.pxd", "*.pxi", "*.js.map", "*.css.map")
_INCLUDE = re.compile(r"^\s*(-r|-c|--requirement|--constraint)\s+(\S+)")
_REQUIREMENT_FLAGS = ("-r", "--requirement")


@dataclass(frozen=True)
class ImageSpec:
    """One production image (= one Blubber variant)."""

    name: str
    requirements: str  # top-level requirements file, relative to the repo
    sources: tuple[str, ...]  # repo directories copied into the image, same relative layout
    python_path: tuple[str, ...]
    entrypoint: tuple[str, ...]
    revscoring: bool  # spell checking dictionaries
    word_vectors: bool  # downloads the topic word vectors at build time
    nltk_corpora: tuple[str, ...]  # NLTK corpora downloaded at build time (revscoring's language modules)
    compiled: tuple[str, ...] = ()  # requirements pip builds from source (see SOURCE_BUILT)
    environment: tuple[tuple[str, str], ...] = ()  # settings the image starts with (a manifest may override)

    @property
    def requirement_files(self) -> list[str]:
        """The top-level file and every file it includes (-r/-c), transitively, top-level first."""
        return requirement_closure(self.requirements)


def _revscoring(name: str, word_vectors: bool = False, extra_corpora: tuple[str, ...] = ()) -> ImageSpec:
    return ImageSpec(
        name=name,
        requirements=f"requirements/{name}.txt",
        sources=REVSCORING_SOURCES,
        python_path=REVSCORING_PATH,
        entrypoint=(VENV_PYTHON, "-m", "revscoring_server"),
        revscoring=True,
        word_vectors=word_vectors,
        nltk_corpora=("stopwords", *extra_corpora),
        compiled=("mmh3",),  # through revscoring
    )


def _outlink(name: str, module: str, compiled: tuple[str, ...] = (),
             environment: tuple[tuple[str, str], ...] = ()) -> ImageSpec:
    return ImageSpec(
        name=name,
        requirements=f"requirements/{name}.txt",
        sources=OUTLINK_SOURCES,
        python_path=OUTLINK_PATH,
        entrypoint=(VENV_PYTHON, "-m", module),
        revscoring=False,
        word_vectors=False,
        nltk_corpora=(),
        compiled=compiled,
        environment=environment,
    )


# The `ores` image is not in the seed table: it serves ORES's API by calling the model servers. It copies the
# revscoring server's package for its service table and the proxy module; it imports nothing of revscoring.
ORES = ImageSpec(
    name="ores",
    requirements="requirements/ores.txt",
    sources=REVSCORING_SOURCES,
    python_path=REVSCORING_PATH,
    entrypoint=(VENV_PYTHON, "-m", "revscoring_server.ores"),
    revscoring=False,
    word_vectors=False,
    nltk_corpora=(),
)

IMAGES: tuple[ImageSpec, ...] = (
    _revscoring("editquality"),
    _revscoring("articlequality"),
    # draftquality.feature_lists.enwiki scores sentiment with NLTK's SentiWordNet (over WordNet)
    _revscoring("draftquality", extra_corpora=("wordnet", "sentiwordnet")),
    _revscoring("topic", word_vectors=True),
    _outlink("outlink", "outlink_server.predictor", compiled=("fasttext",),
             environment=(("GRPC_PORT", str(GRPC_PORT)),)),
    _outlink("outlink-transformer", "outlink_server.transformer"),
    ORES,
)


def image(name: str) -> ImageSpec:
    for spec in IMAGES:
        if spec.name == name:
            return spec
    raise KeyError(f"no image named {name!r}")


def requirement_closure(path: str, root: Path = REPO_ROOT) -> list[str]:
    """`path` and the files it includes with -r/-c, resolved like pip does (relative to the includer)."""
    seen: list[str] = []
    pending = [path]
    while pending:
        current = pending.pop(0)
        if current in seen:
            continue
        seen.append(current)
        for line in (root / current).read_text(encoding="utf-8").splitlines():
            match = _INCLUDE.match(line)
            if match:
                included = (Path(current).parent / match.group(2)).as_posix()
                pending.append(included)
    return seen


def install_order(path: str, root: Path = REPO_ROOT) -> list[str]:
    """The requirement files `path` pulls in with -r (not -c), each after the files it includes: installing
    them one by one in this order gives the same packages as installing `path` alone, and lets images
    that share a base file (common.txt, revscoring-base.txt) share that build layer."""
    ordered: list[str] = []

    def visit(current: str) -> None:
        if current in ordered:
            return
        for line in (root / current).read_text(encoding="utf-8").splitlines():
            match = _INCLUDE.match(line)
            if match and match.group(1) in _REQUIREMENT_FLAGS:
                visit((Path(current).parent / match.group(2)).as_posix())
        ordered.append(current)

    visit(path)
    return ordered


def local_tag(name: str) -> str:
    return LOCAL_TAG.format(name=name)


def rows_served(spec: ImageSpec, rows: list[IsvcRow] | None = None) -> list[IsvcRow]:
    """The seed-table rows whose inference service runs this image."""
    return [row for row in (rows if rows is not None else load_rows()) if spec.name in row.images]


def load_dictionaries(path: Path | None = None) -> dict[str, tuple[str, ...]]:
    """`requirements/dictionaries.tsv`: content language -> Debian packages ("-" means none)."""
    table: dict[str, tuple[str, ...]] = {}
    text = (path or REPO_ROOT / "requirements" / "dictionaries.tsv").read_text(encoding="utf-8")
    for line in text.splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        language, packages = line.split("\t")[:2]
        table[language] = tuple(p for p in packages.split() if p != "-")
    return table


def dictionary_packages(spec: ImageSpec, rows: list[IsvcRow] | None = None,
                        dictionaries: dict[str, tuple[str, ...]] | None = None) -> list[str]:
    """Sorted Debian dictionary packages for exactly the content languages this image serves."""
    if not spec.revscoring:
        return []
    table = dictionaries if dictionaries is not None else load_dictionaries()
    languages = {row.content_language for row in rows_served(spec, rows)}
    missing = sorted(languages - table.keys())
    if missing:
        raise ValueError(f"requirements/dictionaries.tsv has no line for {missing} (image {spec.name})")
    return sorted({package for language in languages for package in table[language]})


def apt_packages(spec: ImageSpec, rows: list[IsvcRow] | None = None,
                 dictionaries: dict[str, tuple[str, ...]] | None = None) -> list[str]:
    """Every Debian package of the runtime image: Python, and for revscoring images enchant + dictionaries."""
    base = list(PYTHON_APT) + (list(SPELLCHECK_APT) if spec.revscoring else [])
    return base + dictionary_packages(spec, rows, dictionaries)


def build_apt_packages(spec: ImageSpec) -> list[str]:
    """The build stage's Debian packages: Python, its venv module, a compiler if pip must build one."""
    return list(PYTHON_APT + VENV_APT) + (list(COMPILER_APT) if spec.compiled else [])


def build_stage(spec: ImageSpec) -> str:
    """The build stage's name: the Blubber variant and the build file's stage `<image>-build`."""
    return spec.name + BUILD_SUFFIX


def build_outputs(spec: ImageSpec) -> list[str]:
    """What the runtime stage copies from the build stage: the venv and the data fetched at build time."""
    return [VENV] + ([NLTK_DATA] if spec.nltk_corpora else []) + ([WORD2VEC_DIR] if spec.word_vectors else [])


def strip_build_tools_command() -> list[str]:
    """The build-only distributions out of the venv the runtime copies (pip uninstalls itself last)."""
    return [VENV_PYTHON, "-m", "pip", "uninstall", "--yes", "--quiet", *BUILD_ONLY_DISTRIBUTIONS]


def _any_name(patterns: tuple[str, ...]) -> list[str]:
    """find's test for "the name matches one of the patterns": ( -name a -o -name b ... )."""
    tests = [word for pattern in patterns for word in ("-o", "-name", pattern)][1:]
    return ["(", *tests, ")"]


def prune_never_run_command() -> list[str]:
    """One `find` deleting the folders and files of the venv that never run (NEVER_RUN_*): a matching folder
    is removed whole and not searched further (-prune)."""
    folders = ["-type", "d", *_any_name(NEVER_RUN_FOLDERS), "-prune"]
    files = ["-type", "f", *_any_name(NEVER_RUN_FILES)]
    matches = ["(", "(", *folders, ")", "-o", "(", *files, ")", ")"]
    return ["find", VENV, *matches, "-exec", "rm", "-rf", "{}", "+"]


def venv_cleanup_commands() -> list[list[str]]:
    """The build stage's last steps, the same in blubber.yaml and the local build files: the build-only
    distributions, then the files that never run, out of the venv the runtime stage copies."""
    return [strip_build_tools_command(), prune_never_run_command()]
