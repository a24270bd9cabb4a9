"""blubber.yaml: valid Blubber v4, current with its generator, and each image holding only what it needs."""

import json
import subprocess
from pathlib import Path

import jsonschema
import pytest
from blubber_config import (
    REPO_ROOT,
    TEST_VARIANT,
    apt_packages,
    build_variant,
    builders,
    copied_from,
    effective_variant,
    load_blubber,
    production_variants,
)

from deploy import blubber, images
from deploy.seed_table import load_rows

SCHEMA = REPO_ROOT.parent / "shared" / "schemas" / "blubber-v4.config.schema.json"
LIVES_IN = "/srv/app"


@pytest.fixture(scope="module")
def schema():
    return json.loads(SCHEMA.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def config():
    return load_blubber()


def validator(schema):
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema)


def known_keys(schema, definition):
    """Property names a definition (and the definitions it combines) allows."""
    node = schema["$defs"][definition]
    keys = set(node.get("properties", {}))
    for part in node.get("allOf", []):
        keys |= set(part.get("properties", {}))
        if "$ref" in part:
            keys |= known_keys(schema, part["$ref"].split("/")[-1])
    return keys


def test_blubber_yaml_validates_against_the_v4_schema(schema, config):
    validator(schema).validate(config)
    assert config["version"] == "v4"


def test_schema_validation_rejects_a_broken_config(schema, config):
    broken = json.loads(json.dumps(config))
    broken["variants"]["editquality"]["entrypoint"] = "python3 -m revscoring_server"  # must be a list
    assert not validator(schema).is_valid(broken)


def test_no_key_unknown_to_blubber(schema, config):
    # the schema itself allows any key, so a typo ("entrypont") would pass validation silently
    variant_keys = known_keys(schema, "v4.Variant")
    top_keys = known_keys(schema, "v4.Config")
    assert set(config) <= top_keys
    for name, variant in config["variants"].items():
        assert set(variant) <= variant_keys, name


def test_first_line_selects_the_blubber_buildkit_frontend():
    first = (REPO_ROOT / "blubber.yaml").read_text(encoding="utf-8").splitlines()[0]
    assert first.startswith("# syntax=docker-registry.wikimedia.org/repos/releng/blubber/buildkit:v")


def test_committed_blubber_yaml_is_what_the_generator_writes():
    assert (REPO_ROOT / "blubber.yaml").read_text(encoding="utf-8") == blubber.render_text(), (
        "blubber.yaml is out of date: run `python -m deploy.blubber --write`")


def test_one_production_variant_per_image_of_the_seed_table(config):
    seed_images = {image for row in load_rows() for image in row.images}
    assert set(production_variants(config)) == seed_images | {"ores"}  # ores: ORES's API, no model
    assert TEST_VARIANT in config["variants"]


def dictionaries_tsv():
    table = {}
    for line in (REPO_ROOT / "requirements" / "dictionaries.tsv").read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            language, packages = line.split("\t")[:2]
            table[language] = set(packages.split()) - {"-"}
    return table


def test_each_variant_installs_exactly_the_dictionaries_of_its_wikis(config):
    table = dictionaries_tsv()
    every_dictionary = set().union(*table.values())
    for name in production_variants(config):
        languages = {row.content_language for row in load_rows() if name in row.images and row.is_revscoring}
        expected = set().union(set(), *(table[language] for language in languages))
        installed = set(apt_packages(effective_variant(name, config))) & every_dictionary
        assert installed == expected, name
    # images differ: only editquality serves plwiki, so only it carries the Polish dictionary
    assert "aspell-pl" in apt_packages(effective_variant("editquality", config))
    assert "aspell-pl" not in apt_packages(effective_variant("articlequality", config))


def test_production_variants_run_unprivileged_and_start_their_server(config):
    for name in production_variants(config):
        variant = effective_variant(name, config)
        assert variant["runs"]["insecurely"] is False, name
        assert variant["entrypoint"][1:3] == ["-m", images.image(name).entrypoint[2]], name


def copied_sources(variant):
    """What a variant copies from the build context (not from its build stage)."""
    return [copy["source"] for copy in variant.get("copies", [])
            if isinstance(copy, dict) and copy.get("from") == "local"]


def test_variants_copy_only_their_own_source_folders(config):
    for name in production_variants(config):
        sources = copied_sources(effective_variant(name, config))
        assert all((REPO_ROOT / source).is_dir() for source in sources), name
        # ores reads the revscoring server's service table and runs its ores package
        server = "revscoring/revscoring_server" if images.image(name).revscoring or name == "ores" else \
            "outlink-topic-model/outlink_server"
        assert set(sources) == {"python/wikiserve", server}, name
        for copy in effective_variant(name, config)["copies"]:
            if copy["from"] == "local":
                assert copy["destination"] == f"{LIVES_IN}/{copy['source']}"  # same layout as the repo


def test_requirements_are_pinned_files_and_everything_they_include_is_copied_first(config):
    for name in production_variants(config) + [TEST_VARIANT]:
        steps = builders(build_variant(name, config))
        python = [settings for kind, settings in steps if kind == "python"]
        assert len(python) == 1, name
        bootstrap, top = python[0]["requirements"]
        expected = "requirements/dev.txt" if name == TEST_VARIANT else images.image(name).requirements
        assert (bootstrap, top) == ("requirements/bootstrap.txt", expected), name
        copied_before = [req for kind, settings in steps[: [k for k, _ in steps].index("python")]
                         for req in settings.get("requirements", [])]
        closure = images.requirement_closure(top)
        assert set(closure[1:]) == set(copied_before), name
        assert images.requirement_closure(bootstrap)[1:] == ["requirements/constraints.txt"]
        assert "requirements/constraints.txt" in closure  # every install is pinned
        assert all((REPO_ROOT / path).is_file() for path in closure), name


def test_no_production_image_installs_another_images_requirements(config):
    for name in production_variants(config):
        closure = images.requirement_closure(images.image(name).requirements)
        others = {f"requirements/{other}.txt" for other in production_variants(config) if other != name}
        assert not others & set(closure), name
        assert "requirements/test.txt" not in closure and "requirements/dev.txt" not in closure


def commands(variant):
    return [settings.get("command") for kind, settings in builders(variant) if kind == "custom"]


def test_revscoring_variants_fetch_their_nltk_corpora_at_build(config):
    for name in production_variants(config):
        variant = effective_variant(name, config)
        fetches = [c for c in commands(build_variant(name, config)) if c and "nltk.downloader" in c]
        if not images.image(name).revscoring:
            assert not fetches, name
            continue
        (command,) = fetches
        target = command.index("-d") + 1
        assert command[target] == variant["runs"]["environment"]["NLTK_DATA"]
        corpora = set(command[target + 1:])
        assert "stopwords" in corpora, name  # revscoring's language modules load them at import
        # only draftquality scores sentiment (draftquality.feature_lists.enwiki imports sentiwordnet)
        assert ({"wordnet", "sentiwordnet"} <= corpora) == (name == "draftquality"), name


def test_topic_variant_downloads_every_word_vector_file_drafttopic_loads(config):
    from dev.word_vectors import kv_file_names

    for name in production_variants(config):
        fetch = [c for c in commands(build_variant(name, config))
                 if c and any("fetch_word_vectors.py" in part for part in c)]
        if name != "topic":
            assert not fetch, name
            continue
        assert len(fetch) == 1
        names = [arg for arg in fetch[0] if arg.endswith(".kv")]
        assert sorted(names) == kv_file_names()
        # revscoring looks for `word2vec/<name>` relative to the working directory (= lives.in)
        assert fetch[0][fetch[0].index("--dest") + 1] == f"{LIVES_IN}/word2vec"
        script = Path(fetch[0][1])
        assert (REPO_ROOT / "deploy" / script.name).is_file()


def test_test_variant_runs_the_suite_with_every_dictionary(config):
    variant = effective_variant(TEST_VARIANT, config)
    assert variant["entrypoint"][:2] == ["make", "test"]  # the README's test command
    assert variant["entrypoint"][2] == "VENV=/opt/lib/venv"
    assert set().union(*dictionaries_tsv().values()) <= set(apt_packages(variant))
    assert copied_sources(variant) == ["."]


BUILD_TOOLS_APT = {"g++", "gcc", "python3-dev", "python3-venv", "python3-pip", "build-essential"}


def test_each_image_runs_without_build_tools_and_copies_its_venv_from_its_build_variant(config):
    for name in production_variants(config):
        variant = effective_variant(name, config)
        assert not BUILD_TOOLS_APT & set(apt_packages(variant)), name
        assert "python" not in variant and not builders(variant), name  # nothing is built in the runtime
        (stage,) = copied_from(variant)
        assert stage in config["variants"] and stage != name
        from_stage = {(c["source"], c["destination"]) for c in variant["copies"] if c["from"] == stage}
        assert ("/opt/lib/venv", "/opt/lib/venv") in from_stage, name
        data = {variant["runs"]["environment"].get("NLTK_DATA"), f"{LIVES_IN}/word2vec"}
        assert {source for source, _ in from_stage} - {"/opt/lib/venv"} <= data, name


def test_build_variants_compile_only_where_pip_must_and_leave_no_build_tools_in_the_venv(config):
    for name in production_variants(config):
        stage = build_variant(name, config)
        assert ({"g++", "python3-dev"} <= set(apt_packages(stage))) == bool(images.image(name).compiled), name
        *_, (_, uninstall), (_, prune) = builders(stage)
        pip = ["/opt/lib/venv/bin/python3", "-m", "pip"]
        assert uninstall["command"][:5] == [*pip, "uninstall", "--yes"], name
        assert {"pip", "wheel", "Cython"} <= set(uninstall["command"][5:]), name
        assert prune["command"][:2] == ["find", "/opt/lib/venv"], name  # then the files that never run


def venv_like_tree(root):
    """A few files of each kind a real venv holds (numpy's, pandas', revscoring's, ray's): returns those
    that run, which the cleanup must keep; the others are test suites, C/Cython sources and headers, source
    maps."""
    site = "lib/python3.11/site-packages"
    kept = [f"{site}/numpy/core/_multiarray_umath.cpython-311-x86_64-linux-gnu.so",
            f"{site}/numpy/testing/__init__.py", f"{site}/numpy/testing/__pycache__/__init__.cpython-311.pyc",
            f"{site}/numpy/core/__pycache__/numeric.cpython-311.pyc", f"{site}/pandas/_libs/lib.pyi",
            f"{site}/pandas/_testing/__init__.py", f"{site}/revscoring/features/tests.py",
            f"{site}/ray/dashboard/client/build/static/js/main.js", f"{site}/numpy-1.26.4.dist-info/RECORD",
            "bin/python3"]
    removed = [f"{site}/pandas/tests/frame/test_api.py", f"{site}/tests/__init__.py",
               f"{site}/numpy/core/tests/__pycache__/test_numeric.cpython-311.pyc",
               f"{site}/numpy/core/include/numpy/ndarrayobject.h", f"{site}/numpy/random/_common.pxd",
               f"{site}/uvloop/includes/consts.pxi", f"{site}/uvloop/loop.pyx", f"{site}/uvloop/loop.c",
               f"{site}/ray/dashboard/client/build/static/js/main.js.map", f"{site}/scipy/special/x.cpp"]
    for path in kept + removed:
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_bytes(b"x")
    return set(kept)


def test_the_venv_cleanup_deletes_test_suites_and_sources_and_keeps_what_runs(config, tmp_path):
    """Each build variant's last command, run as written in blubber.yaml on a venv-like tree."""
    kept = venv_like_tree(tmp_path)
    commands = {tuple(builders(build_variant(name, config))[-1][1]["command"])
                for name in production_variants(config)}
    (command,) = commands  # the same in every image
    subprocess.run([part.replace("/opt/lib/venv", str(tmp_path)) for part in command], check=True)
    left = {path.relative_to(tmp_path).as_posix() for path in tmp_path.rglob("*") if path.is_file()}
    assert left == kept
    assert not (tmp_path / "lib/python3.11/site-packages/pandas/tests").exists()
