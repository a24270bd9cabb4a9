"""Prometheus metrics shared by every model server; the ModelServer exposes them on `/metrics`."""

import functools

from prometheus_client import Counter, Gauge, Histogram

MEDIAWIKI_LATENCY = Histogram(
    "mediawiki_request_duration_seconds",
    "Latency of successful MediaWiki Action API calls, retries included.",
    ["action"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)


@functools.cache
def mediawiki_latency(action: str) -> Histogram:
    """MEDIAWIKI_LATENCY's series for `action`: looked up once, not at every call (`labels` takes a lock and
    checks its arguments each time; two calls per scored edit, issue 20). Actions are a handful of names."""
    return MEDIAWIKI_LATENCY.labels(action=action)


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
SCORE_CACHE_HITS = Counter("score_cache_hits_total", "Scores served from the score cache.", ["backend"])
SCORE_CACHE_MISSES = Counter(
    "score_cache_misses_total", "Scores looked up and not found in the cache.", ["backend"]
)
SCORE_CACHE_ERRORS = Counter(
    "score_cache_errors_total",
    "Score cache calls that failed (the request went on without the cache).",
    ["backend"],
)
REQUESTS_REFUSED = Counter(
    "requests_refused_total",
    "Work refused because the server was at its limit (admission control), by what was full.",
    ["limit"],
)
EXTRACTION_TIMEOUTS = Counter(
    "feature_extraction_timeouts_total",
    "Extraction jobs stopped at EXTRACTION_TIMEOUT_S, by how (interrupted in the worker, worker replaced).",
    ["how"],
)
ADMISSION_LIMIT = Gauge(
    "admission_limit",
    "The bound on revisions in flight now: MAX_IN_FLIGHT (or its default), lowered while the workers' jobs "
    "queue longer than they would on cores of their own.",
)
