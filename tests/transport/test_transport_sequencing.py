"""ContinuityTracker: ordering, dedupe, holes, backfill and gaps (pure)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from ec_node.transport.sequencing import ContinuityTracker, Event, GapEvent, GroupEvent


def p(seq: int) -> bytes:
    return b"g%d" % seq


def test_in_order() -> None:
    t = ContinuityTracker()
    assert t.push(5, p(5)) == [GroupEvent(5, p(5))]
    assert t.push(6, p(6)) == [GroupEvent(6, p(6))]
    assert not t.has_hole()


def test_reorder_without_backfill() -> None:
    t = ContinuityTracker(0)
    assert t.push(1, p(1)) == []
    assert t.has_hole() and t.backfill_targets() == [0]
    assert t.push(0, p(0)) == [GroupEvent(0, p(0)), GroupEvent(1, p(1))]
    assert not t.has_hole()


def test_duplicates_dropped() -> None:
    t = ContinuityTracker(0)
    t.push(0, p(0))
    assert t.push(0, p(0)) == []
    t.push(2, p(2))
    assert t.push(2, p(2)) == []


def test_backfill_fills_and_gaps() -> None:
    t = ContinuityTracker(0)
    t.push(0, p(0))
    assert t.push(4, p(4)) == []
    assert t.backfill_targets() == [1, 2, 3]
    events = t.apply_backfill({1: p(1), 2: None})
    assert events == [GroupEvent(1, p(1), backfilled=True), GapEvent(2, 4), GroupEvent(4, p(4))]
    # the live copy of a backfilled group is a duplicate; a gapped one arriving late is delivered
    assert t.push(1, p(1)) == []
    assert t.push(3, p(3)) == [GroupEvent(3, p(3), late=True)]
    assert t.push(3, p(3)) == []


def test_huge_jump_fetches_only_near_live_edge() -> None:
    t = ContinuityTracker(0, max_backfill=2)
    t.push(0, p(0))
    t.push(10**12, b"x")
    assert t.backfill_targets() == [10**12 - 2, 10**12 - 1]
    events = t.apply_backfill({10**12 - 1: b"y"})
    assert events == [GapEvent(1, 10**12 - 1), GroupEvent(10**12 - 1, b"y", backfilled=True), GroupEvent(10**12, b"x")]


def test_first_seen_sets_start_and_earlier_arrivals_are_late() -> None:
    t = ContinuityTracker()
    assert t.push(3, p(3)) == [GroupEvent(3, p(3))]
    assert t.push(2, p(2)) == [GroupEvent(2, p(2), late=True)]


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.integers(0, 40), min_size=1, max_size=80),
    st.sets(st.integers(0, 40)),
    st.integers(0, 8),
)
def test_every_sequence_accounted_for_exactly_once(arrivals: list[int], fetchable: set[int], max_bf: int) -> None:
    """With an explicit start, each sequence in [0, max seen] is emitted once: as a group or in a gap
    (a gapped one may later also arrive late, never twice)."""
    t = ContinuityTracker(0, max_backfill=max_bf)
    events: list[Event] = []
    for seq in arrivals:
        events += t.push(seq, p(seq))
    while t.has_hole():
        events += t.apply_backfill({s: p(s) for s in t.backfill_targets() if s in fetchable})
    groups = [e for e in events if isinstance(e, GroupEvent)]
    gapped = {s for e in events if isinstance(e, GapEvent) for s in range(e.start, e.end)}
    seen = [g.sequence for g in groups]
    assert len(seen) == len(set(seen))
    for g in groups:
        assert g.payload == p(g.sequence)
    assert set(seen) | gapped == set(range(max(arrivals) + 1))
    in_order = [g.sequence for g in groups if not g.late]
    assert in_order == sorted(in_order)
    assert all(g.sequence in gapped for g in groups if g.late)
    assert set(arrivals) <= set(seen) | gapped
