"""Derive an HDHomeRun lineup from a TS file: ATSC TVCT for numbers and names, PMT for codecs.

Pure and bounded: it reads at most the bytes it is given, reassembles PSI sections on
PID 0 (PAT), the PMT PIDs and 0x1FFB (ATSC base PID), checks their CRC and ignores
anything malformed. A file without PSIP yields channels without numbers; the caller
supplies defaults.
"""

from __future__ import annotations

from dataclasses import dataclass

from ec_node.ts.crc import crc32_mpeg
from ec_node.ts.packets import PACKET_SIZE, PacketFramer, payload_offset, pid_of, pusi

ATSC_BASE_PID = 0x1FFB
TVCT_TABLE_ID = 0xC8
CVCT_TABLE_ID = 0xC9
MAX_SECTION = 4096

VIDEO_CODECS = {0x01: "MPEG1", 0x02: "MPEG2", 0x80: "MPEG2", 0x1B: "H264", 0x24: "HEVC"}
AUDIO_CODECS = {0x81: "AC3", 0x87: "EAC3", 0x0F: "AAC", 0x11: "AAC", 0x03: "MPEG", 0x04: "MPEG"}


@dataclass(frozen=True)
class ProbedChannel:
    program_number: int
    guide_number: str | None = None  # "major.minor" from the TVCT
    guide_name: str | None = None
    video_codec: str | None = None
    audio_codec: str | None = None


@dataclass
class _Sections:
    """Per-PID PSI section reassembly (one section in flight per PID)."""

    bufs: dict[int, bytearray]

    def feed(self, pkt: bytes, off: int) -> list[bytes]:
        pid = pid_of(pkt, off)
        po = payload_offset(pkt, off)
        if po is None:
            return []
        payload = pkt[off + po : off + PACKET_SIZE]
        out: list[bytes] = []
        if pusi(pkt, off):
            ptr = payload[0]
            if 1 + ptr > len(payload):
                self.bufs.pop(pid, None)
                return []
            if pid in self.bufs:
                self.bufs[pid] += payload[1 : 1 + ptr]
                out += self._complete(pid)
            self.bufs[pid] = bytearray(payload[1 + ptr :])
        elif pid in self.bufs:
            self.bufs[pid] += payload
        else:
            return out
        return out + self._complete(pid)

    def _complete(self, pid: int) -> list[bytes]:
        out: list[bytes] = []
        buf = self.bufs.get(pid)
        while buf is not None and len(buf) >= 3 and buf[0] != 0xFF:
            total = 3 + (((buf[1] & 0x0F) << 8) | buf[2])
            if total > MAX_SECTION:
                self.bufs.pop(pid, None)
                break
            if len(buf) < total:
                break
            sec = bytes(buf[:total])
            del buf[:total]
            if total >= 12 and crc32_mpeg(sec) == 0:
                out.append(sec)
        if buf is not None and buf and buf[0] == 0xFF:
            self.bufs.pop(pid, None)
        return out


def _parse_pat(sec: bytes) -> dict[int, int]:
    progs: dict[int, int] = {}
    for i in range(8, len(sec) - 4 - 3, 4):
        num = (sec[i] << 8) | sec[i + 1]
        pid = ((sec[i + 2] & 0x1F) << 8) | sec[i + 3]
        if num != 0:
            progs[num] = pid
    return progs


def _parse_pmt(sec: bytes) -> tuple[str | None, str | None]:
    video = audio = None
    info_len = ((sec[10] & 0x0F) << 8) | sec[11]
    i = 12 + info_len
    end = len(sec) - 4
    while i + 5 <= end:
        st = sec[i]
        es_len = ((sec[i + 3] & 0x0F) << 8) | sec[i + 4]
        video = video or VIDEO_CODECS.get(st)
        audio = audio or AUDIO_CODECS.get(st)
        # AC-3 in DVB style: private PES (0x06) with an AC-3 descriptor (0x6A) / E-AC-3 (0x7A)
        if st == 0x06 and audio is None:
            d = sec[i + 5 : i + 5 + es_len]
            j = 0
            while j + 2 <= len(d):
                if d[j] == 0x6A:
                    audio = "AC3"
                elif d[j] == 0x7A:
                    audio = "EAC3"
                j += 2 + d[j + 1]
        i += 5 + es_len
    return video, audio


def _parse_vct(sec: bytes) -> list[tuple[int, str, str]]:
    """(program_number, "major.minor", short_name) per virtual channel."""
    out: list[tuple[int, str, str]] = []
    if len(sec) < 14:
        return out
    n = sec[9]
    i = 10
    end = len(sec) - 4
    for _ in range(n):
        if i + 32 > end:
            break
        name = sec[i : i + 14].decode("utf-16-be", errors="replace").rstrip("\x00 ")
        v = int.from_bytes(sec[i + 14 : i + 18], "big")
        major = (v >> 18) & 0x3FF
        minor = (v >> 8) & 0x3FF
        program = int.from_bytes(sec[i + 24 : i + 26], "big")
        desc_len = ((sec[i + 30] & 0x03) << 8) | sec[i + 31]
        out.append((program, f"{major}.{minor}", name))
        i += 32 + desc_len
    return out


def probe_channels(data: bytes, *, max_bytes: int = 8 * 1024 * 1024) -> list[ProbedChannel]:
    """Channels found in the first ``max_bytes`` of ``data``, one per PAT program, in PAT order."""
    framer = PacketFramer()
    sections = _Sections({})
    progs: dict[int, int] = {}
    codecs: dict[int, tuple[str | None, str | None]] = {}
    vct: dict[int, tuple[str, str]] = {}
    for framed in framer.feed(data[:max_bytes]) + framer.flush():
        buf = framed.data
        if progs and len(codecs) >= len(progs) and vct:
            break
        for off in range(0, len(buf), PACKET_SIZE):
            pid = pid_of(buf, off)
            if pid != 0 and pid != ATSC_BASE_PID and pid not in progs.values():
                continue
            for sec in sections.feed(buf, off):
                tid = sec[0]
                if pid == 0 and tid == 0x00:
                    progs = progs or _parse_pat(sec)
                elif tid == 0x02:
                    prog = (sec[3] << 8) | sec[4]
                    codecs.setdefault(prog, _parse_pmt(sec))
                elif pid == ATSC_BASE_PID and tid in (TVCT_TABLE_ID, CVCT_TABLE_ID):
                    for program, gn, name in _parse_vct(sec):
                        vct.setdefault(program, (gn, name))
            if progs and len(codecs) >= len(progs) and vct:
                break
    out = []
    for prog in progs:
        gn_name = vct.get(prog)
        v, a = codecs.get(prog, (None, None))
        out.append(ProbedChannel(prog, gn_name[0] if gn_name else None, gn_name[1] if gn_name else None, v, a))
    return out
