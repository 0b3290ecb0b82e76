"""Long-form PSI/PSIP sections: header and CRC, building, packetising, and the one reassembler.

Why one module: PAT, PMT and ATSC PSIP tables all travel as long-form sections split over TS
packets of one PID. Reading them (the chunker, the inspector) and writing them (the dev kit's
PSIP inserter, test streams) share the same framing rules, so those rules live here once.
Pure; every error is a :class:`~ec_node.ts.errors.SectionError`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from ec_node.ts.crc import crc32_mpeg
from ec_node.ts.errors import SectionError
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

MAX_SECTION_LENGTH = 4093  # largest section_length any PSI/PSIP table may declare
MAX_SECTION_BYTES = 3 + MAX_SECTION_LENGTH
MAX_PSI_SECTION_LENGTH = 1021  # PAT, PMT and ATSC TVCT/STT are limited to 1021
HEADER_BYTES = 8  # table_id .. last_section_number
MIN_LONG_SECTION = HEADER_BYTES + 4  # header + CRC


def check_range(name: str, value: int, lo: int, hi: int) -> None:
    """Reject a builder argument outside the field's range (a SectionError naming the field)."""
    if not isinstance(value, int) or not lo <= value <= hi:
        raise SectionError(f"{name} must be in {lo}..{hi}, got {value!r}")


@dataclass(frozen=True)
class SectionHeader:
    """The eight header bytes every long-form section starts with, decoded."""

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
    check_range("table_id", table_id, 0, 0xFE)
    check_range("table_id_extension", table_id_extension, 0, 0xFFFF)
    check_range("version", version, 0, 31)
    check_range("section_number", section_number, 0, 255)
    check_range("last_section_number", last_section_number, section_number, 255)
    section_length = 5 + len(body) + 4
    if section_length > max_section_length:
        raise SectionError(f"section too long: section_length {section_length} > {max_section_length}")
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


def parse_section_header(
    section: bytes | bytearray | memoryview,
    *,
    table_id: int | None = None,
    max_section_length: int = MAX_SECTION_LENGTH,
) -> SectionHeader:
    """Check a whole long-form section (exact length, CRC, optionally its table) and return its header."""
    sec = bytes(section)
    if len(sec) < MIN_LONG_SECTION:
        raise SectionError(f"section too short: {len(sec)} bytes")
    if len(sec) > 3 + max_section_length:
        raise SectionError(f"section too long: {len(sec)} bytes")
    if not sec[1] & 0x80:
        raise SectionError("not a long-form section (section_syntax_indicator = 0)")
    section_length = ((sec[1] & 0x0F) << 8) | sec[2]
    if len(sec) != 3 + section_length:
        raise SectionError(f"section_length {section_length} does not match {len(sec)} bytes")
    if crc32_mpeg(sec) != 0:
        raise SectionError(f"CRC mismatch in section with table_id 0x{sec[0]:02X}")
    if table_id is not None and sec[0] != table_id:
        raise SectionError(f"expected table_id 0x{table_id:02X}, got 0x{sec[0]:02X}")
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


def section_body(
    section: bytes | bytearray | memoryview,
    *,
    table_id: int | None = None,
    max_section_length: int = MAX_SECTION_LENGTH,
) -> bytes:
    """The bytes between the 8-byte header and the CRC, after full header/CRC validation."""
    parse_section_header(section, table_id=table_id, max_section_length=max_section_length)
    return bytes(section[HEADER_BYTES:-4])


# --- packetisation -------------------------------------------------------------------------------------


def packetize_section(pid: int, section: bytes, cc: int) -> list[bytes]:
    """Split one section into TS packets: pointer_field 0 and PUSI on the first, 0xFF stuffing, CC from ``cc``.

    The caller continues its continuity counter at ``(cc + len(result)) % 16``.
    """
    check_range("pid", pid, 0, NULL_PID - 1)
    check_range("cc", cc, 0, 15)
    if not section or len(section) > MAX_SECTION_BYTES:
        raise SectionError(f"cannot packetise a section of {len(section)} bytes")
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


@dataclass(frozen=True)
class Section:
    """A complete, CRC-verified long-form section and the TS packets that carried it (unchanged)."""

    data: bytes
    packets: tuple[bytes, ...]


@dataclass
class SectionReassembler:
    """Reassembles long-form sections from the TS packets of one PID (pointer_field, multi-packet, packed).

    The chunker needs the carrying packets (it prepends them to every chunk) and the inspector needs
    the sections; both use this one reassembler. ``pid`` None locks onto the first PID fed; packets on
    other PIDs are ignored. Damage (CC gaps, transport errors, bad CRC, impossible lengths) drops the
    affected section and is counted, never raised: a broadcast stream is expected to be imperfect. Only
    a byte string that is not a 188-byte TS packet raises :class:`SectionError`. Short-form sections are
    dropped (counted), so everything returned is a complete long-form section whose CRC verified.
    Memory is bounded by one section.
    """

    pid: int | None = None
    crc_errors: int = 0
    discontinuities: int = 0
    dropped: int = 0
    _buf: bytearray | None = None
    _packets: list[bytes] = field(default_factory=list)  # packets carrying the bytes in _buf
    _last_cc: int | None = None

    def reset(self) -> None:
        """Forget any partial section and the continuity counter (the caller saw the stream break)."""
        self._buf = None
        self._packets = []
        self._last_cc = None

    def feed(self, packet: bytes | bytearray | memoryview) -> list[Section]:
        """Feed one packet; return the sections it completed, in order."""
        if len(packet) != PACKET_SIZE or packet[0] != SYNC_BYTE:
            raise SectionError("not a 188-byte TS packet starting with 0x47")
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
        payload = packet[off:]
        out: list[Section] = []
        if pusi(packet):
            pointer = payload[0]
            if 1 + pointer > len(payload):
                self._abandon()
                return []
            if self._buf is not None:
                self._append(packet, payload[1 : 1 + pointer])
                self._drain(out)
                self._abandon()  # whatever is left before the new start is an incomplete section
            self._buf = bytearray()
            self._packets = []
            self._append(packet, payload[1 + pointer :])
            self._drain(out)
        elif self._buf is not None:
            self._append(packet, payload)
            self._drain(out)
        return out

    def _append(self, packet: bytes, data: bytes) -> None:
        assert self._buf is not None
        self._buf += data
        self._packets.append(packet)

    def _abandon(self) -> None:
        if self._buf:
            self.dropped += 1
        self._buf = None
        self._packets = []

    def _drain(self, out: list[Section]) -> None:
        buf = self._buf
        while buf is not None and buf:
            if buf[0] == 0xFF:  # stuffing: the rest of this packet carries no section
                self._buf = buf = None
                break
            if len(buf) < 3:
                return
            length = ((buf[1] & 0x0F) << 8) | buf[2]
            if length > MAX_SECTION_LENGTH:
                self.dropped += 1
                self._buf = buf = None
                break
            total = 3 + length
            if len(buf) < total:
                return
            sec = bytes(buf[:total])
            del buf[:total]
            if not sec[1] & 0x80 or total < MIN_LONG_SECTION:
                self.dropped += 1
            elif crc32_mpeg(sec) != 0:
                self.crc_errors += 1
            else:
                out.append(Section(sec, tuple(self._packets)))
            self._packets = self._packets[-1:]  # what follows starts in the last packet
        if buf is None or not buf:
            self._buf = None
            self._packets = []
