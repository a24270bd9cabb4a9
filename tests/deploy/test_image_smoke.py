"""Image smoke test without Docker: each production variant, assembled exactly as blubber.yaml lays it
out (only its `copies`, only its requirements in a fresh venv), starts with the environment its
InferenceService gives it, reports its model ready and answers one real prediction against the farm.

The fixture-level proofs at the end show the test notices a file missing from `copies` or a package
missing from a variant's requirements. Venvs are built offline from `.state/wheelhouse`
(`python -m deploy.wheelhouse`) and reused while the requirement files are unchanged.
"""

from __future__ import annotations

import json
import math
import os
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from blubber_config import REPO_ROOT, apt_packages, effective_variant, production_variants
from image_assembly import STATE, WHEELHOUSE, AssembledImage, assemble, ensure_venv, venv_without

from deploy import images
from deploy.seed_table import load_rows

LOGS = STATE / "logs"
READY_TIMEOUT_S = 240.0
SERVERS_WRITTEN = all((REPO_ROOT / path).exists() for path in (
    "revscoring/revscoring_server/__main__.py", "outlink-topic-model/outlink_server/predictor.py",
    "outlink-topic-model/outlink_server/transformer.py"))
needs_servers = pytest.mark.skipif(not SERVERS_WRITTEN, reason="the model servers are not written yet")

# One inference service per revscoring image: what its smoke run serves.
SMOKE_ISVC = {
    "editquality": "enwiki-damaging",
    "articlequality": "enwiki-articlequality",
    "draftquality": "enwiki-draftquality",
    "topic": "enwiki-articletopic",
}
OUTLINK = "outlink-topic-model"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Container:
    """An assembled image's entrypoint running as a local process, like the container would."""

    def __init__(self, image: AssembledImage, env: dict[str, str], args: list[str], label: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        LOGS.mkdir(parents=True, exist_ok=True)
        self.log_path = LOGS / f"{label}.log"
        self._log = open(self.log_path, "wb")
        inherited = {k: v for k, v in os.environ.items() if k.startswith("OPENBLAS_") or k == "LANG"}
        self.process = subprocess.Popen(
            [*image.argv, *args, f"--http_port={self.port}"], cwd=image.cwd,
            env={**inherited, **image.env, **env}, stdout=self._log, stderr=subprocess.STDOUT)

    def log_tail(self, lines: int = 40) -> str:
        self._log.flush()
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def wait_ready(self, model: str, timeout_s: float = READY_TIMEOUT_S) -> dict:
        """The model-status body once ready; raises with the log if the process dies or times out."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"exited with {self.process.returncode}:\n{self.log_tail()}")
            try:
                response = requests.get(f"{self.url}/v1/models/{model}", timeout=2)
                if response.status_code == 200 and response.json().get("ready") is True:
                    return response.json()
            except requests.RequestException:
                pass
            time.sleep(0.3)
        raise RuntimeError(f"not ready after {timeout_s} s:\n{self.log_tail()}")

    def wait_exit(self, timeout_s: float = READY_TIMEOUT_S) -> int:
        try:
            return self.process.wait(timeout_s)
        finally:
            self._log.flush()

    def predict(self, model: str, body: dict) -> requests.Response:
        return requests.post(f"{self.url}/v1/models/{model}:predict", json=body, timeout=120)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()


@pytest.fixture
def containers() -> Iterator[list[Container]]:
    started: list[Container] = []
    yield started
    for container in started:
        container.stop()


def row(isvc: str):
    (found,) = [r for r in load_rows() if r.isvc == isvc]
    return found


def wiki_entry(manifest: dict, dbname: str) -> dict:
    wikis = manifest.get("wikis", manifest)
    if isinstance(wikis, list):
        return next(entry for entry in wikis if entry["dbname"] == dbname)
    return wikis[dbname]


def isvc_env(isvc: str, farm, demo_models: Path) -> dict[str, str]:
    """What the InferenceService manifest sets (deploy/render.py), pointed at the farm and a demo model."""
    seed = row(isvc)
    env = {"INFERENCE_NAME": isvc, "MODEL_PATH": str(demo_models / isvc / "model.bin")}
    if seed.is_revscoring:
        env["WIKI_URL"] = farm.url
        env["WIKI_HOST"] = wiki_entry(farm.manifest, seed.dbname).get("host", seed.domain)
    return env


def probabilities(node) -> Iterator[dict]:
    """Every `probability` mapping in a response body, wherever the response shape nests it."""
    if isinstance(node, dict):
        if isinstance(node.get("probability"), dict):
            yield node["probability"]
        for value in node.values():
            yield from probabilities(value)
    elif isinstance(node, list):
        for value in node:
            yield from probabilities(value)


def start(variant: str, env: dict[str, str], containers: list[Container], args: list[str] | None = None,
          image: AssembledImage | None = None, label: str | None = None) -> Container:
    container = Container(image or assemble(variant), env, args or [], label or variant)
    containers.append(container)
    return container


# -- assembly (fast once the venvs exist) -------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("variant", production_variants())
def test_assembled_image_holds_only_its_own_sources_and_requirements(variant):
    image = assemble(variant)
    config = effective_variant(variant)
    copied = sorted(p.relative_to(image.app).as_posix() for p in image.app.glob("*/*")
                    if p.parent.name != "word2vec")  # the topic build downloads vectors there
    assert copied == sorted(c["source"] for c in config["copies"])
    assert (image.app / "word2vec").is_dir() == (variant == "topic")
    assert not list(image.app.rglob("__pycache__"))
    installed = installed_distributions(image.venv)
    revscoring_image = variant in SMOKE_ISVC
    assert ("revscoring" in installed) == revscoring_image
    assert ("fasttext" in installed) == (variant == "outlink")
    assert {"kserve", "mwapi"} <= installed
    assert not {"pytest", "ruff", "tox"} & installed  # test tools stay out of production images
    assert ("drafttopic" in installed) == (variant == "topic")


def installed_distributions(venv: Path) -> set[str]:
    return {p.name.split("-")[0].lower().replace("_", "-")
            for p in venv.glob("lib/python3*/site-packages/*.dist-info")}


@pytest.mark.slow
def test_images_that_compile_a_requirement_install_a_compiler():
    # wheels pip had to build here (no PyPI wheel for the pin) are compiled in the image build too
    built_here = {p.name.split("-")[0].lower() for p in WHEELHOUSE.glob("*-linux_x86_64.whl")}
    assert built_here <= set(images.SOURCE_BUILT), built_here
    for variant in production_variants():
        compiled = installed_distributions(assemble(variant).venv) & set(images.SOURCE_BUILT)
        assert compiled == set(images.image(variant).compiled), variant
        has_compiler = set(images.COMPILER_APT) <= set(apt_packages(effective_variant(variant)))
        assert has_compiler == bool(compiled), variant


@pytest.mark.slow
def test_venvs_are_reused_while_requirements_are_unchanged():
    config = effective_variant("outlink-transformer")
    venv = ensure_venv("outlink-transformer", config)
    stamp = (venv / ".smoke-stamp").stat().st_mtime_ns
    started = time.monotonic()
    assert ensure_venv("outlink-transformer", config) == venv
    assert time.monotonic() - started < 5 and (venv / ".smoke-stamp").stat().st_mtime_ns == stamp


# -- the images serve ---------------------------------------------------------------------------------


@pytest.mark.slow
@needs_servers
@pytest.mark.parametrize("variant", sorted(SMOKE_ISVC))
def test_revscoring_image_serves_a_prediction(variant, farm, demo_models, containers):
    isvc = SMOKE_ISVC[variant]
    server = start(variant, isvc_env(isvc, farm, demo_models), containers)
    status = server.wait_ready(isvc)
    assert status["name"] == isvc
    rev_id = wiki_entry(farm.manifest, row(isvc).dbname)["special"]["good_rev_id"]
    response = server.predict(isvc, {"rev_id": rev_id})
    assert response.status_code == 200, response.text
    assert str(rev_id) in response.text
    found = list(probabilities(response.json()))
    assert found, response.text
    for distribution in found:
        assert all(0.0 <= p <= 1.0 for p in distribution.values())
        if variant != "topic":  # topic models are multilabel: one independent probability per topic
            assert math.isclose(sum(distribution.values()), 1.0, abs_tol=1e-6)


@pytest.mark.slow
@needs_servers
def test_outlink_images_serve_a_prediction_through_the_transformer(farm, demo_models, containers,
                                                                   event_receiver):
    # The image serves V2 gRPC on GRPC_PORT (8081 in blubber.yaml); here on a free port instead.
    grpc_port = free_port()
    eventgate = {"EVENTGATE_URL": event_receiver.url, "EVENTGATE_STREAM": "smoke.topics"}
    predictor = start("outlink", {**isvc_env(OUTLINK, farm, demo_models), **eventgate,
                                  "WIKI_URL": farm.url, "GRPC_PORT": str(grpc_port)}, containers)
    assert effective_variant("outlink")["runs"]["environment"]["GRPC_PORT"] == str(images.GRPC_PORT)
    predictor.wait_ready(OUTLINK)
    transformer_env = {"INFERENCE_NAME": OUTLINK, "WIKI_URL": farm.url, **eventgate}
    transformer = start("outlink-transformer", transformer_env, containers,
                        args=[f"--predictor_host=127.0.0.1:{predictor.port}"])
    transformer.wait_ready(OUTLINK)
    english = wiki_entry(farm.manifest, "enwiki")
    title = english["special"].get("many_links_title") or english["pages"][0]["title"]
    response = transformer.predict(OUTLINK, {"page_title": title, "lang": "en"})
    assert response.status_code == 200, response.text
    body = response.json()
    results = body.get("prediction", body).get("results")
    assert results, body
    assert all(0.0 <= item["score"] <= 1.0 for item in results)
    assert_outlink_event_and_v2(farm, english, transformer, predictor, grpc_port, event_receiver, body)


def assert_outlink_event_and_v2(farm, english: dict, transformer: Container, predictor: Container,
                                grpc_port: int, event_receiver, v1_body: dict) -> None:
    """A page/change event through the transformer posts one valid topic event; the predictor answers
    the same request over V2 REST and V2 gRPC."""
    import grpc
    import jsonschema
    from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb
    from kserve.protocol.grpc.grpc_predict_v2_pb2_grpc import GRPCInferenceServiceStub

    schemas = REPO_ROOT.parent / "shared" / "schemas" / "events"
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
    jsonschema.Draft7Validator(json.loads((schemas / "mediawiki.page.change.1.0.0.json").read_text())
                               ).validate(event)
    response = transformer.predict(OUTLINK, {"event": event})
    assert response.status_code == 200, response.text
    time.sleep(0.5)
    sent = [e for e in event_receiver.events if e.get("meta", {}).get("request_id") == request_id]
    assert len(sent) == 1, sent
    output = "mediawiki.page.prediction_classification_change.1.0.0.json"
    jsonschema.Draft7Validator(json.loads((schemas / output).read_text())).validate(sent[0])
    assert sent[0]["predicted_classification"]["predictions"] == [
        r["topic"] for r in response.json()["prediction"]["results"]]

    request = json.dumps({"page_title": english["special"]["many_links_title"], "lang": "en"})
    rest = requests.post(f"{predictor.url}/v2/models/{OUTLINK}/infer", timeout=120, json={
        "inputs": [{"name": "request", "shape": [1], "datatype": "BYTES", "data": [request]}]})
    assert rest.status_code == 200, rest.text
    assert json.loads(rest.json()["outputs"][0]["data"][0]) == v1_body
    with grpc.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
        tensor = pb.ModelInferRequest.InferInputTensor(
            name="request", datatype="BYTES", shape=[1],
            contents=pb.InferTensorContents(bytes_contents=[request.encode()]))
        answer = GRPCInferenceServiceStub(channel).ModelInfer(
            pb.ModelInferRequest(model_name=OUTLINK, inputs=[tensor]), timeout=120)
    assert json.loads(answer.outputs[0].contents.bytes_contents[0]) == v1_body


# -- the test notices what an image lacks -------------------------------------------------------------


@pytest.mark.slow
@needs_servers
def test_a_file_missing_from_copies_stops_the_image_from_starting(farm, demo_models, containers):
    isvc = SMOKE_ISVC["editquality"]
    dropped = "revscoring/revscoring_server/model_types.py"
    image = assemble("editquality", drop=frozenset({dropped}), name="editquality-without-model-types")
    assert not (image.app / dropped).exists()
    server = start("editquality", isvc_env(isvc, farm, demo_models), containers, image=image,
                   label="editquality-without-model-types")
    with pytest.raises(RuntimeError, match="exited with"):
        server.wait_ready(isvc)
    assert "model_types" in server.log_tail(200)


@pytest.mark.slow
@needs_servers
def test_a_requirement_missing_from_the_variant_stops_the_image_from_starting(farm, demo_models, containers):
    isvc = SMOKE_ISVC["editquality"]
    full = assemble("editquality")
    lacking = venv_without(full.venv, "mwapi", STATE / "venvs" / "editquality-without-mwapi")
    image = assemble("editquality", name="editquality-without-mwapi", venv=lacking)
    server = start("editquality", isvc_env(isvc, farm, demo_models), containers, image=image,
                   label="editquality-without-mwapi")
    with pytest.raises(RuntimeError, match="exited with"):
        server.wait_ready(isvc)
    assert "No module named 'mwapi'" in server.log_tail(200)
