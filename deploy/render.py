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
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from deploy.seed_table import REPO_ROOT, IsvcRow, load_rows

DEFAULT_VALUES = REPO_ROOT / "deploy" / "values.yaml"
API_VERSION = "serving.kserve.io/v1beta1"
CONTAINER = "kserve-container"  # the name KServe's storage initializer and webhooks look for
OUTLINK_FAMILY = "outlink"


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


def container(values: Values, image: str, model_name: str | None, env: dict[str, str]) -> dict[str, Any]:
    return {
        "name": CONTAINER,
        "image": values.image(image),
        "env": env_list(env),
        "ports": [{"containerPort": values.raw["port"], "protocol": "TCP"}],
        "readinessProbe": readiness(values, model_name),
        "resources": values.resources(image),
    }


def component(values: Values, containers: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "serviceAccountName": values.raw["storage"]["service_account"],
        "minReplicas": values.raw["min_replicas"],
        "maxReplicas": values.raw["max_replicas"],
        "containers": containers,
    }


def metadata(row: IsvcRow) -> dict[str, Any]:
    labels = {"app.kubernetes.io/part-of": "lift-wing", "app.kubernetes.io/name": row.isvc,
              "lift-wing/model-type": row.model_type}
    if row.is_revscoring:
        labels["lift-wing/wiki"] = row.dbname
    return {"name": row.isvc, "namespace": row.namespace, "labels": labels}


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
    predictor = component(values, [container(values, row.images[0], row.isvc, env)])
    return {"apiVersion": API_VERSION, "kind": "InferenceService", "metadata": metadata(row),
            "spec": {"predictor": predictor}}


def outlink_service(values: Values, row: IsvcRow) -> dict[str, Any]:
    """Predictor (fastText model from storage) + transformer (MediaWiki outlinks -> features).
    KServe passes the transformer `--predictor_host` itself, pointing at this service's predictor."""
    predictor_image, transformer_image = row.images
    predictor_env = {"STORAGE_URI": values.storage_uri(row), "INFERENCE_NAME": row.isvc}
    transformer_env = {"INFERENCE_NAME": row.isvc, "WIKI_URL": values.raw["mediawiki"]["url"]}
    spec = {
        "predictor": component(values, [container(values, predictor_image, row.isvc, predictor_env)]),
        "transformer": component(values, [container(values, transformer_image, row.isvc, transformer_env)]),
    }
    return {"apiVersion": API_VERSION, "kind": "InferenceService", "metadata": metadata(row), "spec": spec}


def ores_service(values: Values) -> dict[str, Any]:
    """ORES's API (the `ores` image): no model, no storage; it calls the services above through Lift Wing."""
    ores = values.raw["ores"]
    env = {"LIFTWING_URL": ores["liftwing_url"]}
    predictor = component(values, [container(values, "ores", None, env)])
    predictor.pop("serviceAccountName")  # it reads no model storage
    labels = {"app.kubernetes.io/part-of": "lift-wing", "app.kubernetes.io/name": ores["name"]}
    return {"apiVersion": API_VERSION, "kind": "InferenceService",
            "metadata": {"name": ores["name"], "namespace": ores["namespace"], "labels": labels},
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
