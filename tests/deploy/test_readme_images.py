"""The README's "Run an image locally" commands, run as written (bash, from the repository root).

Only the two ports come from the test, through the variables the block itself reads (PORT, WIKI_PORT):
the server gets a free port and MediaWiki is the session's farm, not `make wiki` on 8180.
"""

from __future__ import annotations

import json
import os
import re
import subprocess

import pytest
from container_runner import podman
from testkit.servers import free_port

from deploy.seed_table import REPO_ROOT

SECTION = "### Run an image locally"


def readme_block() -> str:
    text = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    section = text[text.index(SECTION):]
    match = re.search(r"```sh\n(.*?)```", section, re.S)
    assert match, "no ```sh block in the README's run-an-image section"
    return match.group(1)


def test_the_block_builds_runs_and_asks_the_image_documented():
    block = readme_block()
    assert "make image IMAGE=editquality" in block and "podman run" in block and "curl" in block
    assert ":/mnt/models/model.bin:ro" in block and "--read-only" in block


@pytest.mark.slow
def test_readme_commands_build_run_and_score_as_written(built_images, farm):
    env = {**os.environ, "PORT": str(free_port()), "WIKI_PORT": str(farm.port)}
    podman("rm", "-f", "lift-wing-editquality", check=False)
    try:
        result = subprocess.run(["bash", "-euo", "pipefail", "-c", readme_block()], cwd=REPO_ROOT, env=env,
                                capture_output=True, text=True, timeout=900)
    finally:
        podman("rm", "-f", "lift-wing-editquality", check=False)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    # the curl's answer is the one JSON document of the output (curl prints no newline after it)
    answer, _ = json.JSONDecoder().raw_decode(result.stdout[result.stdout.index('{"'):])
    score = answer["enwiki"]["scores"]["73"]["damaging"]["score"]
    assert isinstance(score["prediction"], bool)
    assert abs(sum(score["probability"].values()) - 1.0) < 1e-6
