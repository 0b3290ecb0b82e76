"""The home node's plan on a fake clock: tuners for channels, retries with backoff, reloads."""

from __future__ import annotations

import dataclasses

from ec_node.home.config import ChannelSpec
from ec_node.home.plan import Outcome, Plan, RetryPolicy, Start, Stop


def tuner(name: str) -> ChannelSpec:
    return ChannelSpec(name=name, roles=("objects",), source=f"hdhr://h:80/{name}", guide_number=name)


def remote(name: str) -> ChannelSpec:
    return ChannelSpec(name=name, roles=("relay",), source=None, remotes=("@peer.json",))


def started(actions: list[object]) -> list[tuple[str, int | None]]:
    return [(a.name, a.tuner) for a in actions if isinstance(a, Start)]


def stopped(actions: list[object]) -> list[str]:
    return [a.name for a in actions if isinstance(a, Stop)]


POLICY = RetryPolicy(base_s=2.0, cap_s=16.0, healthy_s=60.0)


def test_more_channels_than_tuners_run_in_config_order_and_wait() -> None:
    plan = Plan([tuner("7.1"), tuner("9.1"), remote("far"), tuner("11.1")], tuners=2, policy=POLICY)
    assert started(plan.step(0.0)) == [("7.1", 0), ("9.1", 1), ("far", None)]  # a relay takes no tuner
    assert plan.channels["11.1"].state == "queued" and plan.step(100.0) == []
    # a tuner frees: the waiting channel takes it
    assert started(plan.exited("9.1", Outcome.FAILED, 5.0, "no signal")) == [("11.1", 1)]
    assert plan.channels["9.1"].state == "retrying"
    # its retry is due, but every tuner is held: it waits its turn (nothing running is stopped for it)
    assert plan.step(7.0) == [] and plan.channels["9.1"].state == "queued"
    assert started(plan.exited("7.1", Outcome.BUSY, 8.0, "all tuners busy")) == [("9.1", 0)]


def test_retry_backoff_doubles_to_the_cap_and_a_healthy_run_resets_it() -> None:
    plan = Plan([tuner("7.1")], tuners=1, policy=POLICY)
    now = 0.0
    plan.step(now)
    delays = []
    for _ in range(5):
        now += 1.0  # each run fails a second after it started
        assert plan.exited("7.1", Outcome.FAILED, now, "unknown channel") == []
        st = plan.channels["7.1"]
        assert st.state == "retrying" and st.last_error == "unknown channel" and st.tuner is None
        assert st.retry_at is not None and plan.next_deadline() == st.retry_at
        delays.append(st.retry_at - now)
        assert plan.step(st.retry_at - 0.001) == []  # not a moment early
        now = st.retry_at
        assert started(plan.step(now)) == [("7.1", 0)]
    assert delays == [2.0, 4.0, 8.0, 16.0, 16.0]
    now += 600.0  # a long healthy run, then a fault: back to the first delay
    plan.exited("7.1", Outcome.FAILED, now, "cut")
    assert plan.channels["7.1"].retry_at == now + 2.0
    assert plan.channels["7.1"].starts == 6


def test_a_fault_touches_only_its_channel() -> None:
    plan = Plan([tuner("7.1"), tuner("9.1")], tuners=2, policy=POLICY)
    plan.step(0.0)
    assert plan.exited("9.1", Outcome.FAILED, 1.0, "boom") == []
    assert plan.channels["7.1"].state == "running" and plan.channels["7.1"].starts == 1


def test_ends_a_file_channel_but_retries_a_tuner_that_ended() -> None:
    file = ChannelSpec(name="f", roles=("objects",), source="/m.ts")
    plan = Plan([file, tuner("7.1")], tuners=1, policy=POLICY)
    plan.step(0.0)
    plan.exited("f", Outcome.OK, 30.0)
    assert plan.channels["f"].state == "ended" and plan.next_deadline() is None
    plan.exited("7.1", Outcome.OK, 30.0)
    assert plan.channels["7.1"].state == "retrying" and plan.channels["7.1"].last_error == "tuner stream ended"


def test_retries_a_remote_channel_whose_upstream_ended() -> None:
    # its upstream (another node's publisher) ended, e.g. to restart after its own tuner fault: a
    # viewer or relay of a live channel tries again (re-reading @FILE remotes) instead of ending for good
    plan = Plan([remote("far")], tuners=1, policy=POLICY)
    plan.step(0.0)
    assert plan.exited("far", Outcome.OK, 30.0) == []
    st = plan.channels["far"]
    assert st.state == "retrying" and st.last_error == "the stream it pulls ended" and st.retry_at == 32.0
    assert started(plan.step(32.0)) == [("far", None)] and st.starts == 2


def test_reload_keeps_unchanged_restarts_changed_stops_removed_adds_new() -> None:
    a, b, c = tuner("7.1"), tuner("9.1"), remote("far")
    plan = Plan([a, b, c], tuners=3, policy=POLICY)
    plan.step(0.0)
    b2 = dataclasses.replace(b, listen="0.0.0.0:4443")
    d = tuner("11.1")
    actions = plan.reload([a, b2, d], tuners=3, now=10.0)
    assert sorted(stopped(actions)) == ["9.1", "far"] and started(actions) == [("11.1", 2)]
    assert plan.channels["7.1"].state == "running" and plan.channels["7.1"].starts == 1  # untouched
    # the changed one starts again with its new spec once stopped; the removed one is forgotten
    again = plan.exited("9.1", Outcome.STOPPED, 11.0)
    assert started(again) == [("9.1", 1)] and plan.channels["9.1"].spec == b2
    assert plan.exited("far", Outcome.STOPPED, 11.0) == [] and "far" not in plan.channels
    assert plan.order == ["7.1", "9.1", "11.1"]


def test_reload_of_a_waiting_channel_clears_its_backoff() -> None:
    plan = Plan([tuner("7.1")], tuners=1, policy=POLICY)
    plan.step(0.0)
    for t in (1.0, 4.0, 9.0):
        plan.exited("7.1", Outcome.FAILED, t, "unknown channel")
        plan.step(plan.channels["7.1"].retry_at or 0.0)
    plan.exited("7.1", Outcome.FAILED, 30.0, "unknown channel")
    fixed = dataclasses.replace(tuner("7.1"), source="hdhr://h:80/7.2", guide_number="7.2")
    assert started(plan.reload([fixed], tuners=1, now=31.0)) == [("7.1", 0)]
    assert plan.channels["7.1"].failures == 0


def test_fewer_tuners_on_reload_sends_the_last_back_to_wait() -> None:
    specs = [tuner("7.1"), tuner("9.1"), tuner("11.1")]
    plan = Plan(specs, tuners=3, policy=POLICY)
    plan.step(0.0)
    assert stopped(plan.reload(specs, tuners=2, now=5.0)) == ["11.1"]
    assert plan.exited("11.1", Outcome.STOPPED, 6.0) == [] and plan.channels["11.1"].state == "queued"
    assert started(plan.reload(specs, tuners=3, now=7.0)) == [("11.1", 2)]


def test_removed_then_added_back_while_stopping_starts_again() -> None:
    a = remote("far")
    plan = Plan([a], tuners=None, policy=POLICY)
    plan.step(0.0)
    assert stopped(plan.reload([], tuners=None, now=1.0)) == ["far"]
    assert plan.reload([a], tuners=None, now=2.0) == []
    assert started(plan.exited("far", Outcome.STOPPED, 3.0)) == [("far", None)]


def test_stop_all_stops_each_running_channel_once() -> None:
    plan = Plan([tuner("7.1"), tuner("9.1"), remote("far")], tuners=1, policy=POLICY)
    plan.step(0.0)
    assert stopped(plan.stop_all()) == ["7.1", "far"]
    assert plan.stop_all() == [] and sorted(plan.running()) == ["7.1", "far"]


def test_without_a_tuner_count_every_tuner_channel_runs() -> None:
    plan = Plan([tuner(str(n)) for n in range(1, 6)], tuners=None, policy=POLICY)
    assert [t for _, t in started(plan.step(0.0))] == [0, 1, 2, 3, 4]
