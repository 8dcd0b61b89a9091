"""Replay: which waiting book an unnamed REST snapshot answer belongs to."""

from __future__ import annotations

from gapless.venues.seqsync import pick_snapshot_owner as pick


def test_the_oldest_outstanding_request_owns_the_answer() -> None:
    asked = {"A": 1, "B": 2}
    assert pick([("A", True, 10), ("B", True, 5000)], 12, asked) == "A"
    assert pick([("A", True, None), ("B", True, None)], 7, {"A": 2, "B": 1}) == "B"
    assert pick([("A", True, 10), ("B", True, 10**9)], 12, {"A": 2, "B": 1}) == "A"


def test_unless_another_books_ids_are_over_1000_times_nearer() -> None:
    asked = {"A": 1, "B": 2}
    assert pick([("A", True, 10), ("B", True, 5_000_000)], 5_000_001, asked) == "B"
    # without a reference for the oldest, request order is trusted
    assert pick([("A", True, None), ("B", True, 5000)], 5001, asked) == "A"


def test_nothing_outstanding_the_nearest_then_the_registry_order() -> None:
    asked = {"A": 1, "B": 2}
    assert pick([("A", False, 10), ("B", False, 5000)], 4990, asked) == "B"
    assert pick([("A", False, None), ("B", False, None)], None, asked) == "A"
    assert pick([("A", True, 10), ("B", False, 10)], None, asked) == "A"
