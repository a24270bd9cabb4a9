"""Start-up: a bad name or binary stops the process with a clear message and a non-zero exit."""

from __future__ import annotations

import bz2
import logging
import os
import subprocess
import sys

import pytest
from testkit.servers import REPO_ROOT, free_port

import revscoring_server.__main__ as entrypoint


def test_the_image_entrypoint_exits_non_zero_on_a_corrupt_binary(tmp_path):
    corrupt = tmp_path / "model.bin"
    corrupt.write_bytes(b"definitely not a pickle")
    env = {**os.environ, "INFERENCE_NAME": "enwiki-damaging", "MODEL_PATH": str(corrupt)}
    result = subprocess.run(
        [sys.executable, "-m", "revscoring_server", f"--http_port={free_port()}"],
        env=env,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == entrypoint.EXIT_BAD_CONFIG, result.stdout + result.stderr
    assert "Cannot start" in result.stderr and "could not be read as a revscoring model" in result.stderr


@pytest.fixture
def run_main(monkeypatch, caplog):
    """Runs the entrypoint's main() in-process; a bad configuration must return before serve()."""
    monkeypatch.setattr(entrypoint, "configure_logging", lambda *args: None)
    monkeypatch.setattr(
        entrypoint, "serve", lambda *args, **kwargs: pytest.fail("a bad configuration reached serve()")
    )

    def run(argv: list[str], env: dict[str, str]) -> tuple[int, str]:
        caplog.clear()
        with caplog.at_level(logging.ERROR, logger="revscoring_server"):
            code = entrypoint.main(argv, env)
        return code, caplog.text

    return run


@pytest.mark.parametrize(
    "env, message",
    [
        ({}, "No inference service name: set INFERENCE_NAME"),
        ({"INFERENCE_NAME": "enwiki-nonsense"}, "Unknown inference service name 'enwiki-nonsense'"),
        ({"INFERENCE_NAME": "dewiki-reverted"}, "there is no reverted model for 'dewiki'"),
        ({"INFERENCE_NAME": "enwiki-damaging", "MODEL_PATH": "/nonexistent/model.bin"}, "does not exist"),
    ],
)
def test_bad_names_and_missing_binaries_exit_non_zero(run_main, env, message):
    code, log = run_main([], env)
    assert code == entrypoint.EXIT_BAD_CONFIG
    assert "Cannot start" in log and message in log


def test_a_binary_of_the_wrong_type_exits_non_zero(run_main, tiny_models):
    code, log = run_main(
        [], {"INFERENCE_NAME": "enwiki-drafttopic", "MODEL_PATH": str(tiny_models["binary"])}
    )
    assert code == entrypoint.EXIT_BAD_CONFIG and "does not fit a multilabel model type" in log
    code, log = run_main(
        [], {"INFERENCE_NAME": "enwiki-articlequality", "MODEL_PATH": str(tiny_models["binary"])}
    )
    assert code == entrypoint.EXIT_BAD_CONFIG and "does not fit a multiclass model type" in log


def test_several_services_load_from_a_models_dir_and_one_bad_one_stops_all(
    run_main, tiny_models, monkeypatch
):
    served = []
    monkeypatch.setattr(
        entrypoint, "serve", lambda models, settings, **kwargs: served.append((models, settings))
    )
    models_dir = tiny_models["binary"].parent.parent  # <root>/binary/model.bin -> <root>
    (models_dir / "enwiki-damaging").mkdir(exist_ok=True)
    (models_dir / "enwiki-damaging" / "model.bin").write_bytes(tiny_models["binary"].read_bytes())
    code, _ = run_main([f"--models_dir={models_dir}", "--isvc=enwiki-damaging", "--http_port=9999"], {})
    assert code == 0
    [(models, settings)] = served
    assert [model.name for model in models] == ["enwiki-damaging"] and settings.http_port == 9999
    code, log = run_main(
        [f"--models_dir={models_dir}", "--isvc=enwiki-damaging", "--isvc=frwiki-damaging"], {}
    )
    assert code == entrypoint.EXIT_BAD_CONFIG and "frwiki-damaging/model.bin does not exist" in log


def _serving(monkeypatch) -> list:
    served: list = []
    monkeypatch.setattr(entrypoint, "serve", lambda models, settings, **kwargs: served.append(models))
    return served


@pytest.mark.parametrize("name", ["model.bin", "enwiki.damaging.gradient_boosting.model"])
def test_a_bzip2_binary_is_recognised_by_content_whatever_its_name(run_main, tiny_models, monkeypatch,
                                                                   tmp_path, name):
    served = _serving(monkeypatch)
    (tmp_path / name).write_bytes(bz2.compress(tiny_models["binary"].read_bytes()))
    code, log = run_main([], {"INFERENCE_NAME": "enwiki-damaging", "MODEL_PATH": str(tmp_path)})
    assert code == 0, log
    [[model]] = served
    assert model.model_path == str(tmp_path / name) and model.version == "1.2.3"


def test_several_files_in_the_model_folder_stop_start_up_with_a_list(run_main, tiny_models, tmp_path):
    for name in ("model.bin", "model.bz2"):
        (tmp_path / name).write_bytes(tiny_models["binary"].read_bytes())
    code, log = run_main([], {"INFERENCE_NAME": "enwiki-damaging", "MODEL_PATH": str(tmp_path)})
    assert code == entrypoint.EXIT_BAD_CONFIG
    assert "Several model files" in log and "model.bin, model.bz2" in log


def test_an_empty_model_folder_stops_start_up(run_main, tmp_path):
    code, log = run_main([], {"INFERENCE_NAME": "enwiki-damaging", "MODEL_PATH": str(tmp_path)})
    assert code == entrypoint.EXIT_BAD_CONFIG and "No model file in" in log
