"""The local build file of each image agrees with blubber.yaml: same base, Debian packages, requirement files,
copies, users, environment, entrypoint, NLTK corpora and word-vector command.

The build file is read back with a small parser of its own instructions and blubber.yaml with Blubber's
merge rules (blubber_config), so each side is checked as written, not as the generator meant it.
"""

from __future__ import annotations

import json
import re
import shlex

import pytest
from blubber_config import (
    apt_packages,
    build_variant,
    builders,
    copied_from,
    effective_variant,
    production_variants,
)

from deploy import containerfile, images

INSTRUCTION = re.compile(r"^([A-Z]+)\s+(.*)$")


def instructions(text: str) -> list[tuple[str, str]]:
    lines = [line for line in text.splitlines() if line and not line.startswith("#")]
    return [INSTRUCTION.match(line).groups() for line in lines]


def parse(text: str) -> dict:
    """What a build file does, instruction by instruction, per stage: "stages" maps each stage's name (the
    last one: "runtime") to what it does."""
    stages: dict[str, dict] = {}
    found: dict = {}
    for keyword, rest in instructions(text):
        if keyword == "FROM":
            base, _, name = rest.partition(" AS ")
            found = {"from": base, "apt": set(), "pip": [], "copies": [], "env": {}, "users": [], "runs": [],
                     "from_stage": []}
            stages[name or "runtime"] = found
        elif keyword == "RUN":
            words = shlex.split(rest)
            found["runs"].append(words)
            if "apt-get" in words and "install" in words:
                start = words.index("--no-install-recommends") + 1
                found["apt"].update(words[start:words.index("&&", start)])
            if "pip" in words and "install" in words:
                found["pip"].append(words[words.index("-r") + 1])
        elif keyword == "COPY":
            words = shlex.split(rest)
            owner = next((w.split("=", 1)[1] for w in words if w.startswith("--chown=")), None)
            stage = next((w.split("=", 1)[1] for w in words if w.startswith("--from=")), None)
            paths = [w for w in words if not w.startswith("--")]
            if stage:
                found["from_stage"].append((stage, owner, paths[0], paths[-1]))
            else:
                found["copies"].append((owner, paths[:-1], paths[-1]))
        elif keyword == "ENV":
            key, value = rest.split("=", 1)
            found["env"][key] = json.loads(value)
        elif keyword == "USER":
            found["users"].append(rest)
        elif keyword == "ENTRYPOINT":
            found["entrypoint"] = json.loads(rest)
    return {"stages": stages}


@pytest.fixture(scope="module", params=production_variants())
def stages(request):
    """(Blubber's variant, its build variant, the build file's runtime stage, its build stage)."""
    parsed = parse(containerfile.render(images.image(request.param)))["stages"]
    (build_name,) = [name for name in parsed if name != "runtime"]
    assert build_name == f"{request.param}-build"
    return (effective_variant(request.param), build_variant(request.param), parsed["runtime"],
            parsed[build_name])


@pytest.fixture
def pair(stages):
    """The runtime: Blubber's variant and the build file's last stage."""
    return stages[0], stages[2]


def test_every_image_of_the_table_is_a_blubber_variant():
    assert production_variants() == [spec.name for spec in images.IMAGES]


def test_two_stages_like_blubbers_build_variant_and_the_runtime_copies_the_same_paths_from_it(stages):
    variant, build, runtime, built = stages
    assert built["from"] == build["base"]
    assert built["apt"] == set(apt_packages(build))
    copied = {(source, dest) for stage, _, source, dest in runtime["from_stage"]}
    blubber = {(c["source"], c["destination"]) for c in variant["copies"] if c["from"] != "local"}
    assert copied == blubber and {stage for stage, *_ in runtime["from_stage"]} == set(copied_from(variant))
    lives_as = variant["lives"]["as"]
    assert {owner for _, owner, _, _ in runtime["from_stage"]} == {f"{lives_as}:{lives_as}"}
    commands = [settings["command"] for kind, settings in builders(build) if kind == "custom"]
    # the build-only distributions, then the files that never run, leave the venv last
    assert built["runs"][-2:] == commands[-2:]
    assert not runtime["pip"] and "venv" not in " ".join(" ".join(words) for words in runtime["runs"])


def test_same_base_and_debian_packages(pair):
    variant, built = pair
    assert built["from"] == variant["base"]
    assert built["apt"] == set(apt_packages(variant))


def test_same_requirement_files_installed_and_copied(stages):
    _, variant, _, built = stages  # the build stages
    steps = builders(variant)
    (python,) = [settings for kind, settings in steps if kind == "python"]
    # Blubber installs the python builder's files with -r; pip follows their -r includes itself
    expected = {f for top in python["requirements"] for f in images.install_order(top)}
    assert set(built["pip"]) == expected and built["pip"][0] == python["requirements"][0]  # bootstrap first
    copied = {f"requirements/{p.rsplit('/', 1)[-1]}" for owner, sources, dest in built["copies"]
              if dest == "requirements/" for p in sources}
    blubber_copied = {f for kind, settings in steps for f in settings.get("requirements", [])}
    assert copied == blubber_copied | expected


def test_same_copies_owned_by_the_lives_user(stages):
    variant, _, built, build_stage = stages
    sources = {(sources[0], dest) for owner, sources, dest in built["copies"]}
    assert sources == {(copy["source"], copy["destination"]) for copy in variant["copies"]
                       if copy["from"] == "local"}
    # the NLTK corpora too: Blubber's downloader runs as lives.as, so they are its files in production
    lives_as = variant["lives"]["as"]
    owners = {owner for owner, _, _ in built["copies"] + build_stage["copies"]}
    assert owners == {f"{lives_as}:{lives_as}"}


def test_same_users_environment_and_entrypoint(pair):
    variant, built = pair
    lives, runs = variant["lives"], variant["runs"]
    (create_users,) = [words for words in built["runs"] if "useradd" in words]
    command = " ".join(create_users)
    assert f"--uid {lives['uid']} --gid {lives['gid']} --create-home {lives['as']}" in command
    assert f"--uid {runs['uid']} --gid {runs['gid']} --create-home {runs['as']}" in command
    assert built["users"][-1] == f"{runs['uid']}:{runs['gid']}"  # the server runs as runs.as
    assert runs["insecurely"] is False and lives["uid"] != runs["uid"]
    assert built["env"] == runs["environment"]
    assert built["entrypoint"] == variant["entrypoint"]


def test_same_nltk_corpora_and_word_vector_command(stages):
    _, variant, _, built = stages  # the build stages
    commands = [settings.get("command", []) for kind, settings in builders(variant) if kind == "custom"]
    nltk = [c for c in commands if "nltk.downloader" in c]
    corpora = set(nltk[0][nltk[0].index("-d") + 2:]) if nltk else set()
    nltk_dir = nltk[0][nltk[0].index("-d") + 1] if nltk else None
    copied = {dest.rsplit("/", 1)[-1] for _, _, dest in built["copies"]
              if nltk_dir and dest.startswith(nltk_dir)}
    assert copied == corpora
    fetches = [c for c in commands if any("fetch_word_vectors" in part for part in c)]
    built_fetches = [words[words.index(next(w for w in words if w.startswith("WORD2VEC_BASE_URL="))) + 1:]
                     for words in built["runs"] if any("fetch_word_vectors" in w for w in words)]
    assert built_fetches == fetches
