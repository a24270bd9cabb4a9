"""Settings of the outlink servers, read once from the environment at start-up."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

DEFAULT_MODEL_PATH = Path("/mnt/models/model.bin")  # where KServe's storage initializer puts the model
MAX_OUTLINKS = 1000  # the model was trained on at most this many outlinks per article


@dataclass(frozen=True)
class OutlinkSettings:
    """`links_per_call` is the API's per-call limit for links ("max" = 500 for anonymous clients);
    tests lower it to exercise continuation on small pages."""

    model_path: Path = DEFAULT_MODEL_PATH
    links_per_call: str = "max"
    max_outlinks: int = MAX_OUTLINKS
    predictor_timeout_s: float = 10.0
    model_version: str | None = None  # the predicted_classification's model_version in events

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> OutlinkSettings:
        links_per_call = env.get("OUTLINK_LINKS_PER_CALL") or cls.links_per_call
        if links_per_call != "max" and not (links_per_call.isdigit() and 1 <= int(links_per_call) <= 500):
            raise ValueError(f"OUTLINK_LINKS_PER_CALL must be 'max' or 1..500, got {links_per_call!r}")
        return cls(
            model_path=Path(env.get("MODEL_PATH") or DEFAULT_MODEL_PATH),
            links_per_call=links_per_call,
            predictor_timeout_s=float(env.get("PREDICTOR_TIMEOUT_S") or cls.predictor_timeout_s),
            model_version=env.get("MODEL_VERSION") or None,
        )
