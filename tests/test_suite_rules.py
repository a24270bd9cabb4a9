"""Rules of the suite itself: a timeout on every HTTP call a test makes, a time limit per test, no quiet
skips. (The suite's own tooling lives in tests/testkit/; this file checks it and the test sources.)"""

from __future__ import annotations

import ast
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from testkit.servers import REPO_ROOT, server_environment

TESTS = REPO_ROOT / "tests"
HTTP_VERBS = {"get", "post", "put", "delete", "head", "patch", "options", "request"}


def _calls_without_timeout(source: str) -> list[str]:
    """Calls of requests.<verb>(), aiohttp.ClientSession(), urlopen() without a `timeout=`."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Call) or any(keyword.arg == "timeout" for keyword in node.keywords):
            continue
        call = ast.unparse(node.func)
        module_call = call.split(".")[0] == "requests" and call.split(".")[-1] in HTTP_VERBS
        if module_call or call.endswith("ClientSession") or (call.endswith("urlopen") and len(node.args) < 3):
            found.append(f"line {node.lineno}: {ast.unparse(node)[:90]}")
    return found


def test_the_timeout_check_finds_a_call_without_one():
    assert _calls_without_timeout("requests.get(url)\nrequests.post(url, timeout=5)\n") == [
        "line 1: requests.get(url)"
    ]
    assert len(_calls_without_timeout("aiohttp.ClientSession()\nurllib.request.urlopen(url)")) == 2


def test_every_http_call_in_the_tests_has_a_timeout():
    missing = {
        str(path.relative_to(REPO_ROOT)): found
        for path in sorted(TESTS.rglob("*.py"))
        if (found := _calls_without_timeout(path.read_text()))
    }
    assert not missing, missing


def test_every_test_has_a_time_limit():
    options = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]
    assert 0 < int(options["timeout"]) <= 900
    import pytest_timeout  # noqa: F401 - the plugin enforcing it is installed (requirements/test.txt)


def _run_pytest(tmp_path: Path, body: str) -> subprocess.CompletedProcess:
    (tmp_path / "test_sample.py").write_text(f"import pytest\n\n{body}")
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "testkit.skip_guard", "-p", "no:cacheprovider", "-q",
         "-c", "/dev/null", str(tmp_path)],
        env=server_environment({}), cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )


@pytest.mark.parametrize(
    "body, code",
    [
        ("def test_a():\n    pytest.skip('not written yet')\n", 1),
        ("@pytest.mark.skipif(True, reason='quiet')\ndef test_a():\n    pass\n", 1),
        ("def test_a():\n    pytest.skip('absent: no /dev/kvm on this machine')\n", 0),
        ("def test_a():\n    pass\n", 0),
    ],
    ids=["skip-in-test", "skipif", "real-absence", "no-skip"],
)
def test_a_quiet_skip_fails_the_run_and_every_reason_is_printed(tmp_path, body, code):
    result = _run_pytest(tmp_path, body)
    assert result.returncode == code, result.stdout + result.stderr
    if "skip" in body:
        reason = body.split("'")[1]
        assert reason in result.stdout.split("skipped tests")[-1], result.stdout
