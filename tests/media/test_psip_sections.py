"""ATSC PSIP builders/parsers and the section assembler: round trips, strictness, fuzzing."""

from __future__ import annotations

import contextlib
import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ec_node.errors import BadInputError
from ec_node.ts.crc import crc32_mpeg
from ec_node.ts.psip import (
    GPS_EPOCH_UNIX,
    PSIP_BASE_PID,
    TID_CVCT,
    TID_TVCT,
    MgtTable,
    PsipError,
    SectionAssembler,
    ServiceLocation,
    ServiceLocationElement,
    VirtualChannel,
    build_mgt,
    build_section,
    build_stt,
    build_tvct,
    packetize_section,
    packetize_sections,
    parse_mgt,
    parse_section_header,
    parse_stt,
    parse_tvct,
    parse_vct,
    section_body,
    unix_to_gps,
)

u16 = st.integers(0, 0xFFFF)
pids = st.integers(0, 0x1FFE)
names = st.text(
    alphabet=st.characters(max_codepoint=0xFFFF, exclude_categories=["Cs"], exclude_characters="\x00"),
    max_size=7,
)
sld = st.builds(
    ServiceLocation,
    pcr_pid=pids,
    elements=st.lists(
        st.builds(
            ServiceLocationElement,
            stream_type=st.integers(0, 255),
            pid=pids,
            language=st.sampled_from(["", "eng", "spa", "fra"]),
        ),
        max_size=4,
    ).map(tuple),
)
channels = st.builds(
    VirtualChannel,
    short_name=names,
    major=st.integers(0, 1023),
    minor=st.integers(0, 1023),
    program_number=u16,
    channel_tsid=u16,
    modulation=st.integers(0, 255),
    service_type=st.integers(0, 0x3F),
    source_id=u16,
    carrier_frequency=st.integers(0, 0xFFFFFFFF),
    etm_location=st.integers(0, 3),
    access_controlled=st.booleans(),
    hidden=st.booleans(),
    hide_guide=st.booleans(),
    service_location=st.none() | sld,
    other_descriptors=st.lists(
        st.tuples(st.integers(0, 255).filter(lambda t: t != 0xA1), st.binary(max_size=20)), max_size=2
    ).map(tuple),
)


@given(st.lists(channels, min_size=0, max_size=8), u16, st.integers(0, 31))
def test_tvct_round_trip(chs: list[VirtualChannel], tsid: int, version: int) -> None:
    sec = build_tvct(chs, tsid=tsid, version=version)
    hdr = parse_section_header(sec, table_id=TID_TVCT)
    assert (hdr.table_id_extension, hdr.version, hdr.current_next) == (tsid, version, True)
    assert crc32_mpeg(sec) == 0
    assert parse_tvct(sec) == chs


def test_tvct_known_layout() -> None:
    ch = VirtualChannel("WSYN-HD", 7, 1, program_number=3, channel_tsid=0x0801, source_id=3)
    sec = build_tvct([ch])
    # header: table_id, syntax+private+reserved+length, TSID, version/current_next, section numbers
    assert sec[0] == 0xC8 and sec[1] & 0xF0 == 0xF0 and sec[3:5] == b"\x08\x01" and sec[5] == 0xC1
    assert sec[10:24] == "WSYN-HD".encode("utf-16-be")
    word = int.from_bytes(sec[24:28], "big")
    assert (word >> 28, (word >> 18) & 0x3FF, (word >> 8) & 0x3FF, word & 0xFF) == (0xF, 7, 1, 0x04)
    assert len(sec) == 3 + ((sec[1] & 0x0F) << 8 | sec[2])


@given(st.lists(channels, min_size=0, max_size=4), u16)
def test_vct_reads_terrestrial_and_cable(chs: list[VirtualChannel], tsid: int) -> None:
    tvct = build_tvct(chs, tsid=tsid)
    cvct = build_section(TID_CVCT, tsid, section_body(tvct))
    assert parse_vct(tvct) == parse_vct(cvct) == chs
    with pytest.raises(PsipError, match="expected table_id"):
        parse_tvct(cvct)  # parse_tvct stays strict about the table it reads
    with pytest.raises(PsipError, match="expected a VCT"):
        parse_vct(build_stt(0))


@given(st.integers(0, 0xFFFFFFFF), st.integers(0, 255), u16)
def test_stt_round_trip(gps: int, offset: int, ds: int) -> None:
    t = parse_stt(build_stt(gps, offset, ds))
    assert (t.gps_seconds, t.gps_utc_offset, t.daylight_saving) == (gps, offset, ds)
    assert t.unix_seconds == gps + GPS_EPOCH_UNIX - offset


def test_stt_unix_conversion() -> None:
    unix = 1_704_067_200  # 2024-01-01T00:00:00Z
    t = parse_stt(build_stt(unix_to_gps(unix)))
    assert t.unix_seconds == unix and t.gps_utc_offset == 18
    assert t.gps_seconds == 1_388_102_418


@given(
    st.lists(
        st.builds(
            MgtTable,
            table_type=u16,
            pid=st.integers(0, 0x1FFF),
            version=st.integers(0, 31),
            number_bytes=st.integers(0, 0xFFFFFFFF),
            descriptors=st.just(b"") | st.just(b"\x80\x02ab"),
        ),
        max_size=10,
    )
)
def test_mgt_round_trip(tables: list[MgtTable]) -> None:
    assert parse_mgt(build_mgt(tables)) == tables


def test_builders_reject_out_of_range() -> None:
    with pytest.raises(PsipError):
        build_tvct([VirtualChannel("TOO-LONG-NAME", 7, 1, 3, 1)])
    with pytest.raises(PsipError):
        build_tvct([VirtualChannel("X", 1024, 1, 3, 1)])
    with pytest.raises(PsipError):
        build_stt(-1)
    with pytest.raises(PsipError):
        build_section(0xC8, 0, b"\x00" * 4090)


def test_psip_error_is_bad_input() -> None:
    assert issubclass(PsipError, BadInputError)


def test_header_rejects_bad_crc_length_and_table() -> None:
    sec = bytearray(build_stt(1000))
    parse_section_header(sec)
    bad = bytearray(sec)
    bad[9] ^= 1
    with pytest.raises(PsipError, match="CRC"):
        parse_section_header(bad)
    with pytest.raises(PsipError):
        parse_section_header(sec + b"\x00")
    with pytest.raises(PsipError):
        parse_section_header(sec[:-1])
    with pytest.raises(PsipError, match="table_id"):
        parse_tvct(sec)
    short = bytearray(sec)
    short[1] &= 0x7F  # short form
    with pytest.raises(PsipError):
        parse_section_header(short)


def _with_crc(head_and_body: bytes) -> bytes:
    return head_and_body + crc32_mpeg(head_and_body).to_bytes(4, "big")


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=600))
def test_parsers_fuzz_random_bytes(data: bytes) -> None:
    for parse in (parse_section_header, parse_tvct, parse_vct, parse_stt, parse_mgt):
        with contextlib.suppress(PsipError):
            parse(data)


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from([0xC7, 0xC8, 0xC9, 0xCD]), st.binary(max_size=400), st.integers(0, 0xFFFF))
def test_parsers_fuzz_valid_crc_random_body(tid: int, body: bytes, ext: int) -> None:
    """Bodies that pass the CRC reach the table parsers; they must still fail only with PsipError."""
    sec = build_section(tid, ext, body)
    for parse in (parse_tvct, parse_vct, parse_stt, parse_mgt):
        with contextlib.suppress(PsipError):
            parse(sec)


@settings(max_examples=200)
@given(st.lists(channels, min_size=1, max_size=3), st.data())
def test_parsers_fuzz_mutated_valid_tvct(chs: list[VirtualChannel], data: st.DataObject) -> None:
    sec = bytearray(build_tvct(chs))
    i = data.draw(st.integers(8, len(sec) - 5))
    sec[i] = data.draw(st.integers(0, 255))
    fixed = _with_crc(bytes(sec[:-4]))
    with contextlib.suppress(PsipError):
        parse_tvct(fixed)


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
    asm = SectionAssembler(PSIP_BASE_PID)
    got = [s for p in packets for s in asm.feed(p)]
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


@given(st.lists(st.integers(0, 9), min_size=1, max_size=12))
def test_assembler_packed_sections(sizes: list[int]) -> None:
    secs = [_big_tvct(n) if n else build_stt(7) for n in sizes]
    asm = SectionAssembler()
    got = [s for p in _pack_many(secs, 0x30) for s in asm.feed(p)]
    assert got == secs


def test_assembler_drops_damage_and_recovers() -> None:
    a, b, c = _big_tvct(10), _big_tvct(11), build_stt(5)
    pk_a, cc = packetize_sections(PSIP_BASE_PID, [a], 0)
    pk_b, cc = packetize_sections(PSIP_BASE_PID, [b], cc)
    pk_c, _ = packetize_sections(PSIP_BASE_PID, [c], cc)
    asm = SectionAssembler(PSIP_BASE_PID)
    # lose the middle packet of b: CC gap, b dropped, c still arrives
    feed = pk_a + [pk_b[0]] + pk_b[2:] + pk_c
    got = [s for p in feed for s in asm.feed(p)]
    assert got == [a, c] and asm.discontinuities == 1
    # corrupt a payload byte: CRC error counted, nothing returned
    asm2 = SectionAssembler(PSIP_BASE_PID)
    bad = bytearray(pk_c[0])
    bad[20] ^= 0xFF
    assert asm2.feed(bytes(bad)) == [] and asm2.crc_errors == 1
    # duplicates are ignored, other PIDs ignored
    asm3 = SectionAssembler(PSIP_BASE_PID)
    assert asm3.feed(pk_c[0]) == [c] and asm3.feed(pk_c[0]) == []
    other = bytes([0x47, 0x40, 0x31, 0x10]) + pk_c[0][4:]
    assert asm3.feed(other) == []


def test_assembler_rejects_non_packets() -> None:
    asm = SectionAssembler()
    with pytest.raises(PsipError):
        asm.feed(b"\x47" + b"\x00" * 100)
    with pytest.raises(PsipError):
        asm.feed(b"\x00" * 188)


@settings(max_examples=300)
@given(st.lists(st.binary(min_size=187, max_size=187), max_size=20))
def test_assembler_fuzz(bodies: list[bytes]) -> None:
    asm = SectionAssembler()
    for b in bodies:
        for sec in asm.feed(b"\x47" + b):
            assert crc32_mpeg(sec) == 0 and sec[1] & 0x80  # anything returned is a checked long section


def test_assembler_fuzz_mutated_stream() -> None:
    rng = random.Random(1234)
    secs = [_big_tvct(rng.randint(0, 12)) for _ in range(40)]
    packets = _pack_many(secs, PSIP_BASE_PID)
    for _ in range(200):
        pk = [bytearray(p) for p in packets]
        for _ in range(rng.randint(1, 6)):
            p = rng.choice(pk)
            p[rng.randint(1, 187)] = rng.randint(0, 255)
        asm = SectionAssembler(PSIP_BASE_PID)
        for p in pk:
            for sec in asm.feed(bytes(p)):
                assert crc32_mpeg(sec) == 0
                assert len(sec) <= 4096
