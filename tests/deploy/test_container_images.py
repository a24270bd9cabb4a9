"""Every image, built for real (podman, from the generated build files) and run as production runs it.

The images are built once per session (`built_images`, tests/deploy/conftest.py; unchanged images are
skipped in seconds). Each test runs an image's container with its manifest's settings (container_runner)
against the local MediaWiki farm and checks: non-root, read-only root with only /tmp writable, the model
read-only at /mnt/models, the manifest's environment and memory limit, ready, one real prediction, a 4xx
for a bad request, and on `podman stop` a drained in-flight request and exit code 0.

MediaWiki is reached through the fault proxy of testkit (it forwards to the real farm) only so that one
request can be held in flight while the container is stopped; every answer is the farm's own.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Iterator

import pytest
from container_runner import Container, from_container, manifest_container, memory_bytes
from testkit.faulty_mediawiki import FaultyMediaWiki

from deploy import images
from deploy.seed_table import load_rows

# One inference service per revscoring image: the one its container serves in the test.
SERVES = {
    "editquality": "enwiki-damaging",
    "articlequality": "enwiki-articlequality",
    "draftquality": "enwiki-draftquality",
    "topic": "enwiki-articletopic",
}
OUTLINK = "outlink-topic-model"
DRAIN_DELAY_S = 3.0  # how long the proxy holds the in-flight request's MediaWiki call
STARTUP_TIMES: dict[str, float] = {}


@pytest.fixture
def mediawiki(farm) -> Iterator[FaultyMediaWiki]:
    proxy = FaultyMediaWiki(upstream=farm.url).start()
    yield proxy
    proxy.stop()


@pytest.fixture
def started() -> Iterator[list[Container]]:
    running: list[Container] = []
    yield running
    for container in running:
        container.remove()


def wiki_entry(manifest: dict, dbname: str) -> dict:
    wikis = manifest.get("wikis", manifest)
    if isinstance(wikis, list):
        return next(entry for entry in wikis if entry["dbname"] == dbname)
    return wikis[dbname]


def manifest_env(isvc: str, image: str, wiki_url: str | None) -> tuple[dict[str, str], str]:
    """The manifest's container environment (STORAGE_URI is the storage initializer's, not the server's)
    with MediaWiki at `wiki_url`, and its memory limit."""
    spec = manifest_container(isvc, image)
    env = {item["name"]: item["value"] for item in spec["env"] if item["name"] != "STORAGE_URI"}
    if wiki_url is not None:
        assert "WIKI_URL" in env, spec
        env["WIKI_URL"] = wiki_url
    return env, spec["resources"]["limits"]["memory"]


def run(image: str, isvc: str, demo_models, started: list, wiki_url: str | None, model: bool = True,
        args: tuple[str, ...] = ()) -> tuple[Container, dict[str, str], str]:
    env, memory = manifest_env(isvc, image, wiki_url)
    container = Container(images.local_tag(image), env, memory, demo_models / isvc if model else None,
                          args=args, label=image)
    started.append(container)
    return container, env, memory


def assert_runs_as_production(container: Container, env: dict[str, str], memory: str, model: bool) -> None:
    config = container.inspect()
    assert container.exec("id", "-u").stdout.strip() == str(images.RUNS_AS[1])
    assert config["HostConfig"]["ReadonlyRootfs"] is True
    # only /tmp is writable: not the application, the venv, the home folder, /var/tmp or the root
    assert container.exec("touch", "/tmp/probe").returncode == 0
    for path in (images.LIVES_IN, images.VENV, f"/home/{images.RUNS_AS[0]}", "/var/tmp", "/"):
        result = container.exec("touch", f"{path.rstrip('/')}/probe")
        assert result.returncode != 0 and "Read-only file system" in result.stderr, (path, result)
    if model:
        (mount,) = [m for m in config["Mounts"] if m["Destination"].startswith("/mnt/models")]
        assert mount["RW"] is False
        assert container.exec("test", "-r", "/mnt/models/model.bin").returncode == 0
        assert "Read-only" in container.exec("touch", "/mnt/models/probe").stderr
    seen = dict(item.split("=", 1) for item in container.exec("env").stdout.splitlines() if "=" in item)
    assert {key: seen.get(key) for key in env} == env
    limit = container.exec("cat", "/sys/fs/cgroup/memory/memory.limit_in_bytes").stdout.strip()
    if not limit:
        limit = container.exec("cat", "/sys/fs/cgroup/memory.max").stdout.strip()
    assert int(limit) == memory_bytes(memory)


def predict_while_stopping(container: Container, model: str, body: dict, proxy: FaultyMediaWiki) -> None:
    """Holds one prediction in flight (its MediaWiki call delayed), stops the container meanwhile: the
    prediction still succeeds, requests after SIGTERM are refused, and the exit code is 0."""
    proxy.clear()
    proxy.inject("delay", delay_s=DRAIN_DELAY_S, times=1)
    result: dict = {}
    thread = threading.Thread(target=lambda: result.update(response=container.predict(model, body)))
    thread.start()
    deadline = time.monotonic() + 10
    while not proxy.requests and time.monotonic() < deadline:
        time.sleep(0.05)
    assert proxy.requests, "the prediction never reached MediaWiki"
    assert container.stop() == 0, container.logs()
    thread.join(60)
    assert result["response"].status_code == 200, result["response"].text
    assert "Shutting down" in container.logs()


def probabilities(node) -> Iterator[dict]:
    if isinstance(node, dict):
        if isinstance(node.get("probability"), dict):
            yield node["probability"]
        for value in node.values():
            yield from probabilities(value)
    elif isinstance(node, list):
        for value in node:
            yield from probabilities(value)


@pytest.mark.slow
@pytest.mark.parametrize("image", sorted(SERVES))
def test_revscoring_image_runs_as_production_runs_it(image, built_images, farm, mediawiki, demo_models,
                                                     started):
    isvc = SERVES[image]
    container, env, memory = run(image, isvc, demo_models, started, from_container(mediawiki.url))
    STARTUP_TIMES[image] = container.wait_ready(isvc)
    assert_runs_as_production(container, env, memory, model=True)
    (row,) = [r for r in load_rows() if r.isvc == isvc]
    rev_id = wiki_entry(farm.manifest, row.dbname)["special"]["good_rev_id"]
    response = container.predict(isvc, {"rev_id": rev_id})
    assert response.status_code == 200, response.text
    body = response.json()
    scores = body[row.dbname]["scores"][str(rev_id)][row.model_type]["score"]
    found = list(probabilities(scores))
    assert found and all(0.0 <= p <= 1.0 for d in found for p in d.values()), body
    if image != "topic":  # topic models are multilabel: independent probabilities
        assert all(math.isclose(sum(d.values()), 1.0, abs_tol=1e-6) for d in found), body
    refused = container.predict(isvc, {"rev_id": "not a number"})
    assert refused.status_code == 400 and "rev_id" in refused.json()["error"], refused.text
    predict_while_stopping(container, isvc, {"rev_id": rev_id}, mediawiki)


@pytest.mark.slow
def test_outlink_transformer_and_predictor_run_as_two_containers(built_images, farm, mediawiki, demo_models,
                                                                 started):
    predictor, env, memory = run("outlink", OUTLINK, demo_models, started, wiki_url=None)
    STARTUP_TIMES["outlink"] = predictor.wait_ready(OUTLINK)
    assert_runs_as_production(predictor, env, memory, model=True)
    transformer, t_env, t_memory = run(
        "outlink-transformer", OUTLINK, demo_models, started, from_container(mediawiki.url), model=False,
        args=(f"--predictor_host={from_container(predictor.url).removeprefix('http://')}",))
    STARTUP_TIMES["outlink-transformer"] = transformer.wait_ready(OUTLINK)
    assert_runs_as_production(transformer, t_env, t_memory, model=False)
    title = wiki_entry(farm.manifest, "enwiki")["special"]["many_links_title"]
    response = transformer.predict(OUTLINK, {"lang": "en", "page_title": title})
    assert response.status_code == 200, response.text
    results = response.json()["prediction"]["results"]
    assert results and all(0.0 <= item["score"] <= 1.0 for item in results), response.text
    refused = transformer.predict(OUTLINK, {"lang": "en"})
    assert refused.status_code == 400 and "page_title" in refused.json()["error"], refused.text
    predict_while_stopping(transformer, OUTLINK, {"lang": "en", "page_title": title}, mediawiki)
    assert predictor.stop() == 0, predictor.logs()
