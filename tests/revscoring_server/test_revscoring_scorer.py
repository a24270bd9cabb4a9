"""The scorer's own parts that need no server: the brief memory of missing revisions.

The scorer itself is exercised through every route by the server tests (test_revscoring_reference.py
compares each road with revscoring's own extraction; test_revscoring_ores.py counts its MediaWiki calls)."""

from __future__ import annotations

from revscoring_server.fetch import UnscorableRevision
from revscoring_server.scorer import RecentlyMissing


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def missing(rev_id: int) -> UnscorableRevision:
    return UnscorableRevision("RevisionNotFound", f"Revision {rev_id} does not exist.")


def test_a_missing_revision_is_remembered_for_its_ttl_only():
    clock = Clock()
    memory = RecentlyMissing(30, clock=clock)
    error = missing(7)
    memory.remember(7, error)
    assert memory.get(7) is error and memory.get(8) is None
    clock.now += 29.9
    assert memory.get(7) is error
    clock.now += 0.2
    assert memory.get(7) is None


def test_the_memory_is_bounded_and_forgets_the_oldest_first():
    memory = RecentlyMissing(30, size=3, clock=Clock())
    for rev_id in range(1, 6):
        memory.remember(rev_id, missing(rev_id))
    assert [memory.get(rev_id) is not None for rev_id in range(1, 6)] == [False, False, True, True, True]


def test_a_ttl_of_zero_remembers_nothing():
    memory = RecentlyMissing(0, clock=Clock())
    memory.remember(7, missing(7))
    assert memory.get(7) is None
