"""ATSC PSIP (A/65) tables: MGT, TVCT/CVCT and STT builders and strict parsers.

Why here: ffmpeg cannot write PSIP, and ingest must read what a real tuner sends (TVCT for the channel's
name and major.minor, STT for broadcast time). Everything is pure; parsers are bounded and raise only
:class:`~ec_node.ts.errors.SectionError`. Section framing, packetising and reassembly are
:mod:`ec_node.ts.section`'s.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from ec_node.ts.errors import SectionError
from ec_node.ts.section import (
    HEADER_BYTES,
    MAX_PSI_SECTION_LENGTH,
    build_section,
    check_range,
    parse_section_header,
    section_body,
)

PSIP_BASE_PID = 0x1FFB
TID_MGT = 0xC7
TID_TVCT = 0xC8
TID_CVCT = 0xC9  # cable VCT: the TVCT layout (two flag bits differ, both ignored here)
TID_STT = 0xCD
MGT_TYPE_TVCT_CURRENT = 0x0000
MODULATION_8VSB = 0x04
SERVICE_TYPE_ATSC_DTV = 0x02
DESC_SERVICE_LOCATION = 0xA1

GPS_EPOCH_UNIX = 315_964_800  # 1980-01-06T00:00:00Z
GPS_UTC_OFFSET = 18  # leap seconds GPS is ahead of UTC (since 2017)

# --- byte reader ---------------------------------------------------------------------------------------


class _Reader:
    """Bounds-checked big-endian cursor; every overrun is a SectionError."""

    def __init__(self, data: bytes, what: str) -> None:
        self.data = data
        self.pos = 0
        self.what = what

    def take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise SectionError(f"{self.what}: truncated (need {n} bytes at offset {self.pos})")
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def u8(self) -> int:
        return self.take(1)[0]

    def u16(self) -> int:
        return int.from_bytes(self.take(2), "big")

    def u32(self) -> int:
        return int.from_bytes(self.take(4), "big")

    @property
    def left(self) -> int:
        return len(self.data) - self.pos


def _split_descriptors(data: bytes, what: str) -> list[tuple[int, bytes]]:
    out = []
    r = _Reader(data, what)
    while r.left:
        tag = r.u8()
        length = r.u8()
        out.append((tag, r.take(length)))
    return out


def _check_protocol_version(r: _Reader) -> None:
    pv = r.u8()
    if pv != 0:
        raise SectionError(f"{r.what}: unsupported protocol_version {pv}")


def _end_of_table(r: _Reader, length_mask: int) -> None:
    """A table's closing descriptor loop, then nothing: MGT and VCT both end this way."""
    _split_descriptors(r.take(r.u16() & length_mask), f"{r.what} descriptors")
    if r.left:
        raise SectionError(f"{r.what}: {r.left} trailing bytes")


# --- MGT -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MgtTable:
    """One MGT entry: where a table lives and how big it is."""

    table_type: int
    pid: int
    version: int
    number_bytes: int
    descriptors: bytes = b""


def build_mgt(tables: Sequence[MgtTable], *, version: int = 0) -> bytes:
    """Master Guide Table (table_id 0xC7, extension 0)."""
    check_range("tables_defined", len(tables), 0, 0xFFFF)
    body = bytearray([0])  # protocol_version
    body += len(tables).to_bytes(2, "big")
    for t in tables:
        check_range("table_type", t.table_type, 0, 0xFFFF)
        check_range("pid", t.pid, 0, 0x1FFF)
        check_range("table version", t.version, 0, 31)
        check_range("number_bytes", t.number_bytes, 0, 0xFFFFFFFF)
        check_range("descriptors length", len(t.descriptors), 0, 0x0FFF)
        body += t.table_type.to_bytes(2, "big")
        body += (0xE000 | t.pid).to_bytes(2, "big")
        body.append(0xE0 | t.version)
        body += t.number_bytes.to_bytes(4, "big")
        body += (0xF000 | len(t.descriptors)).to_bytes(2, "big")
        body += t.descriptors
    body += (0xF000).to_bytes(2, "big")
    return build_section(TID_MGT, 0, bytes(body), version=version)


def parse_mgt(section: bytes | bytearray | memoryview) -> list[MgtTable]:
    """Decode a Master Guide Table section: the tables it announces."""
    r = _Reader(section_body(section, table_id=TID_MGT), "MGT")
    _check_protocol_version(r)
    n = r.u16()
    out: list[MgtTable] = []
    for _ in range(n):
        table_type = r.u16()
        pid = r.u16() & 0x1FFF
        version = r.u8() & 0x1F
        number_bytes = r.u32()
        desc = r.take(r.u16() & 0x0FFF)
        _split_descriptors(desc, "MGT table descriptors")
        out.append(MgtTable(table_type, pid, version, number_bytes, desc))
    _end_of_table(r, 0x0FFF)
    return out


# --- TVCT ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ServiceLocationElement:
    """One elementary stream a service location descriptor lists."""

    stream_type: int
    pid: int
    language: str = ""  # ISO-639-2 code (3 ASCII letters) or "" for none


@dataclass(frozen=True)
class ServiceLocation:
    """Service location descriptor (0xA1): where the channel's PCR and elementary streams are."""

    pcr_pid: int
    elements: tuple[ServiceLocationElement, ...] = ()


@dataclass(frozen=True)
class VirtualChannel:
    """One TVCT/CVCT entry: the channel's number (major.minor), short name and program."""

    short_name: str
    major: int
    minor: int
    program_number: int
    channel_tsid: int
    modulation: int = MODULATION_8VSB
    service_type: int = SERVICE_TYPE_ATSC_DTV
    source_id: int = 1
    carrier_frequency: int = 0
    etm_location: int = 0
    access_controlled: bool = False
    hidden: bool = False
    hide_guide: bool = False
    service_location: ServiceLocation | None = None
    other_descriptors: tuple[tuple[int, bytes], ...] = field(default=())


def _encode_sld(sld: ServiceLocation) -> bytes:
    check_range("pcr_pid", sld.pcr_pid, 0, 0x1FFF)
    check_range("number_elements", len(sld.elements), 0, 255)
    out = bytearray((0xE000 | sld.pcr_pid).to_bytes(2, "big"))
    out.append(len(sld.elements))
    for e in sld.elements:
        check_range("stream_type", e.stream_type, 0, 255)
        check_range("elementary pid", e.pid, 0, 0x1FFF)
        lang = e.language.encode("ascii", "replace") if e.language else b"\x00\x00\x00"
        if len(lang) != 3:
            raise SectionError(f"language must be a 3-letter ISO-639 code, got {e.language!r}")
        out.append(e.stream_type)
        out += (0xE000 | e.pid).to_bytes(2, "big")
        out += lang
    if len(out) > 255:
        raise SectionError("service location descriptor too long")
    return bytes([DESC_SERVICE_LOCATION, len(out)]) + bytes(out)


def _decode_sld(data: bytes) -> ServiceLocation:
    r = _Reader(data, "service location descriptor")
    pcr_pid = r.u16() & 0x1FFF
    n = r.u8()
    elements = []
    for _ in range(n):
        st = r.u8()
        pid = r.u16() & 0x1FFF
        raw = r.take(3)
        lang = "" if raw == b"\x00\x00\x00" else raw.decode("latin-1")
        elements.append(ServiceLocationElement(st, pid, lang))
    if r.left:
        raise SectionError(f"service location descriptor: {r.left} trailing bytes")
    return ServiceLocation(pcr_pid, tuple(elements))


def _encode_short_name(name: str) -> bytes:
    try:
        raw = name.encode("utf-16-be")
    except UnicodeEncodeError as e:
        raise SectionError(f"short_name not encodable as UTF-16: {name!r}") from e
    if len(raw) > 14:
        raise SectionError(f"short_name longer than 7 UTF-16 code units: {name!r}")
    return raw.ljust(14, b"\x00")


def build_tvct(channels: Sequence[VirtualChannel], *, tsid: int | None = None, version: int = 0) -> bytes:
    """Terrestrial Virtual Channel Table (0xC8). ``tsid`` defaults to the first channel's TSID."""
    if tsid is None:
        tsid = channels[0].channel_tsid if channels else 0
    check_range("num_channels_in_section", len(channels), 0, 255)
    body = bytearray([0, len(channels)])
    for ch in channels:
        check_range("major", ch.major, 0, 1023)
        check_range("minor", ch.minor, 0, 1023)
        check_range("modulation", ch.modulation, 0, 255)
        check_range("carrier_frequency", ch.carrier_frequency, 0, 0xFFFFFFFF)
        check_range("channel_tsid", ch.channel_tsid, 0, 0xFFFF)
        check_range("program_number", ch.program_number, 0, 0xFFFF)
        check_range("etm_location", ch.etm_location, 0, 3)
        check_range("service_type", ch.service_type, 0, 0x3F)
        check_range("source_id", ch.source_id, 0, 0xFFFF)
        desc = bytearray()
        if ch.service_location is not None:
            desc += _encode_sld(ch.service_location)
        for tag, payload in ch.other_descriptors:
            check_range("descriptor tag", tag, 0, 255)
            check_range("descriptor length", len(payload), 0, 255)
            desc += bytes([tag, len(payload)]) + payload
        check_range("descriptors_length", len(desc), 0, 0x3FF)
        body += _encode_short_name(ch.short_name)
        body += ((0xF << 28) | (ch.major << 18) | (ch.minor << 8) | ch.modulation).to_bytes(4, "big")
        body += ch.carrier_frequency.to_bytes(4, "big")
        body += ch.channel_tsid.to_bytes(2, "big")
        body += ch.program_number.to_bytes(2, "big")
        flags = (
            (ch.etm_location << 14)
            | (int(ch.access_controlled) << 13)
            | (int(ch.hidden) << 12)
            | (0b11 << 10)
            | (int(ch.hide_guide) << 9)
            | (0b111 << 6)
            | ch.service_type
        )
        body += flags.to_bytes(2, "big")
        body += ch.source_id.to_bytes(2, "big")
        body += (0xFC00 | len(desc)).to_bytes(2, "big")
        body += desc
    body += (0xFC00).to_bytes(2, "big")  # no additional descriptors
    return build_section(TID_TVCT, tsid, bytes(body), version=version, max_section_length=MAX_PSI_SECTION_LENGTH)


def parse_tvct(section: bytes | bytearray | memoryview) -> list[VirtualChannel]:
    """Decode every virtual channel in one TVCT section (use parse_section_header for the TSID)."""
    return _parse_vct(section_body(section, table_id=TID_TVCT), "TVCT")


def parse_vct(section: bytes | bytearray | memoryview) -> list[VirtualChannel]:
    """Like :func:`parse_tvct` but also accepts a cable VCT (0xC9): a lineup needs numbers and names from either."""
    tid = parse_section_header(section).table_id
    if tid not in (TID_TVCT, TID_CVCT):
        raise SectionError(f"expected a VCT (table_id 0xC8/0xC9), got 0x{tid:02X}")
    return _parse_vct(bytes(section[HEADER_BYTES:-4]), "TVCT" if tid == TID_TVCT else "CVCT")


def _parse_vct(body: bytes, what: str) -> list[VirtualChannel]:
    r = _Reader(body, what)
    _check_protocol_version(r)
    n = r.u8()
    out = []
    for _ in range(n):
        try:
            name = r.take(14).decode("utf-16-be").rstrip("\x00")
        except UnicodeDecodeError as e:
            raise SectionError(f"{what}: short_name is not valid UTF-16") from e
        w = r.u32()
        carrier = r.u32()
        ch_tsid = r.u16()
        program = r.u16()
        flags = r.u16()
        source_id = r.u16()
        desc = r.take(r.u16() & 0x3FF)
        sld = None
        others = []
        for tag, payload in _split_descriptors(desc, f"{what} channel descriptors"):
            if tag == DESC_SERVICE_LOCATION and sld is None:
                sld = _decode_sld(payload)
            else:
                others.append((tag, payload))
        out.append(
            VirtualChannel(
                short_name=name,
                major=(w >> 18) & 0x3FF,
                minor=(w >> 8) & 0x3FF,
                modulation=w & 0xFF,
                carrier_frequency=carrier,
                program_number=program,
                channel_tsid=ch_tsid,
                etm_location=flags >> 14,
                access_controlled=bool(flags & 0x2000),
                hidden=bool(flags & 0x1000),
                hide_guide=bool(flags & 0x0200),
                service_type=flags & 0x3F,
                source_id=source_id,
                service_location=sld,
                other_descriptors=tuple(others),
            )
        )
    _end_of_table(r, 0x3FF)
    return out


# --- STT -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SystemTime:
    """An STT: broadcast time in GPS seconds, with the UTC equivalent."""

    gps_seconds: int  # seconds since 1980-01-06T00:00:00 GPS
    gps_utc_offset: int  # leap seconds to subtract to get UTC
    unix_seconds: int  # the same instant as a POSIX (UTC) timestamp
    daylight_saving: int = 0x6000


def unix_to_gps(unix_seconds: int, gps_utc_offset: int = GPS_UTC_OFFSET) -> int:
    """The GPS seconds an STT carries for a POSIX time (builders take GPS time)."""
    return unix_seconds - GPS_EPOCH_UNIX + gps_utc_offset


def build_stt(gps_seconds: int, gps_utc_offset: int = GPS_UTC_OFFSET, daylight_saving: int = 0x6000) -> bytes:
    """System Time Table (0xCD, extension 0, version 0 as A/65 requires)."""
    check_range("gps_seconds", gps_seconds, 0, 0xFFFFFFFF)
    check_range("gps_utc_offset", gps_utc_offset, 0, 255)
    check_range("daylight_saving", daylight_saving, 0, 0xFFFF)
    body = bytes([0]) + gps_seconds.to_bytes(4, "big") + bytes([gps_utc_offset]) + daylight_saving.to_bytes(2, "big")
    return build_section(TID_STT, 0, body, max_section_length=MAX_PSI_SECTION_LENGTH)


def parse_stt(section: bytes | bytearray | memoryview) -> SystemTime:
    """Decode a System Time Table section."""
    r = _Reader(section_body(section, table_id=TID_STT), "STT")
    _check_protocol_version(r)
    gps = r.u32()
    offset = r.u8()
    ds = r.u16()
    _split_descriptors(r.take(r.left), "STT descriptors")
    return SystemTime(gps, offset, gps + GPS_EPOCH_UNIX - offset, ds)
