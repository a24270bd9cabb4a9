"""The public Lift Wing response, and the scores of the `mediawiki/revision/score` event."""

from __future__ import annotations

from typing import Any


def build_response(
    dbname: str, model_name: str, version: str | None, rev_id: int, entry: dict[str, Any]
) -> dict[str, Any]:
    """`{dbname: {"models": {name: {"version"}}, "scores": {"<rev_id>": {name: {"score": ...}}}}}`."""
    return {
        dbname: {"models": {model_name: {"version": version}}, "scores": {str(rev_id): {model_name: entry}}}
    }


def event_scores(model_name: str, version: str | None, score: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The `scores` map of a revision-score event: predictions as a list of strings, as the schema wants."""
    prediction = score["prediction"]
    labels = prediction if isinstance(prediction, list) else [prediction]
    return {
        model_name: {
            "model_name": model_name,
            "model_version": str(version),
            "prediction": [_label(label) for label in labels],
            "probability": {str(label): float(value) for label, value in score["probability"].items()},
        }
    }


def _label(label: Any) -> str:
    if isinstance(label, bool):
        return "true" if label else "false"
    return str(label)
