"""Admission control: a bound on the work a server process has in flight; past it, a 503 at once.

Without a bound every request is accepted and waits its turn: at 512 clients each waited ~6 s, and
nothing was refused, so a client (or Kubernetes, retrying on another replica) could not tell an
overloaded replica from a slow one. With it, work beyond what the workers can finish soon is refused
within milliseconds, before any MediaWiki call, with `Retry-After`, and the work admitted keeps the
latency it has at saturation.

The unit is one revision to score: a `rev_ids` batch of 20 costs 20. A request costing more than the whole
bound is admitted only when nothing else is in flight (it costs the whole bound), so no valid request is
refused forever.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from wikiserve import metrics
from wikiserve.errors import ServingError

RETRY_AFTER_S = 1  # what Retry-After says: the admitted work of a full server is done within about a second


class Overloaded(ServingError):
    """The server has as much work in flight as it may (503 with Retry-After)."""

    status = 503
    error_type = "Overloaded"


class Admission:
    """Counts the work in flight and refuses what would go past `limit` (0: no limit)."""

    def __init__(self, limit: int, what: str = "revisions") -> None:
        self.limit = limit
        self.what = what
        self.in_flight = 0

    def full(self) -> bool:
        """Whether any new work would be refused now (the server's guard refuses it before parsing)."""
        return bool(self.limit) and self.in_flight >= self.limit

    def refusal(self) -> Overloaded:
        metrics.REQUESTS_REFUSED.labels(limit=self.what).inc()
        return Overloaded(
            f"The server is at its limit of {self.limit} {self.what} in flight; retry in "
            f"{RETRY_AFTER_S} s (or on another replica).",
            headers={"Retry-After": str(RETRY_AFTER_S)},
        )

    def cost(self, units: int) -> int:
        """What `units` of work count against the bound (at least 1, at most the whole bound)."""
        units = max(1, units)
        return min(units, self.limit) if self.limit else units

    def acquire(self, units: int) -> int:
        """Admits `units` of work or raises Overloaded; returns the cost to `release` later."""
        cost = self.cost(units)
        if self.limit and self.in_flight + cost > self.limit:
            raise self.refusal()
        self.in_flight += cost
        return cost

    def release(self, cost: int) -> None:
        self.in_flight -= cost

    @contextmanager
    def admitted(self, units: int) -> Iterator[None]:
        """Holds `units` of work for the block (Overloaded if they do not fit)."""
        cost = self.acquire(units)
        try:
            yield
        finally:
            self.release(cost)
