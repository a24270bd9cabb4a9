"""Every image, built for real (podman, from the generated build files) and run as production runs it.

The images are built once per session (`built_images`, tests/deploy/conftest.py; unchanged images are
skipped in seconds). Each test runs an image's container with its manifest's settings (container_runner)
against the local MediaWiki farm and checks: non-root, read-only root with only /tmp writable, the model
read-only at /mnt/models, the manifest's environment and memory limit, ready, one real prediction, a 4xx
for a bad request, and on `podman stop` a drained in-flight request and exit code 0. The outlink pair also
posts its topic event and answers V2 over REST and gRPC; the `ores` image answers ORES's API in front of a
model image's container.

MediaWiki is reached through the fault proxy of testkit (it forwards to the real farm) only so that one
request can be held in flight while the container is stopped; every answer is the farm's own.
"""

from __future__ import annotations

import json
import math
import threading
import time
import uuid
from collections.abc import Callable, Iterator

import grpc
import jsonschema
import pytest
import requests
from container_runner import Container, from_container, manifest_container, memory_bytes
from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb
from kserve.protocol.grpc.grpc_predict_v2_pb2_grpc import GRPCInferenceServiceStub
from testkit.faulty_mediawiki import FaultyMediaWiki
from testkit.reference_scoring import ReferenceJob, entry_problems, run_all

from deploy import images
from deploy.seed_table import REPO_ROOT, load_rows

# One inference service per revscoring image: the one its container serves in the test.
SERVES = {
    "editquality": "enwiki-damaging",
    "articlequality": "enwiki-articlequality",
    "draftquality": "enwiki-draftquality",
    "topic": "enwiki-articletopic",
}
OUTLINK = "outlink-topic-model"
SHARED = REPO_ROOT.parent / "shared"
DRAIN_DELAY_S = 3.0  # how long the proxy holds the in-flight request's MediaWiki call
STARTUP_TIMES: dict[str, float] = {}  # image -> seconds from `podman run` to ready, written at the end
STARTUP_RECORD = REPO_ROOT / ".state" / "images" / "startup-seconds.json"


@pytest.fixture(scope="module", autouse=True)
def record_startup_times() -> Iterator[None]:
    """Writes this run's start-up times to .state/images/startup-seconds.json (the figures in the docs)."""
    yield
    if STARTUP_TIMES:
        STARTUP_RECORD.parent.mkdir(parents=True, exist_ok=True)
        seconds = {image: round(value, 1) for image, value in sorted(STARTUP_TIMES.items())}
        STARTUP_RECORD.write_text(json.dumps(seconds) + "\n")


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
        args: tuple[str, ...] = (), more_env: dict[str, str] | None = None,
        more_ports: tuple[int, ...] = ()) -> tuple[Container, dict[str, str], str]:
    """`image` started as the manifest of `isvc` runs it; `more_env` overrides or adds settings (the test's
    own endpoints)."""
    env, memory = manifest_env(isvc, image, wiki_url)
    env.update(more_env or {})
    container = Container(images.local_tag(image), env, memory, demo_models / isvc if model else None,
                          args=args, label=image, more_ports=more_ports)
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
    request_while_stopping(container, lambda: container.predict(model, body), proxy)


def request_while_stopping(container: Container, send: Callable[[], requests.Response],
                           proxy: FaultyMediaWiki) -> None:
    """Holds one request in flight (its MediaWiki call delayed), stops the container meanwhile: the request
    still succeeds, the server logs its shutdown, and the exit code is 0."""
    proxy.clear()
    proxy.inject("delay", delay_s=DRAIN_DELAY_S, times=1)
    result: dict = {}
    thread = threading.Thread(target=lambda: result.update(response=send()))
    thread.start()
    deadline = time.monotonic() + 10
    while not proxy.requests and time.monotonic() < deadline:
        time.sleep(0.05)
    assert proxy.requests, "the request never reached MediaWiki"
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
    # the corpora are the build account's, as Blubber leaves them; the server reads its own copy
    corpus = f"{images.NLTK_DATA}/corpora/stopwords"
    assert container.exec("stat", "-c", "%U", corpus).stdout.strip() == images.LIVES_AS[0]
    assert f"NLTK data {images.NLTK_DATA} belongs to another account" in container.logs()
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
    # another revision (the first is in the server's score cache), so the request reaches MediaWiki
    wiki = wiki_entry(farm.manifest, row.dbname)
    other = next(r for page in wiki["pages"] for r in page["rev_ids"] if r != rev_id)
    predict_while_stopping(container, isvc, {"rev_id": other}, mediawiki)


@pytest.mark.slow
def test_outlink_transformer_and_predictor_run_as_two_containers(built_images, farm, mediawiki, demo_models,
                                                                 event_receiver, started):
    """Plus what the outlink predictor adds: the page-change event through the transformer makes one topic
    event (EventGate: the session's receiver), and the predictor answers V2 over REST and gRPC."""
    # WIKI_URL too, which the manifest leaves to the transformer: V2 clients call the predictor directly
    predictor_env = {"WIKI_URL": from_container(mediawiki.url)}
    predictor, env, memory = run("outlink", OUTLINK, demo_models, started, wiki_url=None,
                                 more_env=predictor_env, more_ports=(images.GRPC_PORT,))
    STARTUP_TIMES["outlink"] = predictor.wait_ready(OUTLINK)
    assert_runs_as_production(predictor, env, memory, model=True)
    # The transformer checks page-change events against MediaWiki and posts the topic events itself.
    transformer, t_env, t_memory = run(
        "outlink-transformer", OUTLINK, demo_models, started, from_container(mediawiki.url), model=False,
        args=(f"--predictor_host={from_container(predictor.url).removeprefix('http://')}",),
        more_env=eventgate(event_receiver))
    STARTUP_TIMES["outlink-transformer"] = transformer.wait_ready(OUTLINK)
    assert_runs_as_production(transformer, t_env, t_memory, model=False)
    english = wiki_entry(farm.manifest, "enwiki")
    request = {"lang": "en", "page_title": english["special"]["many_links_title"]}
    response = transformer.predict(OUTLINK, request)
    assert response.status_code == 200, response.text
    results = response.json()["prediction"]["results"]
    assert results and all(0.0 <= item["score"] <= 1.0 for item in results), response.text
    refused = transformer.predict(OUTLINK, {"lang": "en"})
    assert refused.status_code == 400 and "page_title" in refused.json()["error"], refused.text
    assert_page_change_makes_one_valid_event(transformer, english, event_receiver)
    assert_v2_rest_and_grpc_answer_as_v1(predictor, request, response.json())
    predict_while_stopping(transformer, OUTLINK, request, mediawiki)
    assert predictor.stop() == 0, predictor.logs()


def eventgate(receiver) -> dict[str, str]:
    return {"EVENTGATE_URL": from_container(receiver.url), "EVENTGATE_STREAM": "container-test.topics"}


def assert_page_change_makes_one_valid_event(transformer: Container, english: dict, receiver) -> None:
    """A page-change event (valid by its schema) through the transformer: one topic event reaches EventGate,
    valid by the output schema and naming the topics of the answer."""
    page = next(p for p in english["pages"] if p["title"] == english["special"]["redirect_target"])
    request_id = str(uuid.uuid4())
    event = {"$schema": "/mediawiki/page/change/1.0.0", "wiki_id": "enwiki", "dt": "2024-01-02T03:04:05Z",
             "meta": {"stream": "mediawiki.page_change.v1", "domain": "en.wikipedia.org",
                      "request_id": request_id},
             "page_change_kind": "edit", "changelog_kind": "update",
             "page": {"page_id": page["page_id"], "page_title": page["title"].replace(" ", "_"),
                      "namespace_id": 0},
             "revision": {"rev_id": page["rev_ids"][-1], "rev_dt": "2024-01-02T03:04:05Z"},
             "performer": {"user_text": "Farm Veteran"}}
    event_schema("mediawiki.page.change.1.0.0.json").validate(event)
    since = len(receiver.events)
    response = transformer.predict(OUTLINK, {"event": event})
    assert response.status_code == 200, response.text
    rev_id = event["revision"]["rev_id"]

    def about_it(sent: dict) -> bool:  # no request id of the client's is repeated: matched by revision
        return sent.get("revision", {}).get("rev_id") == rev_id

    sent = receiver.wait_until(about_it, f"rev_id {rev_id}", since=since)
    event_schema("mediawiki.page.prediction_classification_change.1.0.0.json").validate(sent)
    assert sent["predicted_classification"]["predictions"] == [
        r["topic"] for r in response.json()["prediction"]["results"]]
    assert "request_id" not in sent["meta"] and request_id not in json.dumps(sent)
    time.sleep(0.5)  # once only: a second copy would have arrived by now
    assert len([e for e in receiver.events[since:] if about_it(e)]) == 1


def event_schema(name: str) -> jsonschema.Draft7Validator:
    return jsonschema.Draft7Validator(json.loads((SHARED / "schemas" / "events" / name).read_text()))


def assert_v2_rest_and_grpc_answer_as_v1(predictor: Container, request: dict, v1_body: dict) -> None:
    """The predictor's V2 answers (REST on 8080, gRPC on GRPC_PORT), with real clients, equal its V1 one."""
    payload = json.dumps(request)
    rest = requests.post(f"{predictor.url}/v2/models/{OUTLINK}/infer", timeout=60, json={
        "inputs": [{"name": "request", "shape": [1], "datatype": "BYTES", "data": [payload]}]})
    assert rest.status_code == 200, rest.text
    assert json.loads(rest.json()["outputs"][0]["data"][0]) == v1_body
    tensor = pb.ModelInferRequest.InferInputTensor(
        name="request", datatype="BYTES", shape=[1],
        contents=pb.InferTensorContents(bytes_contents=[payload.encode()]))
    with grpc.insecure_channel(f"127.0.0.1:{predictor.published[images.GRPC_PORT]}") as channel:
        answer = GRPCInferenceServiceStub(channel).ModelInfer(
            pb.ModelInferRequest(model_name=OUTLINK, inputs=[tensor]), timeout=60)
    assert json.loads(answer.outputs[0].contents.bytes_contents[0]) == v1_body


@pytest.mark.slow
def test_ores_image_serves_the_ores_api_in_front_of_a_model_image(built_images, farm, mediawiki,
                                                                  demo_models, started):
    """The ores image as its manifest runs it, LIFTWING_URL pointing at the editquality image's container
    serving enwiki-damaging: an ORES request with features is answered with what revscoring's own extractor
    gives for that model (testkit.reference_scoring), and with that service's own batch answer."""
    isvc = SERVES["editquality"]
    model, _, _ = run("editquality", isvc, demo_models, started, from_container(mediawiki.url))
    model.wait_ready(isvc)
    ores, env, memory = run("ores", "ores", demo_models, started, wiki_url=None, model=False,
                            more_env={"LIFTWING_URL": from_container(model.url)})
    STARTUP_TIMES["ores"] = ores.wait_ready(None)
    assert_runs_as_production(ores, env, memory, model=False)
    rev_id = wiki_entry(farm.manifest, "enwiki")["special"]["good_rev_id"]
    response = requests.get(f"{ores.url}/v3/scores/enwiki/{rev_id}/damaging", params={"features": ""},
                            timeout=60)
    assert response.status_code == 200, response.text
    job = ReferenceJob(farm.url, wiki_entry(farm.manifest, "enwiki")["host"], rev_id,
                       ((isvc, str(demo_models / isvc / "model.bin")),))
    expected = run_all([job], processes=1)[(rev_id, isvc)]
    entry = response.json()["enwiki"]["scores"][str(rev_id)]["damaging"]
    assert not entry_problems(expected, entry, f"ores image {rev_id}")
    batch = model.predict(isvc, {"rev_ids": [rev_id], "extended_output": True}).json()
    assert response.json() == batch
    refused = requests.get(f"{ores.url}/v3/scores/enwiki/", params={"models": "damaging", "revids": "x"},
                           timeout=60)
    assert refused.status_code == 400 and "revids" in refused.json()["error"]["message"], refused.text
    # another revision (the first is in the model server's score cache), so the request reaches MediaWiki
    other = next(r for p in wiki_entry(farm.manifest, "enwiki")["pages"] for r in p["rev_ids"] if r != rev_id)
    request_while_stopping(
        ores, lambda: requests.get(f"{ores.url}/v3/scores/enwiki/{other}/damaging", timeout=60), mediawiki)
