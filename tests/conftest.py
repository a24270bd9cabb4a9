"""Fixtures shared by the whole suite: the MediaWiki farm (started once per session) and the demo models."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
MODELS_DIR = Path(os.environ.get("MODELS_DIR", REPO_ROOT / "models"))


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "slow: slower end-to-end tests (CI runs them; deselect with -m 'not slow')"
    )


@pytest.fixture(scope="session")
def farm() -> Iterator[object]:
    """The local MediaWiki farm (`.url`, `.manifest`), set up if needed, stopped at the end.

    It listens on a free port rather than 8180, so the suite can run while `make wiki` or `make run` is up.
    """
    from testkit.servers import free_port

    from dev.mediawiki_farm import running_farm

    with running_farm(port=free_port()) as handle:
        yield handle


@pytest.fixture(scope="session")
def demo_models() -> Path:
    """The folder holding models/<isvc>/model.bin, built by `make models` before the suite runs."""
    missing = [p for p in (MODELS_DIR / "outlink-topic-model" / "model.bin",) if not p.exists()]
    if missing:
        pytest.fail(f"Demo models are missing ({missing[0]}): run `make models` (make test does it for you).")
    return MODELS_DIR


@pytest.fixture(scope="session")
def event_receiver() -> Iterator[object]:
    """A local stand-in for EventGate recording the events the servers post (see testkit.event_receiver)."""
    from testkit.event_receiver import EventReceiver

    receiver = EventReceiver()
    yield receiver
    receiver.close()
