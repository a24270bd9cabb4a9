"""The real ORES client (PyPI `ores`, `ores.api.Session`), run unchanged from its own venv.

`ores` is ORES's whole server package; its declared dependencies cannot be installed beside this project's
pins (requirements/ores-client.txt says why), so it lives in `.state/ores-client`, installed with
`--no-deps` from the pinned list, and the tests talk to it through a subprocess: JSON in, JSON out.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]
VENV = REPO_ROOT / ".state" / "ores-client"
REQUIREMENTS = REPO_ROOT / "requirements" / "ores-client.txt"
CONSTRAINTS = REPO_ROOT / "requirements" / "constraints.txt"

# Runs inside the client's venv: scores the revisions with ores.api.Session, prints one JSON list.
_CLIENT_SCRIPT = """
import json, sys
from ores import api
request = json.loads(sys.stdin.read())
session = api.Session(request["host"], user_agent="lift-wing ORES API tests")
print(json.dumps(list(session.score(request["context"], request["models"], request["revids"]))))
"""


def ensure_client_venv() -> Path:
    """The venv's python, (re)built when the pinned list changed."""
    stamp = VENV / ".installed"
    digest = hashlib.sha256(REQUIREMENTS.read_bytes() + CONSTRAINTS.read_bytes()).hexdigest()
    python = VENV / "bin" / "python"
    if stamp.exists() and stamp.read_text() == digest and python.exists():
        return python
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(VENV)], check=True)
    subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", "--no-deps", "-r", str(REQUIREMENTS)],
        check=True,
        env=_pip_env(),
        cwd=REQUIREMENTS.parent,
    )
    stamp.write_text(digest)
    return python


def _pip_env() -> dict[str, str]:
    """As the Makefile's pip: PyPI and the pins only, no machine-wide pip configuration."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("PIP_")}
    return {**env, "PIP_CONFIG_FILE": "/dev/null", "PIP_DISABLE_PIP_VERSION_CHECK": "1"}


def ores_client_score(
    python: Path, host: str, context: str, models: list[str], revids: list[int], timeout_s: float = 600
) -> list[dict[str, Any]]:
    """`list(ores.api.Session(host).score(context, models, revids))`, from the real client."""
    request = json.dumps({"host": host, "context": context, "models": models, "revids": revids})
    done = subprocess.run(
        [str(python), "-c", _CLIENT_SCRIPT],
        input=request,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )
    if done.returncode != 0:
        raise AssertionError(f"ores client failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return json.loads(done.stdout)
