"""Fixtures for the outlink topic model tests: the predictor and the transformer chain, once per session."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from outlink_testing import (
    EVENT_STREAM,
    MODEL_NAME,
    Reference,
    predictor_spec,
    start_servers,
    transformer_spec,
)
from testkit.faulty_mediawiki import FaultyMediaWiki
from testkit.servers import ServerProcess, free_port


@pytest.fixture(scope="session")
def outlink_model(demo_models: Path) -> Path:
    return demo_models / MODEL_NAME / "model.bin"


@pytest.fixture(scope="session")
def reference(farm, outlink_model: Path) -> Reference:
    return Reference(farm.url, outlink_model)


@pytest.fixture(scope="session")
def enwiki(farm) -> dict[str, Any]:
    return farm.manifest["enwiki"]


@pytest.fixture(scope="session")
def page_without_outlinks(farm, reference: Reference) -> str:
    """An existing enwiki article that links to no article with a Wikidata item (found, not assumed)."""
    doc = reference.get("en.wikipedia.org", action="query", list="allpages", apnamespace=0, aplimit="max")
    for entry in doc["query"]["allpages"]:
        if not reference.page_qids("en.wikipedia.org", entry["title"]):
            return entry["title"]
    pytest.fail("The farm's enwiki has no article without outlinks (MediaWiki's 'Main Page' usually is one).")


@pytest.fixture(scope="session")
def no_fasttext_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("no-fasttext")


@pytest.fixture(scope="session")
def predictor_grpc_port() -> int:
    """The port of the session predictor's V2 gRPC service."""
    return free_port()


@pytest.fixture(scope="session")
def outlink_servers(farm, outlink_model: Path, no_fasttext_dir: Path, event_receiver,
                    predictor_grpc_port: int) -> Iterator[dict[str, ServerProcess]]:
    """The predictor alone, and the transformer -> predictor chain, shared by the whole session.

    Both post events to the local EventGate stand-in: the predictor for events sent to it, the transformer for
    events sent to it (it checks them and asks the predictor only for scores); the predictor also serves V2
    gRPC."""
    eventgate = {"EVENTGATE_URL": event_receiver.url, "EVENTGATE_STREAM": EVENT_STREAM}
    predictor_port = free_port()
    predictor, transformer = start_servers([
        predictor_spec(farm.url, outlink_model, predictor_port, GRPC_PORT=str(predictor_grpc_port),
                       **eventgate),
        transformer_spec(farm.url, f"127.0.0.1:{predictor_port}", no_fasttext_dir, free_port(), **eventgate),
    ])
    yield {"predictor": predictor, "transformer": transformer}
    for server in (transformer, predictor):
        server.stop()


@pytest.fixture(params=["predictor", "transformer"])
def server(request: pytest.FixtureRequest, outlink_servers: dict[str, ServerProcess]) -> ServerProcess:
    """Each integration test runs against the predictor alone and against the transformer chain."""
    return outlink_servers[request.param]


@pytest.fixture(scope="session")
def faulty_mediawiki(farm) -> Iterator[FaultyMediaWiki]:
    proxy = FaultyMediaWiki(farm.url).start()
    yield proxy
    proxy.stop()
