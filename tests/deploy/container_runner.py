"""Runs a built image with podman the way a KServe pod runs it, for the container tests.

Production settings: a non-root user (the image's), a read-only root filesystem with a writable /tmp only,
the model folder mounted read-only at /mnt/models, the environment of the service's manifest
(deploy/render.py) and its memory limit. Networking: each container has its own network namespace
(slirp4netns) with its port 8080 published on the host's 127.0.0.1 only, and reaches the host's loopback
(the farm, the other outlink container) at 10.0.2.2, so nothing listens beyond loopback.
"""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from collections.abc import Sequence
from pathlib import Path

import requests
from testkit.servers import free_port

from deploy import containers, render
from deploy.seed_table import load_rows

HOST_FROM_CONTAINER = "10.0.2.2"  # slirp4netns' address of the host's loopback (allow_host_loopback)
NETWORK = "slirp4netns:allow_host_loopback=true"
READY_TIMEOUT_S = 180.0
STOP_TIMEOUT_S = 40  # podman stop: SIGTERM, then SIGKILL after this (Kubernetes' default grace is 30 s)


def podman(*args: str, timeout_s: float = 120.0, check: bool = True) -> subprocess.CompletedProcess:
    return containers.run_engine(list(args), check=check, capture=True, timeout_s=timeout_s)


def from_container(url: str) -> str:
    """A host loopback URL as a container reaches it."""
    return url.replace("127.0.0.1", HOST_FROM_CONTAINER).replace("localhost", HOST_FROM_CONTAINER)


def manifest_container(isvc: str, image: str) -> dict:
    """The container spec of `image` in the rendered InferenceService of `isvc` (deploy/render.py)."""
    values = render.Values.load()
    rows = [r for r in load_rows() if r.isvc == isvc]  # none for `ores`, which serves no model
    (service,) = [s for s in render.inference_services(values, rows) if s["metadata"]["name"] == isvc]
    for component in service["spec"].values():
        for container in component["containers"]:
            if container["image"] == values.image(image):
                return container
    raise AssertionError(f"{isvc} has no container of image {image}")


def memory_bytes(quantity: str) -> int:
    """A Kubernetes memory quantity (binary suffixes) in bytes."""
    units = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}
    for suffix, factor in units.items():
        if quantity.endswith(suffix):
            return int(float(quantity[: -len(suffix)]) * factor)
    return int(quantity)


class Container:
    """One `podman run -d` of an image; `stop()` is `podman stop`, `remove()` cleans up."""

    def __init__(self, image: str, env: dict[str, str], memory: str, model_dir: Path | None,
                 args: Sequence[str] = (), label: str = "test", more_ports: Sequence[int] = ()) -> None:
        """`more_ports`: container ports published besides 8080, each on a free host port (`published`)."""
        self.name = f"lift-wing-test-{label}-{uuid.uuid4().hex[:8]}"
        self.published = {inside: free_port() for inside in (8080, *more_ports)}
        self.port = self.published[8080]
        self.url = f"http://127.0.0.1:{self.port}"
        command = ["run", "-d", "--name", self.name, "--read-only", "--read-only-tmpfs=false",
                   "--tmpfs", "/tmp:rw,size=256m", "--memory", str(memory_bytes(memory)),
                   "--network", NETWORK]
        for inside, outside in self.published.items():
            command += ["-p", f"127.0.0.1:{outside}:{inside}"]
        if model_dir is not None:
            # the model file alone: the demo folders also hold a fingerprint, and a server refuses to
            # guess between several files in /mnt/models (production's folder holds model.bin only)
            command += ["-v", f"{model_dir / 'model.bin'}:/mnt/models/model.bin:ro"]
        for key, value in env.items():
            command += ["-e", f"{key}={value}"]
        podman(*command, image, *args)

    def inspect(self) -> dict:
        return json.loads(podman("inspect", self.name).stdout)[0]

    def exec(self, *command: str) -> subprocess.CompletedProcess:
        return podman("exec", self.name, *command, check=False, timeout_s=60)

    def logs(self) -> str:
        result = podman("logs", self.name, check=False, timeout_s=30)
        return (result.stdout + result.stderr)[-6000:]

    def running(self) -> bool:
        return self.inspect()["State"]["Running"]

    def wait_ready(self, model: str | None, timeout_s: float = READY_TIMEOUT_S) -> float:
        """Seconds from now until `GET /v1/models/<model>` says ready (model None: until KServe's liveness
        route `/` answers 200, the probe of a server without a model); fails with the log otherwise."""
        started = time.monotonic()
        while time.monotonic() - started < timeout_s:
            if not self.running():
                raise AssertionError(f"{self.name} exited:\n{self.logs()}")
            try:
                if model is None:
                    if requests.get(f"{self.url}/", timeout=2).status_code == 200:
                        return time.monotonic() - started
                else:
                    response = requests.get(f"{self.url}/v1/models/{model}", timeout=2)
                    if response.status_code == 200 and response.json().get("ready") is True:
                        return time.monotonic() - started
            except requests.RequestException:
                pass
            time.sleep(0.25)
        raise AssertionError(f"{self.name} not ready after {timeout_s} s:\n{self.logs()}")

    def predict(self, model: str, body: object, timeout_s: float = 60.0) -> requests.Response:
        return requests.post(f"{self.url}/v1/models/{model}:predict", json=body, timeout=timeout_s)

    def stop(self) -> int:
        """`podman stop` (SIGTERM, then SIGKILL after STOP_TIMEOUT_S); returns the exit code."""
        podman("stop", "-t", str(STOP_TIMEOUT_S), self.name, timeout_s=STOP_TIMEOUT_S + 30)
        return int(self.inspect()["State"]["ExitCode"])

    def remove(self) -> None:
        podman("rm", "-f", self.name, check=False, timeout_s=60)
