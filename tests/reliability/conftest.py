"""Fixtures of the reliability suite: one server of each kind, all reading MediaWiki through a fault proxy.

The three servers (revscoring `enwiki-damaging`, the outlink predictor, the outlink transformer in front of
that predictor) are started once per session, together, and shared by every test that does not kill them.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from reliability_kit import (
    MODEL_OF,
    REVSCORING_ISVC,
    HttpsEventReceiver,
    RecordingProxy,
    good,
    predictor_spec,
    revscoring_spec,
    self_signed_certificate,
    start_processes,
    transformer_spec,
)
from testkit.servers import ServerProcess

EVENT_STREAM = "reliability.revision-score"
HERE = Path(__file__).resolve().parent
_SESSION_SERVERS: list[ServerProcess] = []


def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> None:
    """Session servers are stopped as soon as the last test of this folder is done, not at the very end of
    the run: the rest of the suite then has the machine's cores and memory to itself."""
    if nextitem is None or HERE not in Path(nextitem.path).resolve().parents:
        while _SESSION_SERVERS:
            _SESSION_SERVERS.pop().stop()


@pytest.fixture(scope="session")
def model_paths(demo_models: Path) -> dict[str, Path]:
    paths = {
        "revscoring": demo_models / REVSCORING_ISVC / "model.bin",
        "outlink": demo_models / "outlink-topic-model" / "model.bin",
    }
    missing = [str(path) for path in paths.values() if not path.is_file()]
    if missing:
        pytest.fail(f"Demo models missing: {missing}; run `make models`.")
    return paths


@pytest.fixture(scope="session")
def proxy(farm: Any) -> Iterator[RecordingProxy]:
    started = RecordingProxy(farm.url).start()
    yield started
    started.stop()


@pytest.fixture(autouse=True)
def _clean_proxy(request: pytest.FixtureRequest) -> Iterator[None]:
    """No fault outlives the test that injected it."""
    if "proxy" not in request.fixturenames:
        yield
        return
    proxy = request.getfixturevalue("proxy")
    proxy.clear()
    yield
    proxy.clear()


@pytest.fixture(scope="session")
def certificate(tmp_path_factory: pytest.TempPathFactory):
    return self_signed_certificate(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="session")
def eventgate(certificate) -> Iterator[HttpsEventReceiver]:
    receiver = HttpsEventReceiver(certificate)
    yield receiver
    receiver.close()


@pytest.fixture(scope="session")
def servers(
    proxy: RecordingProxy, model_paths: dict[str, Path], eventgate: HttpsEventReceiver, certificate
) -> Iterator[dict[str, ServerProcess]]:
    """revscoring (events to the HTTPS EventGate, trusting its CA bundle), predictor, transformer."""
    revscoring = revscoring_spec(
        "rel-revscoring",
        model_paths["revscoring"],
        proxy.url,
        EVENTGATE_URL=eventgate.url,
        EVENTGATE_STREAM=EVENT_STREAM,
        EVENTGATE_CA_BUNDLE=str(certificate.cert_path),
    )
    predictor = predictor_spec("rel-predictor", model_paths["outlink"], proxy.url)
    transformer = transformer_spec("rel-transformer", predictor[4], proxy.url)
    started = start_processes([revscoring, predictor, transformer])
    _SESSION_SERVERS.extend(started)
    yield dict(zip(("revscoring", "predictor", "transformer"), started, strict=True))
    for server in reversed(started):
        server.stop()


@pytest.fixture(scope="session")
def enwiki(farm: Any) -> dict[str, Any]:
    return farm.manifest["enwiki"]


@pytest.fixture(scope="session")
def baseline(servers: dict[str, ServerProcess], enwiki: dict[str, Any]) -> dict[str, Any]:
    """Each server's answer to a good request, taken once, before any bad input or fault was sent."""
    answers = {}
    for kind, server in servers.items():
        response = server.predict(MODEL_OF[kind], good(kind, enwiki))
        assert response.status_code == 200, response.text
        answers[kind] = response.json()
    return answers
