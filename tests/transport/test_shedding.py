"""Shedding rules: a chunks reader that falls behind is shed; a manifests-only one never; the door closes at the cap."""

from __future__ import annotations

from ec_node.transport.shedding import SessionMeter, ShedLimits, pick_shed, refuse_reason, shed_reason

MB = 1_000_000
LIMITS = ShedLimits(max_sessions=2, max_lag_bytes=10 * MB)


def test_a_reader_that_keeps_up_is_kept() -> None:
    m = SessionMeter(published_at_start=100 * MB, sent_at_start=0)
    assert m.lag(200 * MB, 99 * MB) == 1 * MB
    assert shed_reason(m, 200 * MB, 99 * MB, LIMITS) is None


def test_a_chunks_reader_that_falls_behind_is_shed() -> None:
    m = SessionMeter(0, 0)
    assert shed_reason(m, 100 * MB, 89 * MB, LIMITS) is not None
    assert "behind" in (shed_reason(m, 100 * MB, 30 * MB, LIMITS) or "")


def test_a_manifests_only_reader_is_never_judged_by_lag() -> None:
    m = SessionMeter(0, 0)
    assert shed_reason(m, 1000 * MB, 2 * MB, LIMITS) is None  # 0.2 % of the bytes: not a chunks reader


def test_history_sent_to_a_late_joiner_is_no_lag_and_no_credit_either() -> None:
    m = SessionMeter(published_at_start=500 * MB, sent_at_start=0)
    assert m.lag(510 * MB, 64 * MB) == 0  # 64 MB of history: ahead of the live bytes
    assert shed_reason(m, 560 * MB, 100 * MB, LIMITS) is not None  # then 14 MB behind that best


def test_no_lag_limit_never_sheds() -> None:
    assert shed_reason(SessionMeter(0, 0), 10**12, 10**11, ShedLimits(max_lag_bytes=None)) is None


def test_the_door_closes_at_the_cap() -> None:
    assert refuse_reason(1, LIMITS) is None
    assert refuse_reason(2, LIMITS) == "2 sessions already (limit 2)"
    assert refuse_reason(10**6, ShedLimits(max_sessions=None)) is None


def test_a_chunks_reader_that_starves_later_is_still_judged() -> None:
    m = SessionMeter(0, 0)
    assert shed_reason(m, 10 * MB, 10 * MB, LIMITS) is None and m.chunks_reader
    assert shed_reason(m, 100 * MB, 11 * MB, LIMITS) is not None  # then it falls 89 MB behind


def test_when_all_together_lag_too_much_the_furthest_behind_go_first() -> None:
    limits = ShedLimits(max_lag_bytes=10 * MB, max_total_lag_bytes=12 * MB)
    meters = {k: SessionMeter(0, 0) for k in "abcd"}
    assert pick_shed(meters, 10 * MB, dict.fromkeys("abcd", 10 * MB), limits) == {}  # all keep up
    sent = {"a": 19 * MB, "b": 15 * MB, "c": 12 * MB, "d": 11 * MB}  # lags 1, 5, 8, 9 MB: 23 MB together
    shed = pick_shed(meters, 20 * MB, sent, limits)
    assert sorted(shed) == ["c", "d"] and "furthest behind" in shed["d"]  # 23 - 9 - 8 = 6 MB <= 12 MB
    assert pick_shed({"m": SessionMeter(0, 0)}, 10**9, {"m": 0}, limits) == {}  # never took a share: not judged
