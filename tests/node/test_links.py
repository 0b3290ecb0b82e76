"""Link liveness deadlines on the chunk clock."""

from __future__ import annotations

from ec_node.node.events import Track
from ec_node.node.links import Ending, Link, LinkPhase


def test_an_up_link_stalls_after_its_stall_period_from_the_last_group() -> None:
    lk = Link("a", Track.CHUNKS, stall_s=4.0)
    assert lk.stall_deadline() is None  # connecting: not yet
    lk.enter(LinkPhase.UP, 1.0)
    assert lk.stall_deadline() == 5.0 and lk.ever_up
    lk.last_group_at = 3.0
    assert lk.stall_deadline() == 7.0


def test_a_stalled_link_reconnects_after_more_silence() -> None:
    lk = Link("a", Track.CHUNKS, stall_s=4.0)
    lk.enter(LinkPhase.STALLED, 10.0)
    assert lk.reconnect_deadline(3.0) == 22.0 and lk.stall_deadline() is None


def test_a_lost_link_is_given_up_from_the_first_failure_of_the_outage() -> None:
    lk = Link("a", Track.MANIFESTS, stall_s=6.0)
    lk.enter(LinkPhase.LOST, 2.0)
    lk.enter(LinkPhase.LOST, 9.0)  # retries do not restart the clock
    assert lk.give_up_deadline(30.0) == 32.0
    lk.enter(LinkPhase.UP, 10.0)
    assert lk.give_up_deadline(30.0) is None and lk.lost_since is None


def test_final_phases() -> None:
    assert {p for p in LinkPhase if p.final} == {LinkPhase.ENDED, LinkPhase.GONE, LinkPhase.DROPPED}


def test_an_ending_is_final_after_its_grace_or_after_one_fetch_and_a_second_grace() -> None:
    e = Ending.at(10.0, 0.5)
    assert e.waiting(10.4) and not e.waiting(10.5)
    assert e.settle(10.5, (7, 8)) == (7, 8) and e.until == 11.0  # fetched once: a second grace
    assert e.waiting(10.9)
    assert e.settle(11.0, (8,)) == () and e.until is None  # never twice: the end is final
    quiet = Ending.at(0.0, 0.5)
    assert quiet.settle(0.5, ()) == () and quiet.until is None
