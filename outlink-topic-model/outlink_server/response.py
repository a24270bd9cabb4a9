"""The response both servers return: the article's URL and its topics above the threshold."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any
from urllib.parse import quote

from outlink_server import MODEL_NAME
from outlink_server.request import OutlinkRequest

# Characters MediaWiki leaves unescaped in article URLs (its wfUrlencode); everything else is %-encoded.
_URL_SAFE = ";@$!*(),/~:"


def article_url(domain: str, title: str | None, page_id: int | None) -> str:
    """By title when there is one (an event gives both), else by page id."""
    if title is None:
        return f"https://{domain}/wiki/?curid={page_id}"
    return f"https://{domain}/wiki/{quote(title.strip().replace(' ', '_'), safe=_URL_SAFE)}"


def build_response(request: OutlinkRequest, scores: Iterable[tuple[str, float]]) -> dict[str, Any]:
    """`scores` are (topic, probability) pairs; kept are those at or above the request's threshold,
    highest first (ties by topic name, so equal requests give equal responses)."""
    results = [{"topic": topic, "score": score} for topic, score in scores if score >= request.threshold]
    results.sort(key=lambda result: (-result["score"], result["topic"]))
    article = article_url(request.domain, request.page_title, request.page_id)
    return {"prediction": {"article": article, "results": results}}


def classification(request: OutlinkRequest, scores: Iterable[tuple[str, float]], version: str | None
                   ) -> dict[str, Any]:
    """The prediction_classification_change event's `predicted_classification`: the topics the answer gives
    (at the request's threshold), and every topic's probability."""
    scores = list(scores)
    results = build_response(request, scores)["prediction"]["results"]
    return {"model_name": MODEL_NAME, "model_version": version or "",
            "predictions": [result["topic"] for result in results], "probabilities": dict(scores)}
