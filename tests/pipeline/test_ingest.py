"""The ingest source layer: reconnect decisions, and live sources over real HTTP (the PCR clock is tests/ts)."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ec_node.devkit.emulator import HdhrEmulator
from ec_node.errors import BadInputError, TunerBusyError, UnreachableError
from ec_node.pipeline.ingest import (
    Connection,
    PcrPacer,
    ReconnectPlan,
    ReconnectPolicy,
    _open_url,
    open_hdhr,
    open_source,
    pace_by_pcr,
    read_url,
    reconnecting,
)
from ec_node.ts.pcr import pcr_span_s

from support.pcrts import FakeClock, pcr_packet

FAST = ReconnectPolicy(backoff_s=0.001, max_backoff_s=0.004)


# -- the pure plan ------------------------------------------------------------------------------


def test_plan_natural_end_and_duration_reached_are_done() -> None:
    assert ReconnectPlan(None).stream_ended(1000, 5.0, natural_end=True).action == "done"
    plan = ReconnectPlan(12.0)
    assert plan.stream_ended(1000, 11.5, natural_end=False).action == "done"  # within the slack
    assert plan.reconnects == 0


def test_plan_cut_asks_for_the_remaining_seconds() -> None:
    plan = ReconnectPlan(12.0)
    n = plan.stream_ended(1000, 4.0, natural_end=False)
    assert (n.action, n.attempt, n.request_s) == ("reconnect", 1, 8.0)
    n = plan.stream_ended(1000, 5.0, natural_end=False)
    assert (n.action, n.attempt, n.request_s) == ("reconnect", 1, 3.0)  # data reset the count
    assert plan.stream_ended(1000, 2.5, natural_end=False).action == "done"
    assert plan.reconnects == 2


def test_plan_first_connection_empty_is_attempt_one() -> None:
    plan = ReconnectPlan(None)
    assert plan.stream_ended(0, 0.0, natural_end=False).attempt == 1  # the first open is not a reconnect
    assert plan.stream_ended(0, 0.0, natural_end=False).attempt == 2  # that reconnect sent nothing


def test_plan_gives_up_after_consecutive_failures_with_doubling_backoff() -> None:
    pol = ReconnectPolicy(max_attempts=4, backoff_s=0.5, max_backoff_s=1.5)
    plan = ReconnectPlan(None, pol)
    first = plan.stream_ended(1000, 3.0, natural_end=False)
    assert (first.attempt, first.delay_s) == (1, 0.5)
    steps = [plan.open_failed(), plan.stream_ended(0, 0.0, natural_end=False), plan.open_failed()]
    assert [(s.action, s.attempt, s.delay_s) for s in steps] == [
        ("reconnect", 2, 1.0),
        ("reconnect", 3, 1.5),  # capped
        ("reconnect", 4, 1.5),
    ]
    assert plan.open_failed().action == "give_up"


@given(st.lists(st.one_of(st.just(None), st.tuples(st.integers(0, 10**6), st.floats(0, 30))), max_size=40))
def test_plan_is_bounded(events: list[tuple[int, float] | None]) -> None:
    pol = ReconnectPolicy(max_attempts=3, backoff_s=0.5, max_backoff_s=4.0)
    plan = ReconnectPlan(60.0, pol)
    for ev in events:
        before = plan.consumed_s
        n = plan.open_failed() if ev is None else plan.stream_ended(ev[0], ev[1], natural_end=False)
        assert plan.consumed_s >= before
        if n.action == "reconnect":
            assert 1 <= n.attempt <= pol.max_attempts and 0 < n.delay_s <= pol.max_backoff_s
            assert n.request_s is not None and n.request_s > pol.end_slack_s
            assert n.request_s == pytest.approx(60.0 - plan.consumed_s)
        else:
            assert n.action in ("done", "give_up")
            assert n.action == "give_up" or plan.consumed_s >= 60.0 - pol.end_slack_s
            return


# -- the reconnect shell with plain connections ---------------------------------------------------


class _Conn:
    def __init__(self, parts: list[bytes], reason: str = "eof") -> None:
        self.parts = parts
        self.reason = reason
        self.closed = False

    def connection(self) -> Connection:
        return Connection(iter(self.parts), end_reason=lambda: self.reason, close=self._close)

    def _close(self) -> None:
        self.closed = True


def test_reconnecting_joins_connections_and_gives_up_with_the_last_error() -> None:
    conns = [_Conn([b"a", b"b"]), _Conn([b"c"], "reset")]
    asked: list[float | None] = []
    sleeps: list[float] = []
    failures = iter([UnreachableError("refused"), None, UnreachableError("refused"), UnreachableError("again")])

    def reopen(request_s: float | None) -> Connection:
        asked.append(request_s)
        exc = next(failures)
        if exc is not None:
            raise exc
        return conns[1].connection()

    pol = ReconnectPolicy(max_attempts=2, backoff_s=0.25, max_backoff_s=10)
    it = reconnecting(conns[0].connection(), reopen, what="src", policy=pol, sleep=sleeps.append)
    got = [next(it), next(it), next(it)]
    assert got == [b"a", b"b", b"c"] and conns[0].closed
    with pytest.raises(UnreachableError, match=r"src: gave up after 2 failed reconnects: again"):
        next(it)
    assert asked == [None] * 4
    assert sleeps == [0.25, 0.5, 0.25, 0.5]  # the reconnect that delivered data reset the backoff
    assert conns[1].closed


def test_reconnecting_closes_the_open_connection_when_the_consumer_stops() -> None:
    c = _Conn([b"x", b"y"])
    it = reconnecting(c.connection(), lambda _: c.connection(), what="src", policy=FAST)
    assert next(it) == b"x"
    it.close()  # type: ignore[attr-defined]
    assert c.closed


def test_reconnecting_gives_up_when_reconnects_send_nothing() -> None:
    it = reconnecting(_Conn([b"x"]).connection(), lambda _: _Conn([]).connection(), what="src", policy=FAST)
    assert next(it) == b"x"
    with pytest.raises(UnreachableError, match="reconnects that sent nothing"):
        next(it)


def test_a_stop_before_the_cut_ends_reconnecting_without_a_reconnect() -> None:
    stop = threading.Event()
    opened: list[float | None] = []
    it = reconnecting(_Conn([b"x"]).connection(), lambda r: opened.append(r) or _Conn([]).connection(),
                      what="src", policy=ReconnectPolicy(backoff_s=3600.0), stop=stop)  # fmt: skip
    assert next(it) == b"x"
    stop.set()  # SIGINT: then the device cuts the stream
    assert list(it) == [] and opened == []  # no hour-long backoff, no reopen, no "gave up" (exit 4)


def test_a_stop_during_failing_reconnects_ends_them_quietly() -> None:
    stop = threading.Event()
    opened: list[float | None] = []

    def reopen(request_s: float | None) -> Connection:
        opened.append(request_s)
        stop.set()  # SIGINT arrives while this reconnect fails
        raise UnreachableError("refused")

    it = reconnecting(_Conn([b"x"]).connection(), reopen, what="src", policy=FAST, stop=stop)
    assert next(it) == b"x"
    assert list(it) == []  # without the stop: FAST.max_attempts reopens, then UnreachableError
    assert len(opened) == 1


# -- files never reconnect ------------------------------------------------------------------------


def test_a_file_is_read_once(media_mpeg2: Path) -> None:
    assert b"".join(open_source(str(media_mpeg2), duration_s=30)) == media_mpeg2.read_bytes()


# -- hdhr:// against the emulator ---------------------------------------------------------------


def test_hdhr_cut_reconnects_for_the_remaining_duration(media_mpeg2: Path) -> None:
    one_pass = pcr_span_s(media_mpeg2.read_bytes())
    with HdhrEmulator(media_mpeg2, serve_speed=0, cut_after_s=4.0) as emu:
        data = b"".join(open_hdhr(f"127.0.0.1:{emu.http_port}", "7.1", 10.0, FAST))
        assert emu.streams_served == 3  # 4 s, 4 s, then the 2 s still owed
    # never more than asked; short by less than the end slack (the last PCR interval of each piece)
    assert 9.0 <= pcr_span_s(data) <= 10.0 < one_pass


def test_hdhr_end_at_the_requested_duration_is_not_a_reconnect(media_mpeg2: Path) -> None:
    with HdhrEmulator(media_mpeg2, serve_speed=0) as emu:
        data = b"".join(open_source(f"hdhr://127.0.0.1:{emu.http_port}/7.1", 5.0))
        assert emu.streams_served == 1
    assert 4.0 <= pcr_span_s(data) <= 5.0


def test_hdhr_device_gone_ends_with_unreachable(media_mpeg2: Path) -> None:
    emu = HdhrEmulator(media_mpeg2, serve_speed=1).start()
    try:
        it = open_hdhr(f"127.0.0.1:{emu.http_port}", "7.1", None, ReconnectPolicy(max_attempts=2, backoff_s=0.001))
        assert next(it)
    finally:
        emu.stop()
    with pytest.raises(UnreachableError, match=r"gave up after 2 failed reconnects: .*unreachable"):
        for _ in it:
            pass


# -- http(s) URL sources against a real stdlib server ---------------------------------------------


class _Http:
    """Serves ``body`` per request: close-delimited (a live stream) or with Content-Length.

    The first ``busy`` requests get 503 with ``X-HDHomeRun-Error: 805``.
    """

    def __init__(self, body: bytes, *, length: bool, busy: int = 0, status: int = 200) -> None:
        self.body, self.length, self.busy, self.status = body, length, busy, status
        self.requests = 0
        outer = self

        class H(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"

            def log_message(self, *a: Any) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802
                outer.requests += 1
                if outer.requests <= outer.busy:
                    self.send_response(503)
                    self.send_header("X-HDHomeRun-Error", "805 All Tuners In Use")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(outer.status)
                if outer.length:
                    self.send_header("Content-Length", str(len(outer.body)))
                self.end_headers()
                self.wfile.write(outer.body)

        self.srv = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.url = f"http://127.0.0.1:{self.srv.server_address[1]}/auto/v7.1"
        self.thread = threading.Thread(target=self.srv.serve_forever, args=(0.05,), daemon=True)

    def __enter__(self) -> _Http:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.srv.shutdown()
        self.srv.server_close()
        self.thread.join()


@pytest.fixture(scope="module")
def head_3s(media_mpeg2: Path) -> bytes:
    """About 3 s of the media (whole packets), so each request serves a known media time."""
    data = media_mpeg2.read_bytes()
    n = len(data) // 4 // 188 * 188
    assert 2.0 < pcr_span_s(data[:n]) < 4.0
    return data[:n]


def test_url_with_content_length_is_finite_and_read_once(head_3s: bytes) -> None:
    with _Http(head_3s, length=True) as srv:
        assert b"".join(read_url(srv.url)) == head_3s
        assert srv.requests == 1


def test_url_live_body_cut_reconnects_until_duration(head_3s: bytes) -> None:
    span = pcr_span_s(head_3s)
    with _Http(head_3s, length=False) as srv:
        data = b"".join(read_url(srv.url, 2 * span + 2.0, FAST))
        # two whole bodies leave 2 s owed (more than the slack): a third request
        assert srv.requests == 3 and data == head_3s * 3


def test_url_busy_backs_off_then_streams(head_3s: bytes, caplog: pytest.LogCaptureFixture) -> None:
    with _Http(head_3s, length=True, busy=2) as srv:
        conn = _open_url(srv.url, None, backoff_s=0.001)
        assert b"".join(conn.reads) == head_3s and conn.natural_end()
        assert srv.requests == 3
    busy = [r.getMessage() for r in caplog.records if "busy" in r.getMessage()]
    assert len(busy) == 2 and "805 All Tuners In Use" in busy[0] and "retry 1/5" in busy[0]


def test_url_busy_for_ever_is_tuner_busy(head_3s: bytes) -> None:
    with _Http(head_3s, length=True, busy=100) as srv:
        with pytest.raises(TunerBusyError, match="still busy after 2 retries"):
            _open_url(srv.url, None, busy_retries=2, backoff_s=0.001)
        assert srv.requests == 3


def test_url_not_found_is_bad_input(head_3s: bytes) -> None:
    with _Http(b"", length=True, status=404) as srv, pytest.raises(BadInputError, match="HTTP 404"):
        read_url(srv.url)


# -- real-time pacing (the pure pacer, and its shell on a fake clock) --------------------------------


def test_pacer_anchors_at_the_first_pcr_it_is_fed_and_again_after_a_jump() -> None:
    p = PcrPacer()
    assert p.wait_s(b"\x47" + bytes(187), now=50.0) == 0.0  # no PCR yet: nothing to pace by
    assert p.wait_s(pcr_packet(10.0), now=100.0) == 0.0  # the anchor: media 10.0 s is due at 100.0
    assert p.wait_s(pcr_packet(10.5), now=100.0) == pytest.approx(0.5)
    assert p.wait_s(pcr_packet(11.0), now=100.7) == pytest.approx(0.3)
    assert p.wait_s(pcr_packet(11.2), now=105.0) == 0.0  # late: at once, never negative
    assert p.wait_s(pcr_packet(3.0), now=106.0) == 0.0  # the clock jumped back (a loop): a new anchor
    assert p.wait_s(pcr_packet(3.5), now=106.0) == pytest.approx(0.5)
    assert PcrPacer(speed=2.0).wait_s(pcr_packet(0.0), 0.0) == 0.0
    with pytest.raises(ValueError):
        PcrPacer(speed=0)


def test_pace_by_pcr_starts_its_clock_at_the_first_read_not_when_it_is_made() -> None:
    clock = FakeClock()
    pieces = [pcr_packet(i * 0.5) for i in range(9)]  # 4 s of media
    paced = pace_by_pcr(pieces, clock=clock, sleep=clock.sleep)
    clock.now = 30.0  # made, then left alone for a while (a probe, a startup delay)
    released = []
    for _ in paced:
        released.append(clock.now)
    assert released == pytest.approx([30.0 + i * 0.5 for i in range(9)])  # at media pace from the first read
