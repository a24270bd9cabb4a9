"""Settings of the outlink servers, read once from the environment at start-up."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from wikiserve import config
from wikiserve.config import OUTLINK, read_settings

DEFAULT_MODEL_PATH = Path(config.DEFAULT_MODEL_PATH)
MAX_OUTLINKS = 1000  # the model was trained on at most this many outlinks per article


@dataclass(frozen=True)
class OutlinkSettings:
    """`links_per_call` is the API's per-call limit for links ("max" = 500 for anonymous clients);
    tests lower it to exercise continuation on small pages."""

    model_path: Path = DEFAULT_MODEL_PATH
    links_per_call: str = config.default("OUTLINK_LINKS_PER_CALL")
    max_outlinks: int = MAX_OUTLINKS
    predictor_timeout_s: float = config.default("PREDICTOR_TIMEOUT_S")
    model_version: str | None = config.default("MODEL_VERSION")  # predicted_classification's model_version

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> OutlinkSettings:
        """Raises SettingsError (a ValueError) naming each bad variable; see `wikiserve.config.SETTINGS`."""
        return cls.from_values(read_settings(env, OUTLINK))

    @classmethod
    def from_values(cls, values: Mapping[str, Any]) -> OutlinkSettings:
        return cls(
            model_path=Path(values["MODEL_PATH"] or DEFAULT_MODEL_PATH),
            links_per_call=values["OUTLINK_LINKS_PER_CALL"],
            predictor_timeout_s=values["PREDICTOR_TIMEOUT_S"],
            model_version=values["MODEL_VERSION"],
        )
