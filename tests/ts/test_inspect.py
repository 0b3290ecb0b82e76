"""The stream inspector: a tuner's lineup from PSIP and PMT, the whole-stream report, the head probe."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ec_node.ts.errors import NotTsError
from ec_node.ts.inspect import ProbedChannel, inspect_ts, probe_channels, probe_head
from ec_node.ts.psip import (
    TID_CVCT,
    TID_TVCT,
    ServiceLocation,
    ServiceLocationElement,
    VirtualChannel,
    build_tvct,
)
from ec_node.ts.section import build_section, packetize_section, section_body

from support.tsbuild import stream


def _section(table_id: int, ext: int, body: bytes) -> bytes:
    return build_section(table_id, ext, body, private_indicator=False)


def _packets(pid: int, section: bytes) -> bytes:
    return b"".join(packetize_section(pid, section, 0))


def _vct(channels: list[tuple[str, int, int, int]], table_id: int = TID_TVCT) -> bytes:
    sld = ServiceLocation(0x31, (ServiceLocationElement(0x02, 0x31),))
    tvct = build_tvct(
        [VirtualChannel(n, major, minor, prog, 0x0801, service_location=sld) for n, major, minor, prog in channels]
    )
    return tvct if table_id == TID_TVCT else build_section(table_id, 0x0801, section_body(tvct))


def test_probe_channels_from_tvct_and_pmt() -> None:
    pat = _section(0x00, 0x0801, struct.pack(">HHHH", 3, 0xE030, 4, 0xE040))
    pmt3 = _section(
        0x02,
        3,
        struct.pack(">HH", 0xE031, 0xF000) + bytes([0x02, 0xE0, 0x31, 0xF0, 0x00, 0x81, 0xE0, 0x34, 0xF0, 0x00]),
    )
    pmt4 = _section(
        0x02,
        4,
        struct.pack(">HH", 0xE041, 0xF000) + bytes([0x1B, 0xE0, 0x41, 0xF0, 0x00, 0x0F, 0xE0, 0x44, 0xF0, 0x00]),
    )
    # 7 channels' worth of TVCT spans two packets, exercising section reassembly
    names = [("WSYN-HD", 7, 1, 3), ("WSYN-SD", 7, 2, 4)] + [(f"X{i}", 9, i, 10 + i) for i in range(5)]
    ts = _packets(0, pat) + _packets(0x30, pmt3) + _packets(0x40, pmt4) + _packets(0x1FFB, _vct(names))
    assert len(_packets(0x1FFB, _vct(names))) > 188
    chans = probe_channels(ts)
    assert [(c.program_number, c.guide_number, c.guide_name, c.video_codec, c.audio_codec) for c in chans] == [
        (3, "7.1", "WSYN-HD", "MPEG2", "AC3"),
        (4, "7.2", "WSYN-SD", "H264", "AAC"),
    ]


def test_probe_channels_reads_cable_vct_and_dvb_style_ac3() -> None:
    pat = _section(0x00, 0x0801, struct.pack(">HH", 5, 0xE050))
    # MPEG-2 video, then AC-3 as private PES (0x06) with an AC-3 descriptor (0x6A), as ffmpeg's system_b mode writes
    es = bytes([0x02, 0xE0, 0x51, 0xF0, 0x00, 0x06, 0xE0, 0x54, 0xF0, 0x03, 0x6A, 0x01, 0x00])
    pmt = _section(0x02, 5, struct.pack(">HH", 0xE051, 0xF000) + es)
    ts = _packets(0, pat) + _packets(0x50, pmt) + _packets(0x1FFB, _vct([("CABLE", 102, 1, 5)], TID_CVCT))
    assert probe_channels(ts) == [ProbedChannel(5, "102.1", "CABLE", "MPEG2", "AC3")]


def test_probe_channels_ignores_bad_crc() -> None:
    pat = bytearray(_section(0x00, 1, struct.pack(">HH", 1, 0xE030)))
    pat[-1] ^= 0xFF
    assert probe_channels(_packets(0, bytes(pat))) == []


@given(st.binary(max_size=3000))
def test_probe_channels_never_raises_on_junk(data: bytes) -> None:
    assert isinstance(probe_channels(b"\x47" + data), list)


# --- the whole-stream report -----------------------------------------------------------------------


def test_report_counts_junk_continuity_and_pcr_but_never_raises() -> None:
    data = stream([i * 3003 for i in range(30)])
    clean = inspect_ts(data)
    assert (clean.resyncs, clean.cc_errors, clean.programs) == (0, 0, {1: 0x100})
    assert clean.pmts[0x100].video() is not None and clean.section_crc_errors == 0
    cut = len(data) // 2 // 188 * 188
    bad = inspect_ts(data[:cut] + b"junk" * 100 + data[cut + 188 :])  # one packet lost, junk in its place
    assert bad.resyncs == 1 and bad.skipped_bytes >= 400 and bad.cc_errors >= 1
    assert bad.packets == clean.packets - 1


def test_report_stops_where_asked() -> None:
    data = stream([i * 3003 for i in range(30)])
    assert inspect_ts(data, until=lambda r: r.packets == 7).packets == 7
    assert inspect_ts(data, max_bytes=188 * 5).packets == 5


# --- the head probe -----------------------------------------------------------------------------------


def test_head_probe_keeps_what_it_read_and_stops_at_the_tables(media_mpeg2: Path) -> None:
    data = media_mpeg2.read_bytes()
    reads = iter([data[i : i + 65536] for i in range(0, len(data), 65536)])
    head = probe_head(reads, 2000, "x")
    assert head.info.video_pid == 0x31 and head.info.pat is not None
    assert b"".join(head.head) + b"".join(reads) == data  # the head plus the rest is the whole input
    assert len(head.head) < len(data) // 65536  # it stopped once the TVCT was seen


def test_head_probe_of_junk_is_not_ts() -> None:
    with pytest.raises(NotTsError, match="x: not an MPEG-TS stream"):
        probe_head(iter([b"\x00" * 5000]), 2000, "x")
