"""Prometheus metrics shared by every model server; the ModelServer exposes them on `/metrics`."""

from prometheus_client import Counter, Histogram

MEDIAWIKI_LATENCY = Histogram(
    "mediawiki_request_duration_seconds",
    "Latency of successful MediaWiki Action API calls, retries included.",
    ["action"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
MEDIAWIKI_ERRORS = Counter(
    "mediawiki_request_errors_total",
    "Failed MediaWiki Action API attempts, by kind of failure.",
    ["kind"],
)
FEATURE_EXTRACTION_SECONDS = Histogram(
    "feature_extraction_duration_seconds",
    "Time to extract features and score one request, off the event loop (worker queueing included).",
    ["model"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
EVENTS_SENT = Counter("eventgate_events_sent_total", "Events accepted by EventGate.", ["stream"])
EVENTS_FAILED = Counter("eventgate_events_failed_total", "Events EventGate did not accept.", ["stream"])
