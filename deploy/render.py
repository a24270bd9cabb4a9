"""Renders every KServe InferenceService of the seed table as multi-document YAML (`make manifests`).

    python -m deploy.render [--values deploy/values.yaml] [--seed PATH] [--service-accounts]

One InferenceService per seed-table row: 110 revscoring services (predictor only) and
`outlink-topic-model` (predictor + transformer); plus `ores` (ORES's API in front of them, no model).
Images, model storage and resources come from `deploy/values.yaml`; names, wikis and namespaces from the
seed table. `--service-accounts` also prints one ServiceAccount per namespace, bound to the Secret with the
Swift S3 credentials (created apart).
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from deploy.images import GRPC_PORT, RUNS_AS
from deploy.seed_table import REPO_ROOT, IsvcRow, load_rows

DEFAULT_VALUES = REPO_ROOT / "deploy" / "values.yaml"
API_VERSION = "serving.kserve.io/v1beta1"
CONTAINER = "kserve-container"  # the name KServe's storage initializer and webhooks look for
OUTLINK_FAMILY = "outlink"
DEPLOYMENT_MODE = "serving.kserve.io/deploymentMode"
SERVERLESS, RAW = "Serverless", "RawDeployment"


@dataclass(frozen=True)
class Values:
    """`deploy/values.yaml`, read once."""

    raw: dict[str, Any]

    @classmethod
    def load(cls, path: Path = DEFAULT_VALUES) -> Values:
        with open(path, encoding="utf-8") as handle:
            return cls(yaml.safe_load(handle))

    def image(self, name: str) -> str:
        images = self.raw["images"]
        return f"{images['registry']}/{images['project']}-{name}:{images['tag']}"

    def storage_uri(self, row: IsvcRow) -> str:
        storage = self.raw["storage"]
        if row.is_revscoring:
            family, path = row.model_type, f"{row.model_type}/{row.dbname}"
        else:
            family, path = OUTLINK_FAMILY, storage["outlink_path"]
        version = storage["overrides"].get(row.isvc) or storage["versions"][family]
        return f"s3://{storage['bucket']}/{path}/{version}/"

    def resources(self, image: str) -> dict[str, Any]:
        table = self.raw["resources"]
        return table.get(image, table["default"])


def env_list(pairs: dict[str, str]) -> list[dict[str, str]]:
    return [{"name": name, "value": value} for name, value in pairs.items() if value]


def readiness(values: Values, model_name: str | None) -> dict[str, Any]:
    """Ready once the model server reports the model loaded (KServe's v1 model-status endpoint); a server
    without a model (`ores`) once it answers KServe's liveness route."""
    probe = values.raw["readiness"]
    return {
        "httpGet": {"path": f"/v1/models/{model_name}" if model_name else "/", "port": values.raw["port"]},
        "initialDelaySeconds": probe["initial_delay_seconds"],
        "periodSeconds": probe["period_seconds"],
        "timeoutSeconds": probe["timeout_seconds"],
        "failureThreshold": probe["failure_threshold"],
    }


def security_context() -> dict[str, Any]:
    """Every container: the image's own unprivileged user (blubber.yaml's `runs`), nothing writable but the
    emptyDir volumes, no way to gain privileges, no capabilities, the runtime's default seccomp filter."""
    uid = RUNS_AS[1]
    return {
        "runAsNonRoot": True,
        "runAsUser": uid,
        "runAsGroup": uid,
        "readOnlyRootFilesystem": True,
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def volume_name(path: str) -> str:
    return "writable-" + path.strip("/").replace("/", "-")


def writable_volumes(values: Values) -> list[dict[str, Any]]:
    return [{"name": volume_name(path), "emptyDir": {"sizeLimit": size}}
            for path, size in values.raw["writable"].items()]


def ports(values: Values, grpc: bool) -> list[dict[str, Any]]:
    """The HTTP port; with `grpc`, also KServe's V2 gRPC port, but only in RawDeployment: Knative routes
    exactly one port per container, and that must stay the HTTP one the transformer and V1 clients call."""
    declared = [{"name": "http1", "containerPort": values.raw["port"], "protocol": "TCP"}]
    if grpc and values.raw["deployment_mode"] == RAW:
        declared.append({"name": "grpc", "containerPort": GRPC_PORT, "protocol": "TCP"})
    return declared


def container(values: Values, image: str, model_name: str | None, env: dict[str, str],
              grpc: bool = False) -> dict[str, Any]:
    return {
        "name": CONTAINER,
        "image": values.image(image),
        "env": env_list(env),
        "ports": ports(values, grpc),
        "readinessProbe": readiness(values, model_name),
        "resources": values.resources(image),
        "securityContext": security_context(),
        "volumeMounts": [{"name": volume_name(path), "mountPath": path} for path in values.raw["writable"]],
    }


@dataclass(frozen=True)
class Autoscaling:
    """Knative's settings of one component (KServe's component extension fields)."""

    scale_metric: str
    scale_target: int
    container_concurrency: int
    timeout_s: int


def mediawiki_round_worst_s() -> float:
    """The longest one MediaWiki round may take in the server: every attempt timing out, with the capped
    backoff between attempts (the servers' defaults, python/wikiserve/config.py)."""
    from wikiserve.config import SETTINGS_BY_NAME

    attempts = SETTINGS_BY_NAME["MEDIAWIKI_ATTEMPTS"].default
    timeout_s = SETTINGS_BY_NAME["MEDIAWIKI_TIMEOUT_S"].default
    return attempts * timeout_s + (attempts - 1) * SETTINGS_BY_NAME["MEDIAWIKI_BACKOFF_CAP_S"].default


def autoscaling(values: Values, image: str) -> Autoscaling:
    """Knative's targets for one replica of `image`, derived from what `make bench` measured for one replica
    held to one core, the CPU limit of every container (values.yaml `autoscaling.measured`):

    - scaleMetric `rps`, scaleTarget = floor(target_utilization * saturation_rps): Knative adds replicas
      before one reaches the throughput it was measured to saturate at. Requests per second, not
      concurrency: a replica's concurrency at a given load grows with MediaWiki's latency, its saturation
      throughput does not.
    - containerConcurrency = max(knee, ceil(saturation_rps * (mediawiki_rounds * mediawiki_round_s
      + 1 / saturation_rps))): by Little's law, the requests one saturated replica holds at once when each
      also waits its MediaWiki rounds at production's latency; at least the concurrency at which the
      benchmark's sweep reached 95% of its saturation (`knee`), below which the replica idles. More than
      this would only queue inside the replica, where Knative cannot hand them to another.
    - timeout = the slowest a request may legitimately be, rounded up to 5 s: each MediaWiki round timing
      out on every attempt (`mediawiki_round_worst_s`), plus the slowest request measured (a heavy
      revision's extraction), plus the wait behind a full replica (containerConcurrency / saturation_rps).
    """
    settings = values.raw["autoscaling"]
    measured = settings["measured"][settings["same_as"].get(image, image)]
    rps, rounds = float(measured["saturation_rps"]), int(measured["mediawiki_rounds"])
    in_flight = rps * (rounds * float(settings["mediawiki_round_s"]) + 1 / rps)
    concurrency = max(int(measured["knee_concurrency"]), math.ceil(round(in_flight, 6)))
    slowest = rounds * mediawiki_round_worst_s() + float(measured["slowest_request_s"]) + concurrency / rps
    target = math.floor(float(settings["target_utilization"]) * rps)
    return Autoscaling(scale_metric="rps", scale_target=target, container_concurrency=concurrency,
                       timeout_s=5 * math.ceil(slowest / 5))


def component(values: Values, image: str, containers: list[dict[str, Any]],
              canary_percent: int | None = None) -> dict[str, Any]:
    scaling = autoscaling(values, image)
    result = {
        "serviceAccountName": values.raw["storage"]["service_account"],
        "minReplicas": values.raw["min_replicas"],
        "maxReplicas": values.raw["max_replicas"],
        "scaleMetric": scaling.scale_metric,
        "scaleTarget": scaling.scale_target,
        "containerConcurrency": scaling.container_concurrency,
        "timeout": scaling.timeout_s,
    }
    if canary_percent is not None:
        result["canaryTrafficPercent"] = canary_percent
    return result | {"containers": containers, "volumes": writable_volumes(values)}


def canary_percent(values: Values, isvc: str) -> int | None:
    """The share of traffic the newest revision of `isvc` gets while it is a canary (values.yaml `canary`)."""
    percent = values.raw.get("canary", {}).get(isvc)
    if percent is None:
        return None
    if values.raw["deployment_mode"] != SERVERLESS:
        raise ValueError(f"canary for {isvc}: canaryTrafficPercent needs deployment_mode {SERVERLESS}")
    if not isinstance(percent, int) or isinstance(percent, bool) or not 0 <= percent <= 100:
        raise ValueError(f"canary for {isvc}: {percent!r} is not a whole percentage from 0 to 100")
    return percent


def metadata(values: Values, row: IsvcRow) -> dict[str, Any]:
    labels = {"app.kubernetes.io/part-of": "lift-wing", "app.kubernetes.io/name": row.isvc,
              "lift-wing/model-type": row.model_type}
    if row.is_revscoring:
        labels["lift-wing/wiki"] = row.dbname
    return {"name": row.isvc, "namespace": row.namespace, "labels": labels,
            "annotations": {DEPLOYMENT_MODE: values.raw["deployment_mode"]}}


def revscoring_service(values: Values, row: IsvcRow) -> dict[str, Any]:
    eventgate = values.raw["eventgate"]
    env = {
        "STORAGE_URI": values.storage_uri(row),
        "INFERENCE_NAME": row.isvc,
        "WIKI_URL": values.raw["mediawiki"]["url"],
        "WIKI_HOST": row.domain,
        "EVENTGATE_URL": eventgate["url"],
        "EVENTGATE_STREAM": eventgate["stream"] if eventgate["url"] else "",
    }
    image = row.images[0]
    predictor = component(values, image, [container(values, image, row.isvc, env)],
                          canary_percent(values, row.isvc))
    return {"apiVersion": API_VERSION, "kind": "InferenceService", "metadata": metadata(values, row),
            "spec": {"predictor": predictor}}


def outlink_service(values: Values, row: IsvcRow) -> dict[str, Any]:
    """Predictor (fastText model from storage) + transformer (MediaWiki outlinks -> features).
    KServe passes the transformer `--predictor_host` itself, pointing at this service's predictor."""
    predictor_image, transformer_image = row.images
    predictor_env = {"STORAGE_URI": values.storage_uri(row), "INFERENCE_NAME": row.isvc}
    # The transformer verifies page-change events against MediaWiki and posts the topic events (to the
    # outlink model's own stream: EVENTGATE_STREAM is left unset, it would name revscoring's for both).
    transformer_env = {"INFERENCE_NAME": row.isvc, "WIKI_URL": values.raw["mediawiki"]["url"],
                       "EVENTGATE_URL": values.raw["eventgate"]["url"]}
    canary = canary_percent(values, row.isvc)
    predictor = container(values, predictor_image, row.isvc, predictor_env, grpc=True)
    transformer = container(values, transformer_image, row.isvc, transformer_env)
    spec = {
        "predictor": component(values, predictor_image, [predictor], canary),
        "transformer": component(values, transformer_image, [transformer], canary),
    }
    return {"apiVersion": API_VERSION, "kind": "InferenceService", "metadata": metadata(values, row),
            "spec": spec}


def ores_service(values: Values) -> dict[str, Any]:
    """ORES's API (the `ores` image): no model, no storage; it calls the services above through Lift Wing."""
    ores = values.raw["ores"]
    env = {"LIFTWING_URL": ores["liftwing_url"]}
    predictor = component(values, "ores", [container(values, "ores", None, env)],
                          canary_percent(values, "ores"))
    predictor.pop("serviceAccountName")  # it reads no model storage
    labels = {"app.kubernetes.io/part-of": "lift-wing", "app.kubernetes.io/name": ores["name"]}
    annotations = {DEPLOYMENT_MODE: values.raw["deployment_mode"]}
    return {"apiVersion": API_VERSION, "kind": "InferenceService",
            "metadata": {"name": ores["name"], "namespace": ores["namespace"], "labels": labels,
                         "annotations": annotations},
            "spec": {"predictor": predictor}}


def inference_services(values: Values, rows: list[IsvcRow]) -> list[dict[str, Any]]:
    services = [revscoring_service(values, row) if row.is_revscoring else outlink_service(values, row)
                for row in rows]
    return services + [ores_service(values)]


def service_accounts(values: Values, rows: list[IsvcRow]) -> list[dict[str, Any]]:
    storage = values.raw["storage"]
    namespaces = sorted({row.namespace for row in rows})
    return [{"apiVersion": "v1", "kind": "ServiceAccount",
             "metadata": {"name": storage["service_account"], "namespace": namespace},
             "secrets": [{"name": storage["credentials_secret"]}]} for namespace in namespaces]


def documents(values: Values, rows: list[IsvcRow], with_service_accounts: bool = False) -> Iterator[dict]:
    if with_service_accounts:
        yield from service_accounts(values, rows)
    yield from inference_services(values, rows)


def render(values: Values, rows: list[IsvcRow], with_service_accounts: bool = False) -> str:
    return yaml.safe_dump_all(documents(values, rows, with_service_accounts), sort_keys=False,
                              default_flow_style=False, width=110, explicit_start=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--values", type=Path, default=DEFAULT_VALUES)
    parser.add_argument("--seed", type=Path, default=None,
                        help="seed table (default: $SEED_ISVCS or ../shared/seed-isvcs.tsv)")
    parser.add_argument("--service-accounts", action="store_true", help="also print the ServiceAccounts")
    args = parser.parse_args(argv)
    sys.stdout.write(render(Values.load(args.values), load_rows(args.seed), args.service_accounts))
    return 0


if __name__ == "__main__":
    sys.exit(main())
