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
from blubber_config import apt_packages, builders, effective_variant, production_variants

from deploy import containerfile, images

INSTRUCTION = re.compile(r"^([A-Z]+)\s+(.*)$")


def instructions(text: str) -> list[tuple[str, str]]:
    lines = [line for line in text.splitlines() if line and not line.startswith("#")]
    return [INSTRUCTION.match(line).groups() for line in lines]


def parse(text: str) -> dict:
    """What a build file does, instruction by instruction."""
    found = {"from": [], "apt": set(), "pip": [], "copies": [], "env": {}, "users": [], "runs": []}
    for keyword, rest in instructions(text):
        if keyword == "FROM":
            found["from"].append(rest)
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
            paths = [w for w in words if not w.startswith("--")]
            found["copies"].append((owner, paths[:-1], paths[-1]))
        elif keyword == "ENV":
            key, value = rest.split("=", 1)
            found["env"][key] = json.loads(value)
        elif keyword == "USER":
            found["users"].append(rest)
        elif keyword == "ENTRYPOINT":
            found["entrypoint"] = json.loads(rest)
    return found


@pytest.fixture(scope="module", params=production_variants())
def pair(request):
    return effective_variant(request.param), parse(containerfile.render(images.image(request.param)))


def test_every_image_of_the_table_is_a_blubber_variant():
    assert production_variants() == [spec.name for spec in images.IMAGES]


def test_same_base_and_debian_packages(pair):
    variant, built = pair
    assert built["from"] == [variant["base"]]
    assert built["apt"] == set(apt_packages(variant))


def test_same_requirement_files_installed_and_copied(pair):
    variant, built = pair
    steps = builders(variant)
    (python,) = [settings for kind, settings in steps if kind == "python"]
    # Blubber installs the python builder's files with -r; pip follows their -r includes itself
    expected = {f for top in python["requirements"] for f in images.install_order(top)}
    assert set(built["pip"]) == expected and built["pip"][0] == python["requirements"][0]  # bootstrap first
    copied = {f"requirements/{p.rsplit('/', 1)[-1]}" for owner, sources, dest in built["copies"]
              if dest == "requirements/" for p in sources}
    blubber_copied = {f for kind, settings in steps for f in settings.get("requirements", [])}
    assert copied == blubber_copied | expected


def test_same_copies_owned_by_the_lives_user(pair):
    variant, built = pair
    nltk_dir = variant["runs"]["environment"].get("NLTK_DATA", "-")
    sources = {(sources[0], dest) for owner, sources, dest in built["copies"]
               if not dest.startswith(("requirements/", nltk_dir))}
    assert sources == {(copy["source"], copy["destination"]) for copy in variant["copies"]}
    # the NLTK corpora too: Blubber's downloader runs as lives.as, so they are its files in production
    lives_as = variant["lives"]["as"]
    assert {owner for owner, _, _ in built["copies"]} == {f"{lives_as}:{lives_as}"}


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


def test_same_nltk_corpora_and_word_vector_command(pair):
    variant, built = pair
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
