"""PAT and PMT: which programs a transport stream carries and which PIDs hold their video.

Pure parsers over complete sections (CRC included); strict and bounded. Framing, CRC and
reassembly are :mod:`ec_node.ts.section`'s.
"""

from __future__ import annotations

from dataclasses import dataclass

from ec_node.ts.errors import SectionError
from ec_node.ts.section import MAX_PSI_SECTION_LENGTH, section_body

PAT_PID = 0x0000
TID_PAT = 0x00
TID_PMT = 0x02

# stream_type values that carry video, and the codec family used for random-access detection
VIDEO_STREAM_TYPES: dict[int, str] = {
    0x01: "mpeg2",  # MPEG-1 video: same start codes as MPEG-2
    0x02: "mpeg2",
    0x80: "mpeg2",  # DigiCipher II / some ATSC muxes label MPEG-2 video 0x80
    0x1B: "h264",
    0x24: "hevc",
}


@dataclass(frozen=True)
class Pat:
    """A Program Association Table: the stream's id and where each program's PMT is."""

    transport_stream_id: int
    version: int
    programs: dict[int, int]  # program_number -> PMT PID (program 0, the NIT, excluded)


@dataclass(frozen=True)
class EsInfo:
    """One elementary stream of a program, with its ES_info descriptors (raw)."""

    stream_type: int
    pid: int
    descriptors: bytes = b""


@dataclass(frozen=True)
class Pmt:
    """A Program Map Table: the PCR PID and elementary streams of one program."""

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


def _body(section: bytes, table_id: int) -> tuple[int, int, bytes]:
    """(table_id_extension, version, body) of a PSI section after header and CRC checks."""
    body = section_body(section, table_id=table_id, max_section_length=MAX_PSI_SECTION_LENGTH)
    return (section[3] << 8) | section[4], (section[5] >> 1) & 0x1F, body


def parse_pat(section: bytes) -> Pat:
    """Decode a PAT section; SectionError when it is malformed or fails its CRC."""
    tsid, version, body = _body(section, TID_PAT)
    if len(body) % 4:
        raise SectionError("PAT body is not a whole number of entries")
    programs: dict[int, int] = {}
    for i in range(0, len(body), 4):
        number = (body[i] << 8) | body[i + 1]
        pid = ((body[i + 2] & 0x1F) << 8) | body[i + 3]
        if number != 0:
            programs[number] = pid
    return Pat(tsid, version, programs)


def parse_pmt(section: bytes) -> Pmt:
    """Decode a PMT section; SectionError when it is malformed or fails its CRC."""
    program, version, body = _body(section, TID_PMT)
    if len(body) < 4:
        raise SectionError("PMT too short")
    pcr_pid = ((body[0] & 0x1F) << 8) | body[1]
    info_len = ((body[2] & 0x0F) << 8) | body[3]
    i = 4 + info_len
    if i > len(body):
        raise SectionError("PMT program_info_length overruns the section")
    streams = []
    while i < len(body):
        if i + 5 > len(body):
            raise SectionError("truncated PMT ES entry")
        st = body[i]
        pid = ((body[i + 1] & 0x1F) << 8) | body[i + 2]
        es_len = ((body[i + 3] & 0x0F) << 8) | body[i + 4]
        desc = body[i + 5 : i + 5 + es_len]
        i += 5 + es_len
        if i > len(body):
            raise SectionError("PMT ES_info_length overruns the section")
        streams.append(EsInfo(st, pid, desc))
    return Pmt(program, version, pcr_pid, tuple(streams))
