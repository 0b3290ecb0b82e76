"""Long-form sections: header checks, building, packetising and the one reassembler."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ec_node.ts.crc import crc32_mpeg
from ec_node.ts.errors import SectionError, TsError
from ec_node.ts.psip import PSIP_BASE_PID, VirtualChannel, build_stt, build_tvct, parse_tvct
from ec_node.ts.section import (
    SectionReassembler,
    build_section,
    packetize_section,
    packetize_sections,
    parse_section_header,
)


def test_build_section_rejects_a_body_too_long() -> None:
    with pytest.raises(SectionError, match="too long"):
        build_section(0xC8, 0, b"\x00" * 4090)


def test_section_error_is_a_ts_error() -> None:
    assert issubclass(SectionError, TsError)


def test_header_rejects_bad_crc_length_and_table() -> None:
    sec = bytearray(build_stt(1000))
    parse_section_header(sec)
    bad = bytearray(sec)
    bad[9] ^= 1
    with pytest.raises(SectionError, match="CRC"):
        parse_section_header(bad)
    with pytest.raises(SectionError):
        parse_section_header(sec + b"\x00")
    with pytest.raises(SectionError):
        parse_section_header(sec[:-1])
    with pytest.raises(SectionError, match="table_id"):
        parse_tvct(sec)
    short = bytearray(sec)
    short[1] &= 0x7F  # short form
    with pytest.raises(SectionError):
        parse_section_header(short)


# --- packetisation and reassembly ----------------------------------------------------------------------


def _big_tvct(n: int) -> bytes:
    return build_tvct([VirtualChannel(f"CH{i}", 10 + i, 1, i + 1, 0x801) for i in range(n)])


def test_packetize_layout() -> None:
    sec = _big_tvct(12)  # > 184 bytes: several packets
    pk = packetize_section(PSIP_BASE_PID, sec, 14)
    assert len(pk) == -(-(len(sec) + 1) // 184) and all(len(p) == 188 and p[0] == 0x47 for p in pk)
    assert [p[3] & 0x0F for p in pk] == [(14 + i) % 16 for i in range(len(pk))]
    assert pk[0][1] & 0x40 and not any(p[1] & 0x40 for p in pk[1:])
    assert all(((p[1] & 0x1F) << 8 | p[2]) == PSIP_BASE_PID for p in pk)
    assert pk[0][4] == 0  # pointer_field
    assert pk[-1].endswith(b"\xff")


@given(st.lists(st.integers(0, 30), min_size=1, max_size=6), st.integers(0, 15))
def test_assembler_round_trip(sizes: list[int], cc: int) -> None:
    secs = [_big_tvct(n) if n else build_stt(n) for n in sizes]
    packets, next_cc = packetize_sections(PSIP_BASE_PID, secs, cc)
    assert next_cc == (cc + len(packets)) % 16
    asm = SectionReassembler(PSIP_BASE_PID)
    got = [s.data for p in packets for s in asm.feed(p)]
    assert got == secs and asm.crc_errors == 0 and asm.discontinuities == 0


def _pack_many(secs: list[bytes], pid: int) -> list[bytes]:
    """Sections packed back to back (pointer_field pointing at the first new start)."""
    stream = b"".join(secs)
    starts = set()
    pos = 0
    for s in secs:
        starts.add(pos)
        pos += len(s)
    out = []
    i = 0
    cc = 0
    while i < len(stream):
        window = range(i, min(i + 183, len(stream)))
        first = next((j for j in window if j in starts), None)
        payload = bytes([first - i]) + stream[i : i + 183] if first is not None else stream[i : i + 184]
        head = bytes([0x47, (0x40 if first is not None else 0) | (pid >> 8), pid & 0xFF, 0x10 | cc])
        consumed = len(payload) - (1 if first is not None else 0)
        out.append(head + payload + b"\xff" * (184 - len(payload)))
        i += consumed
        cc = (cc + 1) & 0x0F
    return out


def test_reassembler_returns_the_packets_that_carried_each_section() -> None:
    """The chunker prepends these packets to every chunk, so they must be exactly the carrying ones."""
    a, b = _big_tvct(12), build_stt(9)
    packets = _pack_many([a, b], PSIP_BASE_PID)
    asm = SectionReassembler(PSIP_BASE_PID)
    got = [s for p in packets for s in asm.feed(p)]
    assert [s.data for s in got] == [a, b]
    assert got[0].packets == tuple(packets[: len(got[0].packets)]) and len(got[0].packets) >= 3
    assert got[1].packets == (packets[len(got[0].packets) - 1],)  # b starts where a ends, in one packet


@given(st.lists(st.integers(0, 9), min_size=1, max_size=12))
def test_assembler_packed_sections(sizes: list[int]) -> None:
    secs = [_big_tvct(n) if n else build_stt(7) for n in sizes]
    asm = SectionReassembler()
    got = [s.data for p in _pack_many(secs, 0x30) for s in asm.feed(p)]
    assert got == secs


def test_assembler_drops_damage_and_recovers() -> None:
    a, b, c = _big_tvct(10), _big_tvct(11), build_stt(5)
    pk_a, cc = packetize_sections(PSIP_BASE_PID, [a], 0)
    pk_b, cc = packetize_sections(PSIP_BASE_PID, [b], cc)
    pk_c, _ = packetize_sections(PSIP_BASE_PID, [c], cc)
    asm = SectionReassembler(PSIP_BASE_PID)
    # lose the middle packet of b: CC gap, b dropped, c still arrives
    feed = pk_a + [pk_b[0]] + pk_b[2:] + pk_c
    got = [s.data for p in feed for s in asm.feed(p)]
    assert got == [a, c] and asm.discontinuities == 1
    # corrupt a payload byte: CRC error counted, nothing returned
    asm2 = SectionReassembler(PSIP_BASE_PID)
    bad = bytearray(pk_c[0])
    bad[20] ^= 0xFF
    assert asm2.feed(bytes(bad)) == [] and asm2.crc_errors == 1
    # duplicates are ignored, other PIDs ignored
    asm3 = SectionReassembler(PSIP_BASE_PID)
    assert [s.data for s in asm3.feed(pk_c[0])] == [c] and asm3.feed(pk_c[0]) == []
    other = bytes([0x47, 0x40, 0x31, 0x10]) + pk_c[0][4:]
    assert asm3.feed(other) == []


def test_assembler_rejects_non_packets() -> None:
    asm = SectionReassembler()
    with pytest.raises(SectionError):
        asm.feed(b"\x47" + b"\x00" * 100)
    with pytest.raises(SectionError):
        asm.feed(b"\x00" * 188)


@settings(max_examples=300)
@given(st.lists(st.binary(min_size=187, max_size=187), max_size=20))
def test_assembler_fuzz(bodies: list[bytes]) -> None:
    asm = SectionReassembler()
    for b in bodies:
        for sec in asm.feed(b"\x47" + b):
            assert crc32_mpeg(sec.data) == 0 and sec.data[1] & 0x80  # anything returned is a checked long section


def test_assembler_fuzz_mutated_stream() -> None:
    rng = random.Random(1234)
    secs = [_big_tvct(rng.randint(0, 12)) for _ in range(40)]
    packets = _pack_many(secs, PSIP_BASE_PID)
    for _ in range(200):
        pk = [bytearray(p) for p in packets]
        for _ in range(rng.randint(1, 6)):
            p = rng.choice(pk)
            p[rng.randint(1, 187)] = rng.randint(0, 255)
        asm = SectionReassembler(PSIP_BASE_PID)
        for p in pk:
            for sec in asm.feed(bytes(p)):
                assert crc32_mpeg(sec.data) == 0
                assert len(sec.data) <= 4096
