"""ATSC PSIP tables (MGT, TVCT/CVCT, STT): round trips, strictness, fuzzing."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ec_node.ts.crc import crc32_mpeg
from ec_node.ts.errors import SectionError
from ec_node.ts.psip import (
    GPS_EPOCH_UNIX,
    TID_CVCT,
    TID_TVCT,
    MgtTable,
    ServiceLocation,
    ServiceLocationElement,
    VirtualChannel,
    build_mgt,
    build_stt,
    build_tvct,
    parse_mgt,
    parse_stt,
    parse_tvct,
    parse_vct,
    unix_to_gps,
)
from ec_node.ts.section import build_section, parse_section_header, section_body

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
    with pytest.raises(SectionError, match="expected table_id"):
        parse_tvct(cvct)  # parse_tvct stays strict about the table it reads
    with pytest.raises(SectionError, match="expected a VCT"):
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
    with pytest.raises(SectionError):
        build_tvct([VirtualChannel("TOO-LONG-NAME", 7, 1, 3, 1)])
    with pytest.raises(SectionError):
        build_tvct([VirtualChannel("X", 1024, 1, 3, 1)])
    with pytest.raises(SectionError):
        build_stt(-1)


def _with_crc(head_and_body: bytes) -> bytes:
    return head_and_body + crc32_mpeg(head_and_body).to_bytes(4, "big")


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=600))
def test_parsers_fuzz_random_bytes(data: bytes) -> None:
    for parse in (parse_section_header, parse_tvct, parse_vct, parse_stt, parse_mgt):
        with contextlib.suppress(SectionError):
            parse(data)


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from([0xC7, 0xC8, 0xC9, 0xCD]), st.binary(max_size=400), st.integers(0, 0xFFFF))
def test_parsers_fuzz_valid_crc_random_body(tid: int, body: bytes, ext: int) -> None:
    """Bodies that pass the CRC reach the table parsers; they must still fail only with SectionError."""
    sec = build_section(tid, ext, body)
    for parse in (parse_tvct, parse_vct, parse_stt, parse_mgt):
        with contextlib.suppress(SectionError):
            parse(sec)


@settings(max_examples=200)
@given(st.lists(channels, min_size=1, max_size=3), st.data())
def test_parsers_fuzz_mutated_valid_tvct(chs: list[VirtualChannel], data: st.DataObject) -> None:
    sec = bytearray(build_tvct(chs))
    i = data.draw(st.integers(8, len(sec) - 5))
    sec[i] = data.draw(st.integers(0, 255))
    fixed = _with_crc(bytes(sec[:-4]))
    with contextlib.suppress(SectionError):
        parse_tvct(fixed)
