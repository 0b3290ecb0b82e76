"""Client against the emulator over real loopback sockets: API types, streams, tuner allocation, faults."""

from __future__ import annotations

import http.client
import json
import logging
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import av
import pytest

from ec_node.devkit.emulator import JUNK, HdhrEmulator
from ec_node.devkit.pacing import load_ts, schedule
from ec_node.errors import ConfigError, TunerBusyError, UnreachableError
from ec_node.hdhr.client import HdhrClient
from ec_node.ts.packets import (
    NULL_PID,
    PACKET_SIZE,
    PacketFramer,
    continuity_counter,
    discontinuity_indicator,
    has_payload,
    pid_of,
    read_pcr,
)
from ec_node.ts.pcr import pcr_span_s


@pytest.fixture
def emu(hdhr_media: Path) -> Iterator[HdhrEmulator]:
    with HdhrEmulator(hdhr_media, serve_speed=0) as e:
        yield e


def client_for(e: HdhrEmulator) -> HdhrClient:
    return HdhrClient(f"127.0.0.1:{e.http_port}", timeout_s=10)


def get(port: int, path: str) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path)
        r = conn.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    finally:
        conn.close()


def expected_bytes(media: Path, seconds: float) -> bytes:
    out = []
    for seg in schedule(load_ts(media.read_bytes())):
        if seg.media_s >= seconds:
            break
        out.append(seg.data)
    return b"".join(out)


# --- control API ----------------------------------------------------------------------------


def test_discover_json_field_types(emu: HdhrEmulator) -> None:
    status, headers, body = get(emu.http_port, "/discover.json")
    assert status == 200 and headers["content-type"] == "application/json"
    obj = json.loads(body)
    for key in ("FriendlyName", "ModelNumber", "FirmwareName", "FirmwareVersion", "DeviceID", "DeviceAuth"):
        assert isinstance(obj[key], str), key
    assert obj["ModelNumber"] == "HDHR5-4US" and obj["DeviceID"] == "1FA4E002"
    assert obj["TunerCount"] == 2 and isinstance(obj["TunerCount"], int)
    assert obj["BaseURL"] == emu.base_url and obj["LineupURL"] == emu.base_url + "/lineup.json"
    info = client_for(emu).discover()
    assert info.device_id == "1FA4E002" and info.tuner_count == 2


def test_lineup_json_field_types(emu: HdhrEmulator) -> None:
    status, _, body = get(emu.http_port, "/lineup.json")
    entries = json.loads(body)
    assert status == 200 and len(entries) == 1
    e = entries[0]
    assert e["GuideNumber"] == "7.1" and isinstance(e["GuideNumber"], str)
    assert e["GuideName"] == "WSYN-HD"
    assert e["HD"] == 1 and type(e["HD"]) is int  # a number, not a boolean
    assert (e["VideoCodec"], e["AudioCodec"]) == ("MPEG2", "AC3")  # from the file's PMT
    assert e["URL"] == f"http://127.0.0.1:{emu.stream_port}/auto/v7.1"
    assert client_for(emu).stream_url("7.1") == e["URL"]


def test_lineup_status_and_status_json(emu: HdhrEmulator) -> None:
    assert json.loads(get(emu.http_port, "/lineup_status.json")[2])["ScanInProgress"] == 0
    idle = json.loads(get(emu.http_port, "/status.json")[2])
    assert idle == [{"Resource": "tuner0", "InUse": 0}, {"Resource": "tuner1", "InUse": 0}]
    assert get(emu.http_port, "/nope.json")[0] == 404


def test_channel_option_overrides_lineup(hdhr_media: Path) -> None:
    with HdhrEmulator(hdhr_media, serve_speed=0, channels=[("4.1", "WABC"), ("4.2", "WABC-SD")]) as e:
        lineup = client_for(e).lineup()
    assert [(x.guide_number, x.guide_name) for x in lineup] == [("4.1", "WABC"), ("4.2", "WABC-SD")]


def test_lineup_from_psip_media(request: pytest.FixtureRequest) -> None:
    try:
        media = request.getfixturevalue("media_mpeg2")
    except pytest.FixtureLookupError:
        pytest.skip("shared media_mpeg2 fixture (tests/conftest.py) not available")
    with HdhrEmulator(media, serve_speed=0) as e:
        lineup = client_for(e).lineup()
    assert [(x.guide_number, x.guide_name, x.video_codec) for x in lineup] == [("7.1", "WSYN-HD", "MPEG2")]


# --- streams --------------------------------------------------------------------------------


def test_duration_stream_is_whole_packets_of_the_file(emu: HdhrEmulator, hdhr_media: Path, tmp_path: Path) -> None:
    with client_for(emu).open_stream("7.1", duration_s=2) as s:
        data = b"".join(s)
        assert s.end_reason == "eof" and s.resource == "tuner0"
    assert len(data) % PACKET_SIZE == 0
    assert data == expected_bytes(hdhr_media, 2.0)
    assert 1.9 <= pcr_span_s(data) < 2.0
    out = tmp_path / "cap.ts"
    out.write_bytes(data)
    with av.open(str(out)) as c:
        frames = sum(1 for _ in c.decode(video=0))
    assert frames >= 45  # 2 s at 25 fps, minus at most a GOP tail


@pytest.mark.parametrize("media_fixture,seconds", [("hdhr_media", 5), ("media_mpeg2", 14)])
def test_loop_flags_discontinuity_and_keeps_cc(
    request: pytest.FixtureRequest, media_fixture: str, seconds: int
) -> None:
    """Longer than the file: one wrap, PCR jumps back with discontinuity_indicator, CCs continue."""
    media = request.getfixturevalue(media_fixture)
    with HdhrEmulator(media, serve_speed=0) as e, client_for(e).open_stream("7.1", duration_s=seconds) as s:
        data = b"".join(s)
    assert pcr_span_s(data) > seconds - 0.5  # both passes' PCR runs are there
    last_cc: dict[int, int] = {}
    flagged = []
    last_pcr = None
    for off in range(0, len(data), PACKET_SIZE):
        pid = pid_of(data, off)
        if discontinuity_indicator(data, off):
            flagged.append(off)
        pcr = read_pcr(data, off)
        if pcr is not None:
            if last_pcr is not None and pcr < last_pcr:
                assert discontinuity_indicator(data, off), "PCR went back without discontinuity_indicator"
            last_pcr = pcr
        if pid == NULL_PID or not has_payload(data, off):
            continue
        cc = continuity_counter(data, off)
        if pid in last_cc:
            assert cc == (last_cc[pid] + 1) & 0xF, f"CC error on PID {pid:#x} at byte {off}"
        last_cc[pid] = cc
    assert len(flagged) == 1


def test_real_time_pacing_follows_pcr(hdhr_media: Path) -> None:
    """At speed 1, media time received never runs ahead of wall time since the request."""
    with HdhrEmulator(hdhr_media, serve_speed=1.0) as e:
        c = client_for(e)
        c.lineup()
        framer = PacketFramer()
        first_pcr = None
        max_ahead = -1e9
        received = bytearray()
        t0 = time.monotonic()
        with c.open_stream("7.1", duration_s=2) as s:
            for chunk in s:
                now = time.monotonic() - t0
                received += chunk
                for f in framer.feed(chunk):
                    for off in range(0, len(f.data), PACKET_SIZE):
                        pcr = read_pcr(f.data, off)
                        if pcr is None:
                            continue
                        first_pcr = pcr if first_pcr is None else first_pcr
                        max_ahead = max(max_ahead, (pcr - first_pcr) / 27e6 - now)
    assert max_ahead <= 0.01, f"media ran {max_ahead:.3f} s ahead of the wall clock"
    assert bytes(received) == expected_bytes(hdhr_media, 2.0)
    assert 1.9 <= pcr_span_s(bytes(received)) < 2.0


def test_all_tuners_busy_805_and_tuner_in_use_804(hdhr_media: Path) -> None:
    with HdhrEmulator(hdhr_media, serve_speed=1.0, tuners=2) as e:
        c = client_for(e)
        held = [c.open_stream("7.1"), c.open_stream("7.1")]
        try:
            assert {h.resource for h in held} == {"tuner0", "tuner1"}
            assert [next(h)[:1] for h in held] == [b"\x47", b"\x47"]
            status, headers, _ = get(e.stream_port, "/auto/v7.1")
            assert status == 503 and headers["x-hdhomerun-error"] == "805 All Tuners In Use"
            status, headers, _ = get(e.stream_port, "/tuner1/v7.1")
            assert status == 503 and headers["x-hdhomerun-error"] == "804 Tuner In Use"
            st = json.loads(get(e.http_port, "/status.json")[2])
            assert [t["InUse"] for t in st] == [1, 1] and st[0]["VctNumber"] == "7.1"
            assert st[0]["TargetIP"] == "127.0.0.1"
            with pytest.raises(TunerBusyError, match="805 All Tuners In Use"):
                c.open_stream("7.1", busy_retries=1, backoff_s=0.01)
        finally:
            for h in held:
                h.close()
        assert e.wait_tuners_free(timeout=10)
        with c.open_stream("7.1", duration_s=1) as again:
            assert sum(len(x) for x in again) > 0


def test_specific_tuner_and_unknown_channel(emu: HdhrEmulator) -> None:
    status, headers, _ = get(emu.stream_port, "/tuner1/v7.1?duration=1")
    assert status == 200 and headers["x-hdhomerun-resource"] == "tuner1"
    assert headers["content-type"] == "video/mpeg"
    status, headers, _ = get(emu.stream_port, "/auto/v9.9")
    assert status == 404 and headers["x-hdhomerun-error"] == "801 Unknown Channel"
    assert get(emu.stream_port, "/tuner7/v7.1")[0] == 404
    with pytest.raises(ConfigError, match="unknown channel"):
        client_for(emu).open_stream("9.9")


def test_client_retries_until_tuner_free(hdhr_media: Path, caplog: pytest.LogCaptureFixture) -> None:
    with HdhrEmulator(hdhr_media, serve_speed=0, busy_for_s=1.0) as e:
        c = client_for(e)
        with (
            caplog.at_level(logging.WARNING, logger="ec_node.hdhr.client"),
            c.open_stream("7.1", duration_s=1, busy_retries=8, backoff_s=0.25) as s,
        ):
            data = b"".join(s)
    assert len(data) > 0 and len(data) % PACKET_SIZE == 0
    assert any("busy" in r.message and "805" in r.message for r in caplog.records)


def test_busy_exhausted_raises_tuner_busy(hdhr_media: Path) -> None:
    with HdhrEmulator(hdhr_media, serve_speed=0, busy_for_s=600) as e, pytest.raises(TunerBusyError):
        client_for(e).open_stream("7.1", busy_retries=2, backoff_s=0.01)


@pytest.mark.parametrize("code", [806, 807])
def test_no_signal_is_config_error(hdhr_media: Path, code: int) -> None:
    with HdhrEmulator(hdhr_media, serve_speed=0, tune_error=code, tuning_delay_ms=50) as e:
        with pytest.raises(ConfigError, match=f"no signal.*{code}"):
            client_for(e).open_stream("7.1")
        assert e.wait_tuners_free(timeout=10)


def test_tuning_delay_before_headers(hdhr_media: Path) -> None:
    with HdhrEmulator(hdhr_media, serve_speed=0, tuning_delay_ms=300) as e:
        t0 = time.monotonic()
        s = client_for(e).open_stream("7.1", duration_s=1)
        waited = time.monotonic() - t0
        with s:
            assert sum(len(c) for c in s) > 0
    assert waited >= 0.3  # headers cannot arrive before the injected delay


def test_cut_mid_stream_ends_iterator(hdhr_media: Path) -> None:
    with HdhrEmulator(hdhr_media, serve_speed=0, cut_after_s=1.0) as e, client_for(e).open_stream("7.1") as s:
        data = b"".join(s)
        assert s.end_reason == "eof"
    assert data == expected_bytes(hdhr_media, 1.0)


def test_take_off_air_ends_only_that_channels_streams_until_put_on_air(hdhr_media: Path) -> None:
    with HdhrEmulator(hdhr_media, serve_speed=1.0, tuners=3, channels=[("7.1", "A"), ("9.1", "B")]) as e:
        c = client_for(e)
        a, b = c.open_stream("7.1"), c.open_stream("9.1")
        try:
            assert next(a)[:1] == b"\x47" and next(b)[:1] == b"\x47"
            assert e.streams_of("7.1") == 1 and e.streams_of("9.1") == 1
            assert e.take_off_air("9.1") == 1
            b"".join(b)  # 9.1's body ends (must not hang or raise) ...
            assert b.end_reason == "eof"
            assert next(a)[:1] and e.streams_of("7.1") == 1  # ... 7.1's goes on
            assert e.streams_of("9.1") == 0
            with pytest.raises(ConfigError, match="no signal on channel 9.1.*807 No Video Data"):
                c.open_stream("9.1")
            status, headers, _ = get(e.stream_port, "/auto/v9.1")
            assert status == 503 and headers["x-hdhomerun-error"] == "807 No Video Data"
            e.put_on_air("9.1")
            with c.open_stream("9.1", duration_s=1) as again:
                assert sum(len(x) for x in again) > 0
        finally:
            a.close()
            b.close()
        assert e.wait_tuners_free(timeout=10)


def test_emulator_stop_mid_stream_ends_iterator(hdhr_media: Path) -> None:
    e = HdhrEmulator(hdhr_media, serve_speed=1.0).start()
    try:
        s = client_for(e).open_stream("7.1")
        first = next(s)
    finally:
        e.stop()
    rest = b"".join(s)  # must end, not raise
    assert first[:1] == b"\x47" and s.end_reason in ("eof", "reset")
    assert isinstance(rest, bytes)


def test_junk_injected_once(hdhr_media: Path) -> None:
    with HdhrEmulator(hdhr_media, serve_speed=0, junk_at_s=1.0) as e, client_for(e).open_stream("7.1", 2) as s:
        data = b"".join(s)
    clean = expected_bytes(hdhr_media, 2.0)
    assert len(data) == len(clean) + len(JUNK) and data.count(JUNK) == 1
    framer = PacketFramer()
    aligned = b"".join(f.data for f in framer.feed(data) + framer.flush())
    assert framer.total_skipped == len(JUNK) and aligned == clean


def test_concurrent_streams_and_clean_shutdown(hdhr_media: Path) -> None:
    e = HdhrEmulator(hdhr_media, serve_speed=0, tuners=4).start()
    start = threading.Barrier(4, timeout=30)

    def run(_: int) -> int:
        start.wait()  # all four tune at once
        with client_for(e).open_stream("7.1", duration_s=4) as s:
            return sum(len(c) for c in s)

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(run, range(4)))
    e.stop()
    assert len(results) == 4 and len(set(results)) == 1 and results[0] > 0
    left = [t.name for t in threading.enumerate() if t.name.startswith("hdhr-") or "process_request" in t.name]
    assert left == []


def test_unreachable_closed_port() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(UnreachableError, match="connection refused"):
        HdhrClient(f"127.0.0.1:{port}", timeout_s=2).discover()


def test_non_hdhomerun_http_server(emu: HdhrEmulator) -> None:
    # the stream port speaks HTTP but has no discover.json
    with pytest.raises(UnreachableError, match="not an HDHomeRun"):
        HdhrClient(f"127.0.0.1:{emu.stream_port}", timeout_s=5).discover()


def test_bad_media_is_bad_input(tmp_path: Path) -> None:
    from ec_node.errors import BadInputError
    from ec_node.ts.errors import TsError

    junk = tmp_path / "junk.ts"
    junk.write_bytes(b"not a transport stream" * 100)
    with pytest.raises(TsError):  # the CLI maps it to exit 3 (test_emulator_bad_media_exit_3)
        HdhrEmulator(junk)
    with pytest.raises(BadInputError):
        HdhrEmulator(tmp_path / "missing.ts")


@pytest.mark.parametrize(
    "path,status",
    [
        ("/auto/v7.1?duration=abc", 400),
        ("/auto/v7.1?duration=-1", 400),
        ("/auto/v7.1?duration=nan", 400),
        ("/tuner999/v7.1", 404),
        ("/auto/ch473000000", 404),
        ("/%ff%00", 404),
        ("/auto/v7.1.1", 404),
    ],
)
def test_bad_stream_requests_get_http_errors(emu: HdhrEmulator, path: str, status: int) -> None:
    assert get(emu.stream_port, path)[0] == status
    assert emu.tuners_in_use() == 0


def _stt_times(data: bytes) -> list[int]:
    """The UTC seconds of every STT in ``data`` (each CRC-checked by the strict parser)."""
    from ec_node.ts.psip import PSIP_BASE_PID, TID_STT, parse_stt
    from ec_node.ts.section import SectionReassembler

    col = SectionReassembler(PSIP_BASE_PID)
    out = []
    for off in range(0, len(data), PACKET_SIZE):
        if pid_of(data, off) == PSIP_BASE_PID:
            out += [
                parse_stt(s.data).unix_seconds for s in col.feed(data[off : off + PACKET_SIZE]) if s.data[0] == TID_STT
            ]
    return out


def test_broadcast_time_runs_on_across_loops_and_re_tunes(media_mpeg2: Path) -> None:
    """The STT keeps counting when the file loops and when a channel is tuned again, so chunk indices
    anchored to it (PROTOCOL.md section 1) go on rising, as a real station's would."""
    from ec_node.ts.chunker import chunk_stream

    loop_s = load_ts(media_mpeg2.read_bytes()).loop_s
    with HdhrEmulator(media_mpeg2, serve_speed=0) as e:
        with client_for(e).open_stream("7.1", duration_s=2.5 * loop_s) as s:
            first = b"".join(s)
        with client_for(e).open_stream("7.1", duration_s=2.0) as s:  # a re-tune: the channel's second stream
            again = b"".join(s)
    times = _stt_times(first)
    steps = [b - a for a, b in zip(times, times[1:], strict=False)]
    assert times and all(0 <= d <= 2 for d in steps), steps  # one a second (or so), never back, across two loops
    assert times[-1] - times[0] >= 2 * round(loop_s)
    assert _stt_times(again)[0] == times[0] + round(loop_s)  # the second stream is the file's second pass
    idx = [c.index for c in chunk_stream([first]) if c.complete]
    assert idx == sorted(idx) and len(set(idx)) == len(idx) and idx[-1] - idx[0] < len(idx) + 3 * 2  # dense


def test_streams_of_a_channel_that_overlap_carry_the_same_bytes(media_mpeg2: Path) -> None:
    """Two tuners on one station see one broadcast: a stream opened while another of its channel runs
    (paced, so the first cannot end first) carries that stream's pass, byte for byte."""
    with (
        HdhrEmulator(media_mpeg2, serve_speed=1) as e,
        client_for(e).open_stream("7.1", duration_s=3.0) as a,
        client_for(e).open_stream("7.1", duration_s=3.0) as b,
    ):
        one, two = b"".join(a), b"".join(b)
    assert one == two and _stt_times(one)[0] == _stt_times(two)[0]
