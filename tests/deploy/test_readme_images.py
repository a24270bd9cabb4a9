"""The README's "Run an image locally" commands, run as written (bash, from the repository root).

Only the two ports come from the test, through the variables the blocks themselves read (PORT, WIKI_PORT):
the server gets a free port and MediaWiki is the session's farm, not `make wiki` on 8180. The podman block
builds the image; the Docker block runs it with the real Docker CLI, which talks to podman's Docker API
(`podman system service`, as the README says to do without a Docker daemon).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from container_runner import podman
from testkit.servers import free_port

from deploy import containers
from deploy.seed_table import REPO_ROOT

SECTION = "### Run an image locally"
CONTAINER_NAME = "lift-wing-editquality"  # both blocks use it


def readme_blocks() -> list[str]:
    text = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    section = text[text.index(SECTION):]
    section = section[: section.index("\n## ")]
    return re.findall(r"```sh\n(.*?)```", section, re.S)


def podman_block() -> str:
    (block,) = [b for b in readme_blocks() if "podman run" in b]
    return block


def docker_block() -> str:
    (block,) = [b for b in readme_blocks() if "docker run" in b]
    return block


def test_the_blocks_build_run_and_ask_the_image_documented():
    block = podman_block()
    assert "make image IMAGE=editquality" in block and "podman run" in block and "curl" in block
    assert ":/mnt/models/model.bin:ro" in block and "--read-only" in block
    block = docker_block()
    assert "docker run" in block and "podman" not in block and "curl" in block
    assert ":/mnt/models/model.bin:ro" in block and "--read-only" in block and "--memory 2g" in block


def run_block(block: str, env: dict[str, str]) -> dict:
    """Runs a README block; returns the curl's answer: the one JSON document of the output (curl prints no
    newline after it)."""
    podman("rm", "-f", CONTAINER_NAME, check=False)
    try:
        result = subprocess.run(["bash", "-euo", "pipefail", "-c", block], cwd=REPO_ROOT, env=env,
                                capture_output=True, text=True, timeout=900)
    finally:
        podman("rm", "-f", CONTAINER_NAME, check=False)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    answer, _ = json.JSONDecoder().raw_decode(result.stdout[result.stdout.index('{"'):])
    return answer


def assert_a_damaging_score(answer: dict) -> None:
    score = answer["enwiki"]["scores"]["73"]["damaging"]["score"]
    assert isinstance(score["prediction"], bool)
    assert abs(sum(score["probability"].values()) - 1.0) < 1e-6


@pytest.fixture
def docker_api() -> Iterator[str]:
    """podman's Docker-compatible API on a socket of its own; DOCKER_HOST's value."""
    with tempfile.TemporaryDirectory(prefix="docker-api-") as folder:
        socket = Path(folder) / "docker.sock"
        service = subprocess.Popen(["podman", "system", "service", "--time=0", f"unix://{socket}"],
                                   env=containers.podman_env(), stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 30
            while not socket.exists() and time.monotonic() < deadline:
                time.sleep(0.1)
            assert socket.exists(), "podman system service did not open its socket"
            yield f"unix://{socket}"
        finally:
            service.terminate()
            service.wait(30)


@pytest.mark.slow
def test_readme_podman_commands_build_run_and_score_as_written(built_images, farm):
    env = {**os.environ, "PORT": str(free_port()), "WIKI_PORT": str(farm.port)}
    assert_a_damaging_score(run_block(podman_block(), env))


@pytest.mark.slow
def test_readme_docker_commands_run_and_score_as_written(built_images, farm, docker_api):
    if shutil.which("docker") is None:
        pytest.skip("absent: no Docker CLI on PATH (this kind of machine has one; the project installs none)")
    env = {**os.environ, "PORT": str(free_port()), "WIKI_PORT": str(farm.port), "DOCKER_HOST": docker_api}
    version = subprocess.run(["docker", "version", "--format", "{{.Server.Version}}"], env=env,
                             capture_output=True, text=True, timeout=60)
    assert version.returncode == 0, version.stderr  # the real Docker CLI, answered by podman's API
    assert_a_damaging_score(run_block(docker_block(), env))
