"""Reading a server's Prometheus `/metrics` in tests."""

from __future__ import annotations

import re
from collections.abc import Mapping

import requests

from testkit.servers import ServerProcess


def metric_samples(server: ServerProcess) -> dict[str, float]:
    """Every sample of the server's Prometheus `/metrics`, keyed by `name{labels}` as exposed."""
    text = requests.get(f"{server.url}/metrics", timeout=10).text
    samples = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.rpartition(" ")
            samples[key] = float(value)
    return samples


def metric_sum(samples: Mapping[str, float], name: str, **labels: str) -> float:
    """The sum over samples of `name` whose labels include `labels`."""
    total = 0.0
    for key, value in samples.items():
        match = re.fullmatch(rf"{re.escape(name)}(?:{{(.*)}})?", key)
        if match and all(f'{k}="{v}"' in (match.group(1) or "") for k, v in labels.items()):
            total += value
    return total


def metric_delta(before: Mapping[str, float], after: Mapping[str, float], name: str, **labels: str) -> float:
    return metric_sum(after, name, **labels) - metric_sum(before, name, **labels)
