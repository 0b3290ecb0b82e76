"""Derive an HDHomeRun lineup from a TS file: ATSC VCT for numbers and names, PMT for codecs.

Pure and bounded: it reads at most the bytes it is given and reuses the project's canonical
parsers (:mod:`ec_node.ts.psi` for PAT/PMT, :mod:`ec_node.ts.psip` for section reassembly and the
VCT). Damaged or malformed sections are skipped, never raised: a file without PSIP yields channels
without numbers, and the caller supplies defaults.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from ec_node.ts.packets import PACKET_SIZE, PacketFramer, pid_of
from ec_node.ts.psi import PAT_PID, VIDEO_STREAM_TYPES, Pmt, PsiError, parse_pat, parse_pmt
from ec_node.ts.psip import PSIP_BASE_PID, PsipError, SectionAssembler, parse_vct

# stream_type -> HDHomeRun lineup AudioCodec (video names come from ts.psi.VIDEO_STREAM_TYPES)
AUDIO_CODECS = {0x81: "AC3", 0x87: "EAC3", 0x0F: "AAC", 0x11: "AAC", 0x03: "MPEG", 0x04: "MPEG"}
PRIVATE_PES = 0x06  # DVB-style audio: stream_type 0x06 plus an AC-3 (0x6A) / E-AC-3 (0x7A) descriptor
DVB_AUDIO_DESCRIPTORS = {0x6A: "AC3", 0x7A: "EAC3"}


@dataclass(frozen=True)
class ProbedChannel:
    program_number: int
    guide_number: str | None = None  # "major.minor" from the VCT
    guide_name: str | None = None
    video_codec: str | None = None
    audio_codec: str | None = None


def _codecs(pmt: Pmt, section: bytes) -> tuple[str | None, str | None]:
    """(VideoCodec, AudioCodec) as an HDHomeRun lineup names them: the first of each kind."""
    es_video = pmt.video()
    video = VIDEO_STREAM_TYPES[es_video.stream_type].upper() if es_video else None
    audio = next((AUDIO_CODECS[es.stream_type] for es in pmt.streams if es.stream_type in AUDIO_CODECS), None)
    if audio is None and any(es.stream_type == PRIVATE_PES for es in pmt.streams):
        audio = _dvb_audio(section)
    return video, audio


def _dvb_audio(section: bytes) -> str | None:
    """AC-3/E-AC-3 carried DVB-style. ts.psi.EsInfo keeps no descriptors, so read them here.

    Only called on a section parse_pmt has already validated, so the ES loop is well formed.
    """
    i = 12 + (((section[10] & 0x0F) << 8) | section[11])
    end = len(section) - 4
    while i + 5 <= end:
        es_len = ((section[i + 3] & 0x0F) << 8) | section[i + 4]
        if section[i] == PRIVATE_PES:
            d = section[i + 5 : i + 5 + es_len]
            j = 0
            while j + 2 <= len(d):
                if d[j] in DVB_AUDIO_DESCRIPTORS:
                    return DVB_AUDIO_DESCRIPTORS[d[j]]
                j += 2 + d[j + 1]
        i += 5 + es_len
    return None


@dataclass
class _Lineup:
    """What has been learnt so far; the first PAT, PMT per program and VCT entry per program win."""

    programs: dict[int, int] = field(default_factory=dict)  # program_number -> PMT PID
    codecs: dict[int, tuple[str | None, str | None]] = field(default_factory=dict)
    vct: dict[int, tuple[str, str]] = field(default_factory=dict)  # program -> ("major.minor", name)
    assemblers: dict[int, SectionAssembler] = field(
        default_factory=lambda: {PAT_PID: SectionAssembler(PAT_PID), PSIP_BASE_PID: SectionAssembler(PSIP_BASE_PID)}
    )

    @property
    def complete(self) -> bool:
        return bool(self.programs) and len(self.codecs) >= len(self.programs) and bool(self.vct)

    def feed(self, pkt: bytes) -> None:
        pid = pid_of(pkt)
        asm = self.assemblers.get(pid)
        if asm is None:
            return
        for sec in asm.feed(pkt):
            try:
                self._take(pid, sec)
            except (PsiError, PsipError):
                continue  # a malformed table says nothing about the lineup

    def _take(self, pid: int, sec: bytes) -> None:
        if pid == PAT_PID:
            if not self.programs:
                self.programs = parse_pat(sec).programs
                for pmt_pid in self.programs.values():
                    self.assemblers.setdefault(pmt_pid, SectionAssembler(pmt_pid))
        elif pid == PSIP_BASE_PID:
            for ch in parse_vct(sec):
                self.vct.setdefault(ch.program_number, (f"{ch.major}.{ch.minor}", ch.short_name.rstrip()))
        else:
            pmt = parse_pmt(sec)
            self.codecs.setdefault(pmt.program_number, _codecs(pmt, sec))

    def channels(self) -> list[ProbedChannel]:
        out = []
        for prog in self.programs:
            gn, name = self.vct.get(prog, (None, None))
            video, audio = self.codecs.get(prog, (None, None))
            out.append(ProbedChannel(prog, gn, name, video, audio))
        return out


def _packets(data: bytes) -> Iterator[bytes]:
    framer = PacketFramer()
    for framed in framer.feed(data) + framer.flush():
        for off in range(0, len(framed.data), PACKET_SIZE):
            yield framed.data[off : off + PACKET_SIZE]


def probe_channels(data: bytes, *, max_bytes: int = 8 * 1024 * 1024) -> list[ProbedChannel]:
    """Channels found in the first ``max_bytes`` of ``data``, one per PAT program, in PAT order."""
    lineup = _Lineup()
    for pkt in _packets(data[:max_bytes]):
        if lineup.complete:
            break
        lineup.feed(pkt)
    return lineup.channels()
