"""deploy/containers.py: the project's podman configuration, the build context, the local base image and the
pristine-container runner the fresh-machine check uses."""

from __future__ import annotations

import resource
import subprocess
import tomllib

import pytest

from deploy import containers, images
from deploy.seed_table import REPO_ROOT


def test_podman_uses_runc_and_ulimits_it_may_set_and_storage_under_state():
    env = containers.podman_env()
    conf = tomllib.loads(open(env["CONTAINERS_CONF"], encoding="utf-8").read())
    assert conf["engine"]["runtime"] == "runc"
    limits = dict(item.split("=", 1) for item in conf["containers"]["default_ulimits"])
    for name, kind in (("nofile", resource.RLIMIT_NOFILE), ("nproc", resource.RLIMIT_NPROC)):
        soft, hard = (int(v) for v in limits[name].split(":"))
        assert soft == hard and (resource.getrlimit(kind)[1] == resource.RLIM_INFINITY
                                 or hard <= resource.getrlimit(kind)[1])
    storage = tomllib.loads(open(env["CONTAINERS_STORAGE_CONF"], encoding="utf-8").read())["storage"]
    assert storage["graphroot"].startswith(str(REPO_ROOT / ".state"))
    info = containers.run_engine(["info", "--format", "{{.Store.GraphRoot}} {{.Host.OCIRuntime.Name}}"],
                                 capture=True, timeout_s=60).stdout.split()
    assert info == [storage["graphroot"], "runc"]


def test_staged_context_holds_what_builds_read_and_never_hard_links_shared_data(tmp_path):
    context = containers.stage_context(images.IMAGES, tmp_path / "context")
    assert (context / "wheelhouse" / ".stamp").exists()
    assert (context / "word2vec").is_dir() and (context / "requirements" / "constraints.txt").exists()
    assert not list(context.rglob("__pycache__"))
    corpus = context / "nltk_data" / "corpora" / "stopwords"
    # NLTK refuses to open a corpus file whose link count is above one: staging must copy, not link
    assert all(path.stat().st_nlink == 1 for path in corpus.rglob("*") if path.is_file())
    assert sorted(p.name for p in (context / "nltk_data" / "corpora").iterdir()) == sorted(
        {corpus for spec in images.IMAGES for corpus in spec.nltk_corpora})


@pytest.mark.slow
def test_base_image_is_debian_bookworm_under_the_production_name_and_built_once():
    containers.ensure_base()
    assert containers.ensure_base() is False  # present: skipped
    result = containers.run_in_base(["bash", "-c", "cat /etc/debian_version; ls /src/Makefile; id -u"])
    assert result.returncode == 0, result.stderr
    version, makefile, uid = result.stdout.split()
    assert version.startswith("12.") and makefile == "/src/Makefile" and uid == "0"


@pytest.mark.slow
def test_pristine_container_is_fresh_each_time_and_the_repository_read_only():
    first = containers.run_in_base(["bash", "-c", "touch /marker && touch /src/marker"])
    assert first.returncode != 0 and "Read-only file system" in first.stderr
    second = containers.run_in_base(["test", "-e", "/marker"])
    assert second.returncode == 1  # nothing survives from the earlier container
    assert not (REPO_ROOT / "marker").exists()


def test_make_image_without_a_name_says_how_to_call_it():
    result = subprocess.run(["make", "-s", "image", "IMAGE="], cwd=REPO_ROOT, capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 2 and "IMAGE=<name>" in result.stderr
