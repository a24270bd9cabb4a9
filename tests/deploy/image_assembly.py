"""Builds what an image would hold, without Docker, from the committed blubber.yaml.

For one production variant: the application folder (only the variant's `copies`, at the `lives.in`
layout), a virtualenv with only the variant's Python requirements (installed offline from
`.state/wheelhouse`, which `python -m deploy.wheelhouse` fills), and the command line and environment
the image would start with, with the image's absolute paths mapped onto these local folders.
"""

from __future__ import annotations

import fnmatch
import hashlib
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from blubber_config import REPO_ROOT, builders, effective_variant

STATE = REPO_ROOT / ".state" / "image-smoke"
WHEELHOUSE = REPO_ROOT / ".state" / "wheelhouse"
NLTK_DATA = Path(os.environ.get("NLTK_DATA", REPO_ROOT.parent / "shared" / "nltk_data"))
WORD2VEC_STAND_INS = REPO_ROOT / "word2vec"  # `python -m dev.word_vectors`: same names as production
IMAGE_PYTHON = Path("/usr/bin/python3")  # Debian's Python, like the images'


@dataclass(frozen=True)
class AssembledImage:
    variant: str
    app: Path  # what the image has under lives.in
    venv: Path  # what the image has in the Blubber venv
    argv: list[str]
    env: dict[str, str]
    cwd: Path


def _excluded(relative: str, patterns: list[str]) -> bool:
    name = relative.rsplit("/", 1)[-1]
    return any(fnmatch.fnmatch(relative, p) or fnmatch.fnmatch(name, p.removeprefix("**/")) for p in patterns)


def copy_tree(source: Path, target: Path, exclude: list[str], drop: frozenset[str]) -> None:
    """Copies `source` to `target` like a Blubber `copies` entry; `drop` leaves out repo-relative files."""
    for path in sorted(source.rglob("*")):
        relative = path.relative_to(source).as_posix()
        if _excluded(relative, exclude) or any(_excluded(part, exclude) for part in relative.split("/")[:-1]):
            continue
        if path.relative_to(REPO_ROOT).as_posix() in drop:
            continue
        destination = target / relative
        if path.is_dir():
            destination.mkdir(parents=True, exist_ok=True)
        else:
            destination.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, destination)


def assemble_app(variant: str, app: Path, drop: frozenset[str] = frozenset()) -> dict:
    """A fresh `app` folder with the variant's copies; returns the effective variant config."""
    config = effective_variant(variant)
    lives_in = config["lives"]["in"]
    if app.exists():
        shutil.rmtree(app)
    app.mkdir(parents=True)
    for entry in config.get("copies", []):
        if not isinstance(entry, dict) or entry.get("from", "local") != "local":
            raise AssertionError(f"{variant}: only local copies are supported here, got {entry!r}")
        destination = entry.get("destination", entry["source"])
        relative = os.path.relpath(destination, lives_in) if destination.startswith("/") else destination
        if relative.startswith(".."):
            raise AssertionError(f"{variant}: copy destination {destination} is outside lives.in")
        copy_tree(REPO_ROOT / entry["source"], app / relative, entry.get("exclude", []), drop)
    return config


def python_builder(config: dict) -> dict:
    (python,) = [settings for kind, settings in builders(config) if kind == "python"]
    return python


def requirement_files(config: dict) -> list[str]:
    """The requirement files the build copies (earlier builders + python builder), in order."""
    files: list[str] = []
    for kind, settings in builders(config):
        files += [r for r in settings.get("requirements", [])
                  if isinstance(r, str) and r.startswith("requirements/")]
        if kind == "python":
            break
    return files


def venv_hash(config: dict) -> str:
    digest = hashlib.sha256(str(IMAGE_PYTHON.resolve()).encode())
    for name in requirement_files(config):
        digest.update(name.encode() + b"\0" + (REPO_ROOT / name).read_bytes())
    return digest.hexdigest()


def ensure_venv(variant: str, config: dict) -> Path:
    """The variant's virtualenv under .state/, rebuilt only when its requirement files changed."""
    venv = STATE / "venvs" / variant
    stamp = venv / ".smoke-stamp"
    expected = venv_hash(config)
    if stamp.exists() and stamp.read_text().strip() == expected:
        return venv
    if not (WHEELHOUSE / ".stamp").exists():
        raise RuntimeError("no wheelhouse: run `python -m deploy.wheelhouse` (make setup does) first")
    if venv.exists():
        shutil.rmtree(venv)
    python = IMAGE_PYTHON if IMAGE_PYTHON.exists() else Path(sys.executable)
    subprocess.run([str(python), "-m", "venv", str(venv)], check=True)
    # only the python builder's files go to pip, as `-r` each, exactly like Blubber does
    install = [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
               "--no-index", "--find-links", str(WHEELHOUSE)]
    for requirement in python_builder(config)["requirements"]:
        install += ["-r", requirement]
    _run(install, f"{variant}: installing its requirements")
    _run([str(venv / "bin" / "python"), "-m", "pip", "check"], f"{variant}: pip check")
    stamp.write_text(expected + "\n")
    return venv


def _run(command: list[str], what: str, env: dict[str, str] | None = None) -> None:
    result = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, env=env)
    if result.returncode != 0:
        output = result.stdout[-3000:] + result.stderr[-3000:]
        raise RuntimeError(f"{what} failed ({result.returncode}):\n{output}")


def path_map(config: dict, app: Path, venv: Path) -> list[tuple[str, str]]:
    """Image paths -> local paths, most specific first. NLTK data is fetched at build in the image; here
    it is the shared offline copy (tests may not download)."""
    lives_in = config["lives"]["in"]
    mapping = [(python_builder(config)["venv"], str(venv)), (lives_in, str(app))]
    nltk_dir = config.get("runs", {}).get("environment", {}).get("NLTK_DATA")
    if nltk_dir:
        mapping.insert(0, (nltk_dir, str(NLTK_DATA)))
    return mapping


def to_local(value: str, mapping: list[tuple[str, str]]) -> str:
    for image_path, local in mapping:
        value = value.replace(image_path, local)
    return value


def place_word_vectors(config: dict, mapping: list[tuple[str, str]]) -> None:
    """Stands in for the build-time download: the files the builder names, from the generated stand-ins."""
    for kind, settings in builders(config):
        command = settings.get("command") or []
        if kind != "custom" or not any("fetch_word_vectors" in part for part in command):
            continue
        dest = Path(to_local(command[command.index("--dest") + 1], mapping))
        dest.mkdir(parents=True, exist_ok=True)
        for name in (arg for arg in command if arg.endswith(".kv")):
            source = WORD2VEC_STAND_INS / name
            if not source.exists():
                raise RuntimeError(f"{source} is missing: run `python -m dev.word_vectors` (make setup does)")
            shutil.copy2(source, dest / name)


def place_nltk_corpora(config: dict, venv: Path) -> None:
    """Stands in for the build-time NLTK download: stopwords come from the shared offline copy
    (NLTK_DATA); other corpora the builder names (draftquality's wordnet/sentiwordnet) are provided by
    the dev tool that makes offline stand-ins, into the venv's own nltk_data folder."""
    for kind, settings in builders(config):
        command = settings.get("command") or []
        if kind != "custom" or "nltk.downloader" not in command:
            continue
        corpora = set(command[command.index("-d") + 2:])
        if corpora - {"stopwords"}:
            _run([str(venv / "bin" / "python"), str(REPO_ROOT / "requirements" / "ensure_nltk_data.py")],
                 "providing NLTK corpora", env={**os.environ, "NLTK_DATA": str(NLTK_DATA)})


def assemble(variant: str, drop: frozenset[str] = frozenset(), name: str | None = None,
             venv: Path | None = None) -> AssembledImage:
    """App folder + venv + start command for `variant`; `drop` removes files to prove they are needed."""
    app = STATE / "apps" / (name or variant)
    config = assemble_app(variant, app, drop)
    venv = venv or ensure_venv(variant, config)
    mapping = path_map(config, app, venv)
    place_word_vectors(config, mapping)
    place_nltk_corpora(config, venv)
    runs = config.get("runs", {})
    env = {key: to_local(str(value), mapping) for key, value in runs.get("environment", {}).items()}
    env["PATH"] = f"{venv / 'bin'}:/usr/bin:/bin"
    env["HOME"] = str(app)  # the runtime user's home is not the developer's
    argv = [to_local(part, mapping) for part in config["entrypoint"]]
    cwd = Path(to_local(runs.get("in", config["lives"]["in"]), mapping))
    return AssembledImage(variant, app, venv, argv, env, cwd)


def venv_without(venv: Path, package_dir: str, target: Path) -> Path:
    """A copy of `venv` (hard links: cheap) with one top-level package removed, as if a requirement were
    missing from the variant's requirements file."""
    if target.exists():
        shutil.rmtree(target)
    subprocess.run(["cp", "-al", str(venv), str(target)], check=True)
    (site,) = target.glob("lib/python3*/site-packages")
    shutil.rmtree(site / package_dir)
    return target
