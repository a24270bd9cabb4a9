"""The inference services this server can be: `<dbname>-<model type>`, with each wiki's public domain.

Production containers cannot read the seed table, so the package ships `inference_services.tsv`, generated
from it (`python -m revscoring_server.services SEED_TSV > .../inference_services.tsv`); a test checks that
both agree.
"""

from __future__ import annotations

import csv
import functools
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from revscoring_server.model_types import MODEL_TYPES, ModelType

DATA_FILE = "inference_services.tsv"
_HEADER = (
    "# Generated from the seed table (../shared/seed-isvcs.tsv): "
    "`python -m revscoring_server.services SEED_TSV`.\n# isvc\tmodel_type\tdbname\tdomain\tnamespace\n"
)


class UnknownService(ValueError):
    """The inference service name is not one this server knows."""


@dataclass(frozen=True)
class Service:
    isvc: str
    model_type: str
    dbname: str
    domain: str
    namespace: str  # the Kubernetes namespace: the `ores` image calls `<isvc>.<namespace>.wikimedia.org`

    @property
    def type(self) -> ModelType:
        return MODEL_TYPES[self.model_type]


@functools.cache
def load_services() -> dict[str, Service]:
    """Every inference service of the shipped table, by name."""
    text = resources.files("revscoring_server").joinpath(DATA_FILE).read_text(encoding="utf-8")
    services = [Service(*fields) for fields in _tsv_rows(text.splitlines())]
    return {service.isvc: service for service in services}


def parse_isvc(isvc: str) -> tuple[str, str]:
    """Splits `<dbname>-<model type>` (dbnames have no '-'; the type is the part after the last one)."""
    dbname, sep, model_type = isvc.rpartition("-")
    if not sep or not dbname or model_type not in MODEL_TYPES:
        raise UnknownService(
            f"Unknown inference service name {isvc!r}: expected '<dbname>-<model type>' with a model type "
            f"among {', '.join(sorted(MODEL_TYPES))}."
        )
    return dbname, model_type


def find_service(isvc: str) -> Service:
    """The service named `isvc`, or UnknownService with a message saying what is wrong with the name."""
    dbname, model_type = parse_isvc(isvc)
    service = load_services().get(isvc)
    if service is None:
        wikis = sorted(s.dbname for s in load_services().values() if s.model_type == model_type)
        raise UnknownService(
            f"Unknown inference service {isvc!r}: there is no {model_type} model for "
            f"{dbname!r}; {model_type} serves {', '.join(wikis)}."
        )
    return service


def render(seed_table: Path) -> str:
    """The data file's content for the revscoring rows of a seed table (`isvc type dbname domain ...`)."""
    with open(seed_table, encoding="utf-8", newline="") as handle:
        rows = [fields for fields in _tsv_rows(handle) if fields[1] in MODEL_TYPES]
    return _HEADER + "".join(
        f"{isvc}\t{model_type}\t{dbname}\t{domain}\t{namespace}\n"
        for isvc, model_type, dbname, domain, _language, namespace, *_ in rows
    )


def _tsv_rows(lines: Iterable[str]) -> list[list[str]]:
    content = [line for line in lines if line.strip() and not line.startswith("#")]
    return list(csv.reader(content, delimiter="\t"))


if __name__ == "__main__":
    sys.stdout.write(render(Path(sys.argv[1])))
