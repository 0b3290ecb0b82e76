"""PAT and PMT: which programs a transport stream carries and which PIDs hold their video.

Pure parsers over complete sections (CRC included); strict and bounded.
"""

from __future__ import annotations

from dataclasses import dataclass

from ec_node.ts.crc import crc32_mpeg

PAT_PID = 0x0000
PSIP_PID = 0x1FFB
MAX_SECTION = 1024  # PAT/PMT sections are at most 1021 bytes + 3 header bytes

# stream_type values that carry video, and the codec family used for random-access detection
VIDEO_STREAM_TYPES: dict[int, str] = {
    0x01: "mpeg2",  # MPEG-1 video: same start codes as MPEG-2
    0x02: "mpeg2",
    0x80: "mpeg2",  # DigiCipher II / some ATSC muxes label MPEG-2 video 0x80
    0x1B: "h264",
    0x24: "hevc",
}


class PsiError(ValueError):
    """A PAT/PMT section is malformed or fails its CRC."""


@dataclass(frozen=True)
class Pat:
    transport_stream_id: int
    version: int
    programs: dict[int, int]  # program_number -> PMT PID (program 0, the NIT, excluded)


@dataclass(frozen=True)
class EsInfo:
    stream_type: int
    pid: int


@dataclass(frozen=True)
class Pmt:
    program_number: int
    version: int
    pcr_pid: int
    streams: tuple[EsInfo, ...]

    def video(self) -> EsInfo | None:
        """The first video elementary stream: what chunk boundaries are cut on."""
        for es in self.streams:
            if es.stream_type in VIDEO_STREAM_TYPES:
                return es
        return None


def _check_section(section: bytes, table_id: int) -> tuple[int, int, bytes]:
    """Validate the long-form header and CRC; return (table_id_extension, version, body)."""
    if len(section) < 12 or len(section) > MAX_SECTION:
        raise PsiError(f"section length {len(section)} out of range")
    if section[0] != table_id:
        raise PsiError(f"table_id 0x{section[0]:02x}, expected 0x{table_id:02x}")
    if not section[1] & 0x80:
        raise PsiError("section_syntax_indicator not set")
    length = ((section[1] & 0x0F) << 8) | section[2]
    if length + 3 != len(section):
        raise PsiError("section_length does not match the section")
    if crc32_mpeg(section) != 0:
        raise PsiError("CRC mismatch")
    ext = (section[3] << 8) | section[4]
    version = (section[5] >> 1) & 0x1F
    return ext, version, section[8:-4]


def parse_pat(section: bytes) -> Pat:
    tsid, version, body = _check_section(section, 0x00)
    if len(body) % 4:
        raise PsiError("PAT body is not a whole number of entries")
    programs: dict[int, int] = {}
    for i in range(0, len(body), 4):
        number = (body[i] << 8) | body[i + 1]
        pid = ((body[i + 2] & 0x1F) << 8) | body[i + 3]
        if number != 0:
            programs[number] = pid
    return Pat(tsid, version, programs)


def parse_pmt(section: bytes) -> Pmt:
    program, version, body = _check_section(section, 0x02)
    if len(body) < 4:
        raise PsiError("PMT too short")
    pcr_pid = ((body[0] & 0x1F) << 8) | body[1]
    info_len = ((body[2] & 0x0F) << 8) | body[3]
    i = 4 + info_len
    if i > len(body):
        raise PsiError("PMT program_info_length overruns the section")
    streams = []
    while i < len(body):
        if i + 5 > len(body):
            raise PsiError("truncated PMT ES entry")
        st = body[i]
        pid = ((body[i + 1] & 0x1F) << 8) | body[i + 2]
        es_len = ((body[i + 3] & 0x0F) << 8) | body[i + 4]
        i += 5 + es_len
        if i > len(body):
            raise PsiError("PMT ES_info_length overruns the section")
        streams.append(EsInfo(st, pid))
    return Pmt(program, version, pcr_pid, tuple(streams))


class SectionCollector:
    """Reassembles one PID's PSI section and keeps the TS packets that carried it.

    The chunker needs both: the parsed table to learn PIDs, and the original packets to
    prepend, unchanged, to every chunk. Only the first section starting in a PUSI packet is
    tracked (PAT and PMT are one section each).
    """

    def __init__(self) -> None:
        self._packets: list[bytes] = []
        self._data = bytearray()
        self._need = -1

    def feed(self, pkt: bytes) -> tuple[bytes, tuple[bytes, ...]] | None:
        """Feed a packet of this PID; return (section, packets) once a section completes."""
        from ec_node.ts.packets import payload_offset, pusi

        p = payload_offset(pkt)
        if p is None:
            return None
        if pusi(pkt):
            pointer = pkt[p]
            start = p + 1 + pointer
            if start + 3 > len(pkt):
                self._reset()
                return None
            self._packets = [pkt]
            self._data = bytearray(pkt[start:])
            self._need = 3 + (((self._data[1] & 0x0F) << 8) | self._data[2])
            if self._need > MAX_SECTION:
                self._reset()
                return None
        elif self._need > 0:
            self._packets.append(pkt)
            self._data += pkt[p:]
        else:
            return None
        if len(self._data) >= self._need:
            section = bytes(self._data[: self._need])
            packets = tuple(self._packets)
            self._reset()
            return section, packets
        return None

    def _reset(self) -> None:
        self._packets = []
        self._data = bytearray()
        self._need = -1
