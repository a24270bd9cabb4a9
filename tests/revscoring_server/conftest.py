"""Fixtures for the revscoring server tests: tiny real revscoring models and MediaWiki API documents.

The tiny models are real `revscoring` GradientBoosting classifiers trained on a handful of made-up
observations; they use the same kinds of features as production (parent text, user info, comment), so
the fetch -> cache -> extraction path is exercised for real without building the demo models.
"""

from __future__ import annotations

import contextlib
import json
import random
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from revscoring.features import revision_oriented, temporal
from revscoring.features import wikitext as wikitext_features
from revscoring.features.modifiers import log
from revscoring.scoring.models import GradientBoosting
from revscoring_testdata import EVENT_STREAM, EVENTGATE_TIMEOUT_S
from testkit.servers import ServerProcess, start_server

from dev.seed_table import revscoring_rows

# Features needing the revision text, the parent's text, the user's account and the comment.
EDIT_FEATURES = [
    wikitext_features.revision.chars,
    log(wikitext_features.revision.chars + 1),
    wikitext_features.revision.parent.chars,
    wikitext_features.revision.diff.chars_added,
    temporal.revision.user.seconds_since_registration,
    revision_oriented.revision.user.is_anon,
    revision_oriented.revision.comment_matches(r"lol|stupid", name="tests.comment_is_rude"),
]
TEXT_FEATURES = [
    wikitext_features.revision.chars,
    wikitext_features.revision.wikilinks,
    wikitext_features.revision.headings,
]
CLASSES = ["Stub", "Start", "B"]
TOPICS = ["STEM.Physics", "Culture.Media", "History_and_Society.History"]


def _observations(features: list, labels: list[Any], count: int = 40) -> list[tuple[list, Any]]:
    rng = random.Random(7)

    def value(feature: Any) -> Any:
        if feature.returns is bool:
            return rng.random() < 0.5
        if feature.returns is int:
            return rng.randint(0, 50)
        return rng.random() * 100

    return [([value(feature) for feature in features], labels[index % len(labels)]) for index in range(count)]


def _train(
    path: Path, features: list, labels: list, multilabel: bool = False, targets: list | None = None
) -> Path:
    model = GradientBoosting(features, labels=labels, multilabel=multilabel, version="1.2.3", n_estimators=5)
    model.train(_observations(features, targets or labels))
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as handle:
        model.dump(handle)
    return path


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Paths of tiny models: "binary" (edit-quality-like), "multiclass", "multilabel"."""
    root = tmp_path_factory.mktemp("tiny-models")
    topic_sets = [[TOPICS[0]], [TOPICS[1], TOPICS[2]], [TOPICS[2]], [TOPICS[0], TOPICS[1]]]
    return {
        "binary": _train(root / "binary" / "model.bin", EDIT_FEATURES, [True, False]),
        "multiclass": _train(root / "multiclass" / "model.bin", TEXT_FEATURES, CLASSES),
        "multilabel": _train(
            root / "multilabel" / "model.bin", TEXT_FEATURES, TOPICS, multilabel=True, targets=topic_sets
        ),
    }


class EventReceiver:
    """A real local HTTP endpoint standing in for EventGate: records POSTed event batches.

    Set `status` to make it refuse events (e.g. 500), `hang_s` to make it answer late, or use `refusing()` to
    close its port, to check that predictions do not depend on it.
    """

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.status = 201
        self.hang_s = 0.0
        self.port = 0
        self._listen()
        self.url = f"http://127.0.0.1:{self.port}/v1/events"

    def _listen(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                time.sleep(receiver.hang_s)
                if receiver.status < 300:
                    receiver.events.extend(json.loads(body))
                self.send_response(receiver.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        class Server(ThreadingHTTPServer):
            daemon_threads = True  # a hanging answer must not hold up closing the receiver

        self.server = Server(("127.0.0.1", self.port), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @contextlib.contextmanager
    def refusing(self) -> Iterator[None]:
        """EventGate unreachable: nothing listens on its port until the block ends."""
        self.close()
        try:
            yield
        finally:
            self._listen()

    def wait_for(self, rev_id: int, timeout_s: float = 10.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for event in self.events:
                if event.get("rev_id") == rev_id:
                    return event
            time.sleep(0.05)
        raise AssertionError(f"no event for rev_id {rev_id} received; got {self.events}")

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="session")
def event_receiver() -> Iterator[EventReceiver]:
    receiver = EventReceiver()
    yield receiver
    receiver.close()


@pytest.fixture(scope="session")
def revscoring_all(farm: Any, demo_models: Path, event_receiver: EventReceiver) -> Iterator[ServerProcess]:
    """ONE real server process serving all 110 revscoring services (the demo models) against the farm."""
    isvcs = [row.isvc for row in revscoring_rows()]
    missing = [isvc for isvc in isvcs if not (demo_models / isvc / "model.bin").exists()]
    if missing:
        pytest.fail(f"demo models missing for {missing[:5]}...: run `make models`")
    env = {
        "WIKI_URL": farm.url,
        "EVENTGATE_URL": event_receiver.url,
        "EVENTGATE_STREAM": EVENT_STREAM,
        "EVENTGATE_TIMEOUT_S": str(EVENTGATE_TIMEOUT_S),
        "LOG_LEVEL": "INFO",
    }
    args = ["revscoring_server", f"--models_dir={demo_models}", *[f"--isvc={isvc}" for isvc in isvcs]]
    server = start_server("revscoring-all", args, env, [isvcs[0], isvcs[-1]], timeout_s=300)
    yield server
    assert server.stop() == 0, server.log_tail()
