"""The production pod, run locally (dev/pod.py): Swift's S3 API -> KServe's storage initializer ->
/mnt/models -> the model server from the rendered manifest's container spec, with `podman kube play`.

One Swift for the session. Per family (the four revscoring images and the outlink predictor): the pod
becomes ready and answers farm revisions with the scores of the same server run on the host (`make run`'s
way), the server runs as a non-root user and can write nowhere but its emptyDirs. Once: a STORAGE_URI that
names nothing stops the pod at its init container with a message naming it; an object replaced in Swift
reaches /mnt/models only through a new pod.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from testkit.servers import free_port, start_server

from deploy import containers, images
from dev import pod as pods
from dev.swift import LocalSwift

SERVES = {"editquality": "enwiki-damaging", "articlequality": "enwiki-articlequality",
          "draftquality": "enwiki-draftquality", "topic": "enwiki-articletopic"}
OUTLINK = "outlink-topic-model"
FEATURES = "Q1 Q2 Q5 Q42 Q90 Q146 Q515 Q2225"  # Wikidata ids an outlink request may carry itself


@pytest.fixture(scope="session")
def swift() -> Iterator[LocalSwift]:
    server = LocalSwift().start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def pod_images(built_images) -> None:
    pods.build_storage_initializer()


@pytest.fixture(scope="session")
def host_revscoring(farm, demo_models):
    """The revscoring server on the host, as `make run` runs it, serving the four services the pods serve."""
    isvcs = sorted(SERVES.values())
    server = start_server("pod-reference", ["revscoring_server", f"--models_dir={demo_models}",
                                            *[f"--isvc={isvc}" for isvc in isvcs]],
                          {"WIKI_URL": farm.url}, isvcs, timeout_s=300)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def host_outlink(farm, demo_models):
    server = start_server("pod-reference-outlink", ["outlink_server.predictor", f"--model_name={OUTLINK}"],
                          {"WIKI_URL": farm.url, "MODEL_PATH": str(demo_models / OUTLINK / "model.bin")},
                          [OUTLINK])
    yield server
    server.stop()


def play(isvc: str, farm, swift: LocalSwift, storage_uri: str | None = None) -> pods.Pod:
    return pods.make_pod(isvc, farm.url, swift, free_port(), storage_uri).play()


def farm_revisions(farm, dbname: str) -> list[int]:
    wiki = farm.manifest.get("wikis", farm.manifest)
    entry = wiki[dbname] if isinstance(wiki, dict) else next(w for w in wiki if w["dbname"] == dbname)
    return [entry["special"]["good_rev_id"], *entry["pages"][0]["rev_ids"][-2:]]


def assert_writes_only_to_empty_dirs(pod: pods.Pod) -> None:
    server = pod.spec["spec"]["containers"][0]["name"]
    image = pod.spec["spec"]["containers"][0]["image"]
    configured = containers.run_engine(["image", "inspect", "--format", "{{.Config.User}}", image],
                                       capture=True).stdout.strip()
    assert configured and configured.split(":")[0] not in ("", "0", "root")
    assert pod.exec(server, "id", "-u").stdout.strip() not in ("", "0")
    assert pod.exec(server, "touch", "/tmp/probe").returncode == 0  # the emptyDir
    for path in ("/", "/srv/app", images.VENV, "/home", "/var/tmp", "/etc", pods.MODELS_MOUNT):
        result = pod.exec(server, "touch", f"{path.rstrip('/')}/probe")
        assert result.returncode != 0, (path, result)
        assert "Read-only file system" in result.stderr or "Permission denied" in result.stderr, result


@pytest.mark.slow
@pytest.mark.parametrize("image", sorted(SERVES))
def test_revscoring_pod_serves_the_host_servers_scores(image, pod_images, farm, swift, host_revscoring):
    isvc = SERVES[image]
    pods.upload_model(swift, isvc)
    pod = play(isvc, farm, swift)
    try:
        assert pod.played.returncode == 0, pod.played.stderr
        pod.wait_ready(isvc)
        dbname = isvc.split("-")[0]
        for rev_id in farm_revisions(farm, dbname):
            body = {"rev_id": rev_id}
            answer = requests.post(f"{pod.url}/v1/models/{isvc}:predict", json=body, timeout=60)
            expected = requests.post(f"{host_revscoring.url}/v1/models/{isvc}:predict", json=body, timeout=60)
            assert answer.status_code == expected.status_code == 200, answer.text
            assert answer.json() == expected.json()
        assert_writes_only_to_empty_dirs(pod)
    finally:
        pod.down()


@pytest.mark.slow
def test_outlink_pod_serves_the_host_predictors_topics(pod_images, farm, swift, host_outlink):
    pods.upload_model(swift, OUTLINK)
    pod = play(OUTLINK, farm, swift)
    try:
        assert pod.played.returncode == 0, pod.played.stderr
        pod.wait_ready(OUTLINK)
        body = {"lang": "en", "page_title": "River", "features_str": FEATURES, "threshold": 0.0}
        answer = requests.post(f"{pod.url}/v1/models/{OUTLINK}:predict", json=body, timeout=60)
        expected = requests.post(f"{host_outlink.url}/v1/models/{OUTLINK}:predict", json=body, timeout=60)
        assert answer.status_code == 200 and answer.json() == expected.json(), answer.text
        assert answer.json()["prediction"]["results"]
        assert_writes_only_to_empty_dirs(pod)
    finally:
        pod.down()


@pytest.mark.slow
def test_a_storage_uri_naming_nothing_stops_the_pod_before_its_server(pod_images, farm, swift):
    pods.upload_model(swift, "enwiki-damaging")  # the bucket exists; the version named below does not
    missing = "s3://wmf-ml-models/damaging/enwiki/19990101000000/"
    pod = play("enwiki-damaging", farm, swift, storage_uri=missing)
    try:
        assert pod.played.returncode != 0 and "init container" in pod.played.stderr, pod.played.stderr
        initializer = pod.inspect(pods.STORAGE_INITIALIZER)
        assert initializer["State"]["Status"] == "exited" and initializer["State"]["ExitCode"] == 1
        message = pod.logs(pods.STORAGE_INITIALIZER)
        assert f"storage-initializer: cannot download {missing}: " in message, message
        assert "No model found" in message, message  # KServe's own words for an empty prefix
        server = pod.inspect(pods.CONTAINER_NAME)
        assert server["State"]["Status"] == "created" and server["State"]["StartedAt"].startswith("0001-")
        with pytest.raises(requests.ConnectionError):
            requests.get(f"{pod.url}/v1/models/enwiki-damaging", timeout=5)
    finally:
        pod.down()


def model_digest(pod: pods.Pod) -> str:
    result = pod.exec("kserve-container", "sha256sum", f"{pods.MODELS_MOUNT}/model.bin")
    assert result.returncode == 0, result.stderr
    return result.stdout.split()[0]


@pytest.mark.slow
def test_an_object_replaced_in_swift_reaches_mnt_models_only_through_a_new_pod(pod_images, farm, swift,
                                                                                demo_models: Path):
    isvc = "enwiki-goodfaith"
    original = (demo_models / isvc / "model.bin").read_bytes()
    replacement = (demo_models / "enwiki-damaging" / "model.bin").read_bytes()  # another valid binary
    pods.upload_model(swift, isvc, original)
    first = play(isvc, farm, swift)
    second = None
    try:
        first.wait_ready(isvc)
        assert model_digest(first) == hashlib.sha256(original).hexdigest()
        pods.upload_model(swift, isvc, replacement)
        assert model_digest(first) == hashlib.sha256(original).hexdigest()  # the running pod keeps its copy
        second = play(isvc, farm, swift)
        second.wait_ready(isvc)
        assert model_digest(second) == hashlib.sha256(replacement).hexdigest()
    finally:
        first.down()
        if second is not None:
            second.down()
