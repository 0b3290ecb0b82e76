"""A tiny MPEG-TS writer for unit tests: PAT, PMT and video PES packets with chosen PTS values.

Unit tests use it to reach cases real media cannot reach cheaply (a 33-bit PTS wrap, huge
gaps); integration tests use real PyAV media instead.
"""

from __future__ import annotations

import struct
from collections.abc import Callable

from ec_node.ts.psip import build_stt, unix_to_gps
from ec_node.ts.section import build_section, packetize_section

PMT_PID = 0x100
VIDEO_PID = 0x101


def _section(table_id: int, ext: int, body: bytes) -> bytes:
    return build_section(table_id, ext, body, private_indicator=False)


def _psi_packet(pid: int, section: bytes, cc: int) -> bytes:
    (pkt,) = packetize_section(pid, section, cc & 0xF)
    return pkt


def pat(cc: int = 0, tsid: int = 0x801) -> bytes:
    return _psi_packet(0, _section(0x00, tsid, struct.pack(">HH", 1, 0xE000 | PMT_PID)), cc)


def pmt(cc: int = 0, stream_type: int = 0x02) -> bytes:
    body = (
        struct.pack(">HH", 0xE000 | VIDEO_PID, 0xF000)
        + bytes([stream_type])
        + struct.pack(">HH", 0xE000 | VIDEO_PID, 0xF000)
    )
    return _psi_packet(PMT_PID, _section(0x02, 1, body), cc)


def _pts_bytes(pts: int) -> bytes:
    return bytes(
        [
            0x21 | ((pts >> 29) & 0x0E),
            (pts >> 22) & 0xFF,
            0x01 | ((pts >> 14) & 0xFE),
            (pts >> 7) & 0xFF,
            0x01 | ((pts << 1) & 0xFE),
        ]
    )


def video_pes(pts: int, cc: int, keyframe: bool, es: bytes = b"") -> bytes:
    """First packet of a video PES; a keyframe carries random_access_indicator."""
    pes = b"\x00\x00\x01\xe0\x00\x00\x80\x80\x05" + _pts_bytes(pts) + es
    if keyframe:
        af = bytes([0x01, 0x40])  # adaptation_field_length 1, RAI
        head = bytes([0x47, 0x40 | (VIDEO_PID >> 8), VIDEO_PID & 0xFF, 0x30 | (cc & 0xF)]) + af
    else:
        head = bytes([0x47, 0x40 | (VIDEO_PID >> 8), VIDEO_PID & 0xFF, 0x10 | (cc & 0xF)])
    pkt = head + pes
    return pkt + b"\xff" * (188 - len(pkt))


def video_payload(cc: int, fill: int = 0xAA) -> bytes:
    return bytes([0x47, VIDEO_PID >> 8, VIDEO_PID & 0xFF, 0x10 | (cc & 0xF)]) + bytes([fill]) * 184


def stream(pts_list: list[int], gop: int = 15, filler: int = 2) -> bytes:
    """PAT+PMT every frame, one PES per PTS (every `gop`-th a keyframe), `filler` payload packets each."""
    out = bytearray()
    cc_v = 0
    for i, pts in enumerate(pts_list):
        out += pat(i) + pmt(i)
        out += video_pes(pts, cc_v, keyframe=(i % gop == 0))
        cc_v += 1
        for _ in range(filler):
            out += video_payload(cc_v, fill=i & 0xFF)
            cc_v += 1
    return bytes(out)


PSIP_PID = 0x1FFB


def pcr_only(pcr_base: int) -> bytes:
    """An adaptation-only packet on the video PID (the PMT's PCR PID) carrying a PCR; it has no CC step."""
    af = bytes([7, 0x10]) + ((pcr_base % (1 << 33)) << 15 | 0x7E00).to_bytes(6, "big")
    pkt = bytes([0x47, VIDEO_PID >> 8, VIDEO_PID & 0xFF, 0x20]) + af
    return pkt + b"\xff" * (188 - len(pkt))


def stt_packet(unix_seconds: int, cc: int) -> bytes:
    """A System Time Table on 0x1FFB saying ``unix_seconds`` (UTC)."""
    (pkt,) = packetize_section(PSIP_PID, build_stt(unix_to_gps(unix_seconds)), cc & 0xF)
    return pkt


def stt_stream(
    pts_list: list[int],
    utc_at: Callable[[int], int | None],
    *,
    gop: int = 15,
    pcr_lead: int = 45_000,
) -> bytes:
    """Like :func:`stream`, plus a PCR (``pcr_lead`` ticks before each PTS) and, before frame i, an STT
    saying ``utc_at(i)`` seconds when that is not None."""
    out = bytearray()
    cc_v = cc_s = 0
    for i, pts in enumerate(pts_list):
        out += pat(i) + pmt(i) + pcr_only(pts - pcr_lead)
        utc = utc_at(i)
        if utc is not None:
            out += stt_packet(utc, cc_s)
            cc_s += 1
        out += video_pes(pts, cc_v, keyframe=(i % gop == 0))
        cc_v += 1
        out += video_payload(cc_v, fill=i & 0xFF)
        cc_v += 1
    return bytes(out)
