"""Synthetic ATSC-like streams: decodable, ATSC PIDs and timing, PSIP present and correct."""

from __future__ import annotations

import io
import logging
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from fractions import Fraction
from pathlib import Path

import av
import pytest

from ec_node.devkit.decode import DecodeReport, decode, ffmpeg_messages
from ec_node.devkit.media_cache import cached_media
from ec_node.devkit.synth import (
    ATSC_MUXRATE,
    FIXED_STT_UNIX,
    SynthOptions,
    preset_options,
    synthesize,
    synthesize_bytes,
)
from ec_node.errors import OutputError, UsageError
from ec_node.ts.inspect import TsReport as TsProbe
from ec_node.ts.inspect import inspect_ts as probe_ts
from ec_node.ts.packets import NULL_PID
from ec_node.ts.psip import MGT_TYPE_TVCT_CURRENT, PSIP_BASE_PID, build_tvct

CONF_MPEG2 = preset_options("small", "mpeg2", duration_s=12.0)


def keyframe_gaps(data: bytes) -> tuple[list[float], list[float]]:
    """(video keyframe times, the gaps between them) in seconds."""
    with av.open(io.BytesIO(data), "r") as c:
        s = c.streams.video[0]
        tb = s.time_base
        assert tb is not None
        pts = sorted(p.pts for p in c.demux(s) if p.is_keyframe and p.pts is not None)
    kt = [float(p * tb) for p in pts]
    return kt, [b - a for a, b in zip(kt, kt[1:], strict=False)]


def assert_decodes(data: bytes, video_frames: int) -> DecodeReport:
    """Every frame decodes without an FFmpeg error, starting at a keyframe, and none is missing."""
    rep = decode(data)
    assert rep.errors == [] and rep.first_video_keyframe is True and rep.video_frames == video_frames
    return rep


def gop_headers_closed(data: bytes) -> list[bool]:
    """closed_gop flag of every MPEG-2 group_of_pictures header, from the video elementary stream."""
    with av.open(io.BytesIO(data), "r") as c:
        es = b"".join(bytes(p) for p in c.demux(video=0) if p.size)
    out = []
    i = es.find(b"\x00\x00\x01\xb8")
    while i != -1:
        out.append(bool(es[i + 7] & 0x40))
        i = es.find(b"\x00\x00\x01\xb8", i + 4)
    return out


def check_atsc_layout(p: TsProbe, video_type: int, audio_type: int, opts: SynthOptions) -> None:
    assert p.programs == {opts.program_number: 0x30}
    assert p.transport_stream_id == opts.tsid
    pmt = p.pmts[0x30]
    assert pmt.program_number == opts.program_number and pmt.pcr_pid == 0x31
    assert [(s.stream_type, s.pid) for s in pmt.streams] == [(video_type, 0x31), (audio_type, 0x34)]
    assert set(p.pid_counts) <= {0x00, 0x30, 0x31, 0x34, PSIP_BASE_PID, NULL_PID}  # no SDT (0x11)
    assert p.cc_errors == 0 and p.section_crc_errors == 0
    assert p.pcr_pid == 0x31 and 0 < p.max_pcr_interval_s <= 0.040
    assert p.min_dts_margin_s is not None and p.min_dts_margin_s > 0  # every PES arrives before its DTS


def check_psip(p: TsProbe, opts: SynthOptions, duration: float) -> None:
    assert len(p.channels) == 1
    ch = p.channels[0]
    assert (ch.short_name, ch.major, ch.minor) == (opts.channel_name, opts.major, opts.minor)
    assert (ch.program_number, ch.channel_tsid, ch.modulation, ch.service_type) == (
        opts.program_number,
        opts.tsid,
        0x04,
        0x02,
    )
    assert p.tvct_tsid == opts.tsid
    assert ch.service_location is not None and ch.service_location.pcr_pid == 0x31
    assert [e.pid for e in ch.service_location.elements] == [0x31, 0x34]
    assert p.mgt is not None and len(p.mgt) == 1
    assert p.mgt[0].table_type == MGT_TYPE_TVCT_CURRENT and p.mgt[0].pid == PSIP_BASE_PID
    assert p.mgt[0].number_bytes == len(build_tvct([ch]))
    # repetition: MGT ~150 ms, TVCT ~400 ms, STT ~1 s (allow slack for null-slot availability)
    assert p.psip_sections[0xC7] >= 0.8 * duration / 0.15
    assert p.psip_sections[0xC8] >= 0.8 * duration / 0.4
    assert p.psip_sections[0xCD] >= int(duration) - 1
    unix = [t.unix_seconds for t in p.stt]
    assert unix[0] == FIXED_STT_UNIX and unix == sorted(unix) and unix[-1] - unix[0] >= int(duration) - 2
    assert all(t.gps_utc_offset == 18 for t in p.stt)


def check_fixture(
    data: bytes, video_type: int, audio_type: int, opts: SynthOptions, duration: float
) -> tuple[TsProbe, DecodeReport]:
    """A null-stripped shared fixture: ATSC layout, PSIP, and every frame of ``duration`` s decodes."""
    p = probe_ts(data)
    check_atsc_layout(p, video_type, audio_type, opts)
    check_psip(p, opts, duration)
    assert p.nulls == 0
    return p, assert_decodes(data, round(duration * 30000 / 1001))


# --- the shared fixtures -------------------------------------------------------------------------------


def test_mpeg2_fixture(media_mpeg2: Path) -> None:
    data = media_mpeg2.read_bytes()
    p, rep = check_fixture(data, 0x02, 0x81, CONF_MPEG2, 12.0)
    assert rep.audio_frames > 12 * 48000 / 1536 - 5
    with av.open(io.BytesIO(data), "r") as c:
        v, a = c.streams.video[0], c.streams.audio[0]
        assert (v.codec_context.name, v.codec_context.width, v.codec_context.height) == ("mpeg2video", 320, 180)
        assert v.average_rate == Fraction(30000, 1001)
        assert (a.codec_context.name, a.codec_context.sample_rate) == ("ac3", 48000)
        assert (v.id, a.id) == (0x31, 0x34)


def test_mpeg2_closed_gop(media_mpeg2: Path) -> None:
    data = media_mpeg2.read_bytes()
    kt, gaps = keyframe_gaps(data)
    assert len(kt) >= 20 and all(0.45 <= g <= 0.6 for g in gaps)  # 16 frames = 0.534 s
    flags = gop_headers_closed(data)
    assert len(flags) == len(kt) and all(flags)
    # ffmpeg marks every video keyframe with random_access_indicator
    assert probe_ts(data).random_access[0x31] == len(kt)


def test_mpeg2_open_gop(media_mpeg2_open_gop: Path) -> None:
    data = media_mpeg2_open_gop.read_bytes()
    kt, gaps = keyframe_gaps(data)
    # exactly 15 frames = 0.5 s (the encoder may close the stream with one extra I-frame)
    assert all(abs(g - 15 * 1001 / 30000) < 1e-3 for g in gaps[:-1]) and gaps[-1] <= 0.5006
    flags = gop_headers_closed(data)
    assert len(flags) == len(kt) and not any(flags[1:])
    assert_decodes(data, round(12 * 30000 / 1001))
    p = probe_ts(data)
    check_atsc_layout(p, 0x02, 0x81, CONF_MPEG2)
    assert p.random_access[0x31] == len(kt)


def test_mpeg2_cbr_keeps_nulls(media_mpeg2_cbr: Path, media_mpeg2: Path) -> None:
    cbr = media_mpeg2_cbr.read_bytes()
    p = probe_ts(cbr)
    check_atsc_layout(p, 0x02, 0x81, CONF_MPEG2)
    check_psip(p, CONF_MPEG2, 12.0)
    assert p.nulls > 0
    # same content: stripping the nulls from the CBR file gives exactly the null-stripped fixture
    stripped = b"".join(
        cbr[i : i + 188] for i in range(0, len(cbr), 188) if ((cbr[i + 1] & 0x1F) << 8 | cbr[i + 2]) != NULL_PID
    )
    assert stripped == media_mpeg2.read_bytes()
    # constant rate: bytes / duration matches the mux rate
    _, res = synthesize_bytes(preset_options("small", "mpeg2", duration_s=0.1, null_padding=True))
    bitrate = len(cbr) * 8 / 12.012
    assert abs(bitrate / res.muxrate - 1) < 0.03


def test_h264_fixture(media_h264: Path) -> None:
    opts = preset_options("small", "h264", duration_s=10.0)  # as the media_h264 fixture (tests/conftest.py)
    data = media_h264.read_bytes()
    p, _ = check_fixture(data, 0x1B, 0x0F, opts, opts.duration_s)
    with av.open(io.BytesIO(data), "r") as c:
        assert c.streams.video[0].codec_context.name == "h264"
        assert (c.streams.audio[0].codec_context.name, c.streams.audio[0].sample_rate) == ("aac", 48000)
    kt, gaps = keyframe_gaps(data)
    assert all(abs(g - 0.5005) < 1e-3 for g in gaps)
    assert p.random_access[0x31] == len(kt)


# --- generator options ---------------------------------------------------------------------------------


def test_h264_open_gop_uses_recovery_point_i_frames() -> None:
    data, _ = synthesize_bytes(preset_options("small", "h264", duration_s=2.0, closed_gop=False))
    nal_types = []
    with av.open(io.BytesIO(data), "r") as c:
        for pkt in c.demux(video=0):
            if pkt.is_keyframe:
                b = bytes(pkt)
                types = {b[i + 3] & 0x1F for i in range(len(b) - 3) if b[i : i + 3] == b"\x00\x00\x01"}
                nal_types.append(types)
    assert 5 in nal_types[0]  # the first is an IDR
    assert len(nal_types) >= 3 and all(1 in t and 5 not in t and {7, 8} <= t for t in nal_types[1:])
    assert decode(data).errors == []


def test_1080i_is_interlaced_tff_at_atsc_rate() -> None:
    opts = preset_options("1080i", "mpeg2", duration_s=0.3, null_padding=True)
    data, res = synthesize_bytes(opts)
    assert res.muxrate == ATSC_MUXRATE
    with ffmpeg_messages(logging.WARNING) as logs, av.open(io.BytesIO(data), "r") as c:
        frames = list(c.decode(video=0))
        cc = c.streams.video[0].codec_context
        assert (cc.width, cc.height) == (1920, 1080)
        assert all(f.interlaced_frame for f in frames)
        assert cc.field_order in (2, "tt")  # AV_FIELD_TT: top field first
    assert list(logs) == []
    p = probe_ts(data)
    check_atsc_layout(p, 0x02, 0x81, opts)


def test_channel_options_reach_tvct_and_pat() -> None:
    opts = preset_options(
        "small", "mpeg2", duration_s=1.0, channel_name="KTST", major=44, minor=3, tsid=0x1234, program_number=9
    )
    data, _ = synthesize_bytes(opts)
    p = probe_ts(data)
    check_atsc_layout(p, 0x02, 0x81, opts)
    ch = p.channels[0]
    assert (ch.short_name, ch.major, ch.minor, ch.program_number, ch.channel_tsid) == ("KTST", 44, 3, 9, 0x1234)


def test_no_psip_option() -> None:
    data, res = synthesize_bytes(preset_options("small", "mpeg2", duration_s=1.0, psip=False))
    p = probe_ts(data)
    assert PSIP_BASE_PID not in p.pid_counts and sum(res.psip.sections.values()) == 0
    assert 0x11 not in p.pid_counts


def test_deterministic_unless_wall_clock() -> None:
    opts = preset_options("small", "h264", duration_s=1.0)
    a, _ = synthesize_bytes(opts)
    b, _ = synthesize_bytes(opts)
    assert a == b
    c, _ = synthesize_bytes(preset_options("small", "h264", duration_s=1.0, stt_unix=None))
    stt = probe_ts(c).stt[0].unix_seconds
    assert stt != FIXED_STT_UNIX and stt > 1_750_000_000


@pytest.mark.parametrize(
    "kw",
    [
        {"duration_s": 0},
        {"width": 321},
        {"fps": "25"},
        {"gop_s": 0},
        {"channel_name": "WAY-TOO-LONG"},
        {"major": 5000},
        {"codec": "vp9"},
        {"audio_language": "english"},
    ],
)
def test_bad_options_are_usage_errors(kw: dict[str, object], tmp_path: Path) -> None:
    opts = preset_options("small", "mpeg2", duration_s=1.0)
    opts = SynthOptions(**{**opts.__dict__, **kw})
    with pytest.raises(UsageError):
        synthesize(tmp_path / "x.ts", opts)
    assert not (tmp_path / "x.ts").exists()


def test_unwritable_output(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_bytes(b"")
    with pytest.raises(OutputError):
        synthesize(blocker / "out.ts", preset_options("small", duration_s=0.2))
    with pytest.raises(OutputError):
        synthesize(tmp_path, preset_options("small", duration_s=0.2))
    with pytest.raises(UsageError):
        preset_options("huge")


def test_cached_media_reuses_and_rekeys(tmp_path: Path) -> None:
    opts = preset_options("small", "mpeg2", duration_s=0.5)
    start = threading.Barrier(3, timeout=30)

    def run(_: int) -> Path:
        start.wait()  # three writers race for the same cache file
        return cached_media(opts, tmp_path)

    with ThreadPoolExecutor(3) as pool:
        results = list(pool.map(run, range(3)))
    assert len(set(results)) == 1
    path = results[0]
    first = path.read_bytes()
    assert probe_ts(first).channels[0].short_name == "WSYN-HD"
    mtime = path.stat().st_mtime_ns
    assert cached_media(opts, tmp_path) == path and path.stat().st_mtime_ns == mtime  # reused, not rewritten
    other = cached_media(preset_options("small", "mpeg2", duration_s=0.5, minor=2), tmp_path)
    assert other != path
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([path.name, other.name])  # no temp leftovers
    assert not any(name.startswith(".") for name in os.listdir(tmp_path))


def test_decode_check_sees_corruption(media_mpeg2: Path) -> None:
    """The zero-error assertions above are meaningful: damaged video does produce FFmpeg errors."""
    d = bytearray(media_mpeg2.read_bytes())
    for i in range(0, len(d), 188 * 5):
        if ((d[i + 1] & 0x1F) << 8 | d[i + 2]) == 0x31:
            d[i + 20 : i + 120] = b"\x00" * 100
    assert decode(bytes(d)).errors != []
