"""PES headers, PTS, and whether a video PES starts a picture a decoder can begin at.

Pure; works on the first TS packet of a PES (where PUSI is set).
"""

from __future__ import annotations

from ec_node.ts.packets import PACKET_SIZE, payload_offset, random_access_indicator

PTS_WRAP = 1 << 33


def pes_pts(pkt: bytes | memoryview, off: int = 0) -> tuple[int | None, int]:
    """(PTS or None, offset of the elementary-stream data within the packet) for a PES-start packet."""
    p = payload_offset(pkt, off)
    if p is None or p + 9 > PACKET_SIZE:
        return None, PACKET_SIZE
    b = pkt[off + p : off + PACKET_SIZE]
    if b[0] != 0 or b[1] != 0 or b[2] != 1:
        return None, PACKET_SIZE
    hdr_len = b[8]
    es = p + 9 + hdr_len
    if not b[7] & 0x80 or len(b) < 14:
        return None, min(es, PACKET_SIZE)
    return _timestamp(b, 9), min(es, PACKET_SIZE)


def _timestamp(b: bytes | memoryview, at: int) -> int:
    """The 33-bit PTS/DTS coded in the five bytes at ``at`` of a PES header."""
    return ((b[at] >> 1) & 0x07) << 30 | b[at + 1] << 22 | (b[at + 2] >> 1) << 15 | b[at + 3] << 7 | b[at + 4] >> 1


def pes_dts(pkt: bytes | memoryview, off: int = 0) -> int | None:
    """DTS (or PTS when there is no DTS) of a PES starting in this packet, 90 kHz; None if absent.

    Why: decode time against the PCR is what tells whether a mux delivers pictures in time.
    """
    p = payload_offset(pkt, off)
    if p is None or p + 19 > PACKET_SIZE:
        return None
    pes = pkt[off + p : off + PACKET_SIZE]
    if pes[0] != 0 or pes[1] != 0 or pes[2] != 1 or not pes[7] & 0x80:
        return None
    return _timestamp(pes, 14 if pes[7] & 0x40 else 9)


def _mpeg2_random_access(es: bytes) -> bool:
    """Sequence header and, when visible, an I picture (picture_coding_type 1)."""
    seq = es.find(b"\x00\x00\x01\xb3")
    if seq < 0:
        return False
    pic = es.find(b"\x00\x00\x01\x00", seq)
    if pic < 0 or pic + 6 > len(es):
        return True  # sequence header but picture header beyond this packet: broadcasters only repeat it at I
    return ((es[pic + 5] >> 3) & 0x07) == 1


def _nal_types(es: bytes, hevc: bool) -> list[int]:
    out = []
    i = es.find(b"\x00\x00\x01")
    while i >= 0 and i + 3 < len(es):
        h = es[i + 3]
        out.append((h >> 1) & 0x3F if hevc else h & 0x1F)
        i = es.find(b"\x00\x00\x01", i + 3)
    return out


def _h264_random_access(es: bytes) -> bool:
    return any(t in (5, 7) for t in _nal_types(es, hevc=False))


def _hevc_random_access(es: bytes) -> bool:
    return any(16 <= t <= 23 or t in (32, 33) for t in _nal_types(es, hevc=True))


def is_random_access(pkt: bytes | memoryview, codec: str, es_offset: int, off: int = 0) -> bool:
    """True when this PES starts a picture that decodes without earlier data."""
    if random_access_indicator(pkt, off):
        return True
    es = bytes(pkt[off + es_offset : off + PACKET_SIZE])
    if codec == "mpeg2":
        return _mpeg2_random_access(es)
    if codec == "h264":
        return _h264_random_access(es)
    if codec == "hevc":
        return _hevc_random_access(es)
    return False
