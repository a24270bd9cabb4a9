"""Every server entrypoint checks its whole environment at start-up: a bad value stops it with exit code 2
(documented in README.md and docs/) and one line naming each bad variable, before it loads a model or
listens; never a traceback."""

from __future__ import annotations

import subprocess
import sys

import pytest
from testkit.servers import REPO_ROOT, free_port, server_environment

EXIT_BAD_CONFIG = 2  # the documented code, written out: not read from the code under test

# Per entrypoint, every variable of that family set to a bad value at once (the shared core's too).
SHARED_BAD = {
    "MAX_BODY_BYTES": "0", "LOG_LEVEL": "LOUD", "MEDIAWIKI_TIMEOUT_S": "-1", "SHUTDOWN_GRACE_S": "-3"
}
ENTRYPOINTS = {
    "revscoring": (
        ["revscoring_server"],
        {
            "INFERENCE_NAME": "enwiki-damaging",
            "EXTRACTION_WORKERS": "two",
            "HEAVY_REVISION_BYTES": "-1",
            "EXTRACTION_NICE": "-4",
            "HEAVY_EXTRACTION_NICE": "25",
        },
    ),
    "predictor": (["outlink_server.predictor"], {"OUTLINK_LINKS_PER_CALL": "9999"}),
    "transformer": (
        ["outlink_server.transformer", "--predictor_host=127.0.0.1:9"],
        {"PREDICTOR_TIMEOUT_S": "-10", "EVENTGATE_TIMEOUT_S": "0"},
    ),
}


def _start(module_args: list[str], env: dict[str, str], tmp_path) -> subprocess.CompletedProcess:
    # A model path that exists only as a marker: the server must stop before it tries to read it.
    model = tmp_path / "never-read.bin"
    argv = [sys.executable, "-m", *module_args, f"--http_port={free_port()}"]
    return subprocess.run(
        argv,
        env=server_environment({"MODEL_PATH": str(model), **env}),
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize("entrypoint", sorted(ENTRYPOINTS))
def test_bad_settings_stop_the_server_with_exit_code_2_naming_each_variable(entrypoint, tmp_path):
    module_args, family_bad = ENTRYPOINTS[entrypoint]
    bad = {**SHARED_BAD, **family_bad}
    result = _start(module_args, bad, tmp_path)
    output = result.stdout + result.stderr
    assert result.returncode == EXIT_BAD_CONFIG, output
    assert "Traceback" not in output, output
    named = [name for name in bad if name != "INFERENCE_NAME"]
    assert all(f"{name} must" in result.stderr for name in named), result.stderr
    assert "never-read.bin" not in output  # refused before any model was looked at
