"""The seq gap tracker: gaps, duplicates, late arrivals that fill a gap, restarts."""

from __future__ import annotations

from ingest.gaps import Filled, Gap, GapTracker


def test_consecutive_and_duplicates_are_not_gaps():
    t = GapTracker()
    assert [t.see("d", s) for s in (1, 2, 3, 3, 2)] == [None] * 5
    assert t.total_missing == 0


def test_a_jump_reports_the_missing_count():
    t = GapTracker()
    t.see("d", 10)
    gap = t.see("d", 14)
    assert gap == Gap("d", 10, 14) and gap.missing == 3
    assert t.total_missing == 3


def test_late_arrival_fills_the_gap_once():
    t = GapTracker()
    t.see("d", 10)
    t.see("d", 13)
    assert t.see("d", 11) == Filled("d", 11)
    assert t.see("d", 11) is None  # a redelivery of it is a duplicate
    assert t.total_missing == 1


def test_devices_are_tracked_apart_and_restarts_followed():
    t = GapTracker()
    t.see("a", 5000)
    t.see("b", 1)
    assert t.see("b", 2) is None
    assert t.see("a", 1) is None  # counter restarted: far below, no gap
    assert t.see("a", 2) is None
    assert t.total_missing == 0
