"""ATSC PSIP (A/65) sections: builders, strict parsers, packetisation, and a generic section assembler.

Why here: ffmpeg cannot write PSIP, and ingest must read what a real tuner sends (TVCT for the channel's
name and major.minor, STT for broadcast time). Everything is pure; parsers are bounded and raise only
:class:`PsipError`. :class:`SectionAssembler` works for any long-form PSI section (PAT, PMT, PSIP).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from ec_node.errors import BadInputError
from ec_node.ts.crc import crc32_mpeg
from ec_node.ts.packets import (
    NULL_PID,
    PACKET_SIZE,
    SYNC_BYTE,
    continuity_counter,
    discontinuity_indicator,
    has_payload,
    payload_offset,
    pid_of,
    pusi,
    transport_error,
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

MAX_SECTION_LENGTH = 4093  # largest section_length any PSI/PSIP table may declare
MAX_SECTION_BYTES = 3 + MAX_SECTION_LENGTH
MAX_VCT_SECTION_LENGTH = 1021  # A/65: TVCT/STT sections are limited like PSI
_HEADER = 8  # table_id .. last_section_number
_MIN_LONG_SECTION = _HEADER + 4  # header + CRC


class PsipError(BadInputError):
    """A PSI/PSIP section (or a builder argument) is malformed: the only error this module raises."""


# --- generic long-form section -------------------------------------------------------------------------


@dataclass(frozen=True)
class SectionHeader:
    table_id: int
    section_syntax_indicator: bool
    private_indicator: bool
    section_length: int
    table_id_extension: int
    version: int
    current_next: bool
    section_number: int
    last_section_number: int


def build_section(
    table_id: int,
    table_id_extension: int,
    body: bytes,
    *,
    version: int = 0,
    private_indicator: bool = True,
    section_number: int = 0,
    last_section_number: int = 0,
    max_section_length: int = MAX_SECTION_LENGTH,
) -> bytes:
    """Wrap ``body`` in a long-form section header and CRC-32/MPEG (current_next = 1)."""
    _check_range("table_id", table_id, 0, 0xFE)
    _check_range("table_id_extension", table_id_extension, 0, 0xFFFF)
    _check_range("version", version, 0, 31)
    _check_range("section_number", section_number, 0, 255)
    _check_range("last_section_number", last_section_number, section_number, 255)
    section_length = 5 + len(body) + 4
    if section_length > max_section_length:
        raise PsipError(f"section too long: section_length {section_length} > {max_section_length}")
    b1 = 0x80 | (0x40 if private_indicator else 0) | 0x30 | (section_length >> 8)
    head = bytes(
        [
            table_id,
            b1,
            section_length & 0xFF,
            table_id_extension >> 8,
            table_id_extension & 0xFF,
            0xC0 | (version << 1) | 1,
            section_number,
            last_section_number,
        ]
    )
    sec = head + body
    return sec + crc32_mpeg(sec).to_bytes(4, "big")


def parse_section_header(section: bytes | bytearray | memoryview, *, table_id: int | None = None) -> SectionHeader:
    """Check a whole long-form section (exact length, CRC) and return its header fields."""
    sec = bytes(section)
    if len(sec) < _MIN_LONG_SECTION:
        raise PsipError(f"section too short: {len(sec)} bytes")
    if len(sec) > MAX_SECTION_BYTES:
        raise PsipError(f"section too long: {len(sec)} bytes")
    if not sec[1] & 0x80:
        raise PsipError("not a long-form section (section_syntax_indicator = 0)")
    section_length = ((sec[1] & 0x0F) << 8) | sec[2]
    if section_length > MAX_SECTION_LENGTH:
        raise PsipError(f"section_length {section_length} exceeds {MAX_SECTION_LENGTH}")
    if len(sec) != 3 + section_length:
        raise PsipError(f"section_length {section_length} does not match {len(sec)} bytes")
    if crc32_mpeg(sec) != 0:
        raise PsipError(f"CRC mismatch in section with table_id 0x{sec[0]:02X}")
    if table_id is not None and sec[0] != table_id:
        raise PsipError(f"expected table_id 0x{table_id:02X}, got 0x{sec[0]:02X}")
    return SectionHeader(
        table_id=sec[0],
        section_syntax_indicator=True,
        private_indicator=bool(sec[1] & 0x40),
        section_length=section_length,
        table_id_extension=(sec[3] << 8) | sec[4],
        version=(sec[5] >> 1) & 0x1F,
        current_next=bool(sec[5] & 0x01),
        section_number=sec[6],
        last_section_number=sec[7],
    )


def section_body(section: bytes | bytearray | memoryview, *, table_id: int | None = None) -> bytes:
    """The bytes between the 8-byte header and the CRC, after full header/CRC validation."""
    parse_section_header(section, table_id=table_id)
    return bytes(section[_HEADER:-4])


# --- byte reader ---------------------------------------------------------------------------------------


class _Reader:
    """Bounds-checked big-endian cursor; every overrun is a PsipError."""

    def __init__(self, data: bytes, what: str) -> None:
        self.data = data
        self.pos = 0
        self.what = what

    def take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise PsipError(f"{self.what}: truncated (need {n} bytes at offset {self.pos})")
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


def _check_range(name: str, value: int, lo: int, hi: int) -> None:
    if not isinstance(value, int) or not lo <= value <= hi:
        raise PsipError(f"{name} must be in {lo}..{hi}, got {value!r}")


def _check_protocol_version(r: _Reader) -> None:
    pv = r.u8()
    if pv != 0:
        raise PsipError(f"{r.what}: unsupported protocol_version {pv}")


def _end_of_table(r: _Reader, length_mask: int) -> None:
    """A table's closing descriptor loop, then nothing: MGT and VCT both end this way."""
    _split_descriptors(r.take(r.u16() & length_mask), f"{r.what} descriptors")
    if r.left:
        raise PsipError(f"{r.what}: {r.left} trailing bytes")


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
    _check_range("tables_defined", len(tables), 0, 0xFFFF)
    body = bytearray([0])  # protocol_version
    body += len(tables).to_bytes(2, "big")
    for t in tables:
        _check_range("table_type", t.table_type, 0, 0xFFFF)
        _check_range("pid", t.pid, 0, 0x1FFF)
        _check_range("table version", t.version, 0, 31)
        _check_range("number_bytes", t.number_bytes, 0, 0xFFFFFFFF)
        _check_range("descriptors length", len(t.descriptors), 0, 0x0FFF)
        body += t.table_type.to_bytes(2, "big")
        body += (0xE000 | t.pid).to_bytes(2, "big")
        body.append(0xE0 | t.version)
        body += t.number_bytes.to_bytes(4, "big")
        body += (0xF000 | len(t.descriptors)).to_bytes(2, "big")
        body += t.descriptors
    body += (0xF000).to_bytes(2, "big")
    return build_section(TID_MGT, 0, bytes(body), version=version)


def parse_mgt(section: bytes | bytearray | memoryview) -> list[MgtTable]:
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
    _check_range("pcr_pid", sld.pcr_pid, 0, 0x1FFF)
    _check_range("number_elements", len(sld.elements), 0, 255)
    out = bytearray((0xE000 | sld.pcr_pid).to_bytes(2, "big"))
    out.append(len(sld.elements))
    for e in sld.elements:
        _check_range("stream_type", e.stream_type, 0, 255)
        _check_range("elementary pid", e.pid, 0, 0x1FFF)
        lang = e.language.encode("ascii", "replace") if e.language else b"\x00\x00\x00"
        if len(lang) != 3:
            raise PsipError(f"language must be a 3-letter ISO-639 code, got {e.language!r}")
        out.append(e.stream_type)
        out += (0xE000 | e.pid).to_bytes(2, "big")
        out += lang
    if len(out) > 255:
        raise PsipError("service location descriptor too long")
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
        raise PsipError(f"service location descriptor: {r.left} trailing bytes")
    return ServiceLocation(pcr_pid, tuple(elements))


def _encode_short_name(name: str) -> bytes:
    try:
        raw = name.encode("utf-16-be")
    except UnicodeEncodeError as e:
        raise PsipError(f"short_name not encodable as UTF-16: {name!r}") from e
    if len(raw) > 14:
        raise PsipError(f"short_name longer than 7 UTF-16 code units: {name!r}")
    return raw.ljust(14, b"\x00")


def build_tvct(channels: Sequence[VirtualChannel], *, tsid: int | None = None, version: int = 0) -> bytes:
    """Terrestrial Virtual Channel Table (0xC8). ``tsid`` defaults to the first channel's TSID."""
    if tsid is None:
        tsid = channels[0].channel_tsid if channels else 0
    _check_range("num_channels_in_section", len(channels), 0, 255)
    body = bytearray([0, len(channels)])
    for ch in channels:
        _check_range("major", ch.major, 0, 1023)
        _check_range("minor", ch.minor, 0, 1023)
        _check_range("modulation", ch.modulation, 0, 255)
        _check_range("carrier_frequency", ch.carrier_frequency, 0, 0xFFFFFFFF)
        _check_range("channel_tsid", ch.channel_tsid, 0, 0xFFFF)
        _check_range("program_number", ch.program_number, 0, 0xFFFF)
        _check_range("etm_location", ch.etm_location, 0, 3)
        _check_range("service_type", ch.service_type, 0, 0x3F)
        _check_range("source_id", ch.source_id, 0, 0xFFFF)
        desc = bytearray()
        if ch.service_location is not None:
            desc += _encode_sld(ch.service_location)
        for tag, payload in ch.other_descriptors:
            _check_range("descriptor tag", tag, 0, 255)
            _check_range("descriptor length", len(payload), 0, 255)
            desc += bytes([tag, len(payload)]) + payload
        _check_range("descriptors_length", len(desc), 0, 0x3FF)
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
    return build_section(TID_TVCT, tsid, bytes(body), version=version, max_section_length=MAX_VCT_SECTION_LENGTH)


def parse_tvct(section: bytes | bytearray | memoryview) -> list[VirtualChannel]:
    """Decode every virtual channel in one TVCT section (use parse_section_header for the TSID)."""
    return _parse_vct(section_body(section, table_id=TID_TVCT), "TVCT")


def parse_vct(section: bytes | bytearray | memoryview) -> list[VirtualChannel]:
    """Like :func:`parse_tvct` but also accepts a cable VCT (0xC9): a lineup needs numbers and names from either."""
    tid = parse_section_header(section).table_id
    if tid not in (TID_TVCT, TID_CVCT):
        raise PsipError(f"expected a VCT (table_id 0xC8/0xC9), got 0x{tid:02X}")
    return _parse_vct(bytes(section[_HEADER:-4]), "TVCT" if tid == TID_TVCT else "CVCT")


def _parse_vct(body: bytes, what: str) -> list[VirtualChannel]:
    r = _Reader(body, what)
    _check_protocol_version(r)
    n = r.u8()
    out = []
    for _ in range(n):
        try:
            name = r.take(14).decode("utf-16-be").rstrip("\x00")
        except UnicodeDecodeError as e:
            raise PsipError(f"{what}: short_name is not valid UTF-16") from e
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
    gps_seconds: int  # seconds since 1980-01-06T00:00:00 GPS
    gps_utc_offset: int  # leap seconds to subtract to get UTC
    unix_seconds: int  # the same instant as a POSIX (UTC) timestamp
    daylight_saving: int = 0x6000


def unix_to_gps(unix_seconds: int, gps_utc_offset: int = GPS_UTC_OFFSET) -> int:
    return unix_seconds - GPS_EPOCH_UNIX + gps_utc_offset


def build_stt(gps_seconds: int, gps_utc_offset: int = GPS_UTC_OFFSET, daylight_saving: int = 0x6000) -> bytes:
    """System Time Table (0xCD, extension 0, version 0 as A/65 requires)."""
    _check_range("gps_seconds", gps_seconds, 0, 0xFFFFFFFF)
    _check_range("gps_utc_offset", gps_utc_offset, 0, 255)
    _check_range("daylight_saving", daylight_saving, 0, 0xFFFF)
    body = bytes([0]) + gps_seconds.to_bytes(4, "big") + bytes([gps_utc_offset]) + daylight_saving.to_bytes(2, "big")
    return build_section(TID_STT, 0, body, max_section_length=MAX_VCT_SECTION_LENGTH)


def parse_stt(section: bytes | bytearray | memoryview) -> SystemTime:
    r = _Reader(section_body(section, table_id=TID_STT), "STT")
    _check_protocol_version(r)
    gps = r.u32()
    offset = r.u8()
    ds = r.u16()
    _split_descriptors(r.take(r.left), "STT descriptors")
    return SystemTime(gps, offset, gps + GPS_EPOCH_UNIX - offset, ds)


# --- packetisation -------------------------------------------------------------------------------------


def packetize_section(pid: int, section: bytes, cc: int) -> list[bytes]:
    """Split one section into TS packets: pointer_field 0 and PUSI on the first, 0xFF stuffing, CC from ``cc``.

    The caller continues its continuity counter at ``(cc + len(result)) % 16``.
    """
    _check_range("pid", pid, 0, NULL_PID - 1)
    _check_range("cc", cc, 0, 15)
    if not section or len(section) > MAX_SECTION_BYTES:
        raise PsipError(f"cannot packetise a section of {len(section)} bytes")
    data = b"\x00" + bytes(section)
    out: list[bytes] = []
    pos = 0
    while pos < len(data):
        chunk = data[pos : pos + PACKET_SIZE - 4]
        head = bytes([SYNC_BYTE, (0x40 if pos == 0 else 0) | (pid >> 8), pid & 0xFF, 0x10 | ((cc + len(out)) & 0x0F)])
        out.append(head + chunk + b"\xff" * (PACKET_SIZE - 4 - len(chunk)))
        pos += PACKET_SIZE - 4
    return out


def packetize_sections(pid: int, sections: Iterable[bytes], cc: int) -> tuple[list[bytes], int]:
    """Packetise several sections back to back; returns the packets and the next continuity counter."""
    out: list[bytes] = []
    for s in sections:
        pk = packetize_section(pid, s, cc)
        cc = (cc + len(pk)) & 0x0F
        out += pk
    return out, cc


# --- reassembly ----------------------------------------------------------------------------------------


@dataclass
class SectionAssembler:
    """Reassembles long-form sections from the TS packets of one PID (pointer_field, multi-packet, packed).

    ``pid`` None locks onto the first PID fed; packets on other PIDs are ignored. Damage (CC gaps,
    transport errors, bad CRC, impossible lengths) drops the affected section and is counted, never
    raised: a broadcast stream is expected to be imperfect. Only a byte string that is not a 188-byte
    TS packet raises :class:`PsipError`. Short-form sections are dropped (counted), so everything
    returned is a complete long-form section whose CRC verified. Memory is bounded by one section.
    """

    pid: int | None = None
    crc_errors: int = 0
    discontinuities: int = 0
    dropped: int = 0
    _buf: bytearray | None = None
    _last_cc: int | None = None

    def reset(self) -> None:
        """Forget any partial section (e.g. after the caller detects a stream discontinuity)."""
        self._buf = None
        self._last_cc = None

    def feed(self, packet: bytes | bytearray | memoryview) -> list[bytes]:
        if len(packet) != PACKET_SIZE or packet[0] != SYNC_BYTE:
            raise PsipError("not a 188-byte TS packet starting with 0x47")
        packet = bytes(packet)
        pid = pid_of(packet)
        if self.pid is None:
            self.pid = pid
        elif pid != self.pid:
            return []
        if transport_error(packet):
            self._abandon()
            self._last_cc = None
            return []
        if not has_payload(packet):
            return []
        cc = continuity_counter(packet)
        if self._last_cc is not None:
            if cc == self._last_cc:  # permitted duplicate packet
                return []
            if cc != (self._last_cc + 1) & 0x0F and not discontinuity_indicator(packet):
                self.discontinuities += 1
                self._abandon()
        self._last_cc = cc
        off = payload_offset(packet)
        if off is None:
            self._abandon()
            return []
        payload = bytes(packet[off:])
        out: list[bytes] = []
        if pusi(packet):
            pointer = payload[0]
            if 1 + pointer > len(payload):
                self._abandon()
                return []
            if self._buf is not None:
                self._buf += payload[1 : 1 + pointer]
                self._drain(out)
                self._abandon()  # whatever is left before the new start is an incomplete section
            self._buf = bytearray(payload[1 + pointer :])
            self._drain(out)
        elif self._buf is not None:
            self._buf += payload
            self._drain(out)
        return out

    def _abandon(self) -> None:
        if self._buf:
            self.dropped += 1
        self._buf = None

    def _drain(self, out: list[bytes]) -> None:
        buf = self._buf
        while buf is not None and buf:
            if buf[0] == 0xFF:  # stuffing: the rest of this packet carries no section
                self._buf = buf = None
                return
            if len(buf) < 3:
                return
            length = ((buf[1] & 0x0F) << 8) | buf[2]
            if length > MAX_SECTION_LENGTH:
                self.dropped += 1
                self._buf = buf = None
                return
            total = 3 + length
            if len(buf) < total:
                return
            sec = bytes(buf[:total])
            del buf[:total]
            if not sec[1] & 0x80 or total < _MIN_LONG_SECTION:
                self.dropped += 1
            elif crc32_mpeg(sec) != 0:
                self.crc_errors += 1
            else:
                out.append(sec)
        if buf is not None and not buf:
            self._buf = None
