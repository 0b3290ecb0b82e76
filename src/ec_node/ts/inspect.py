"""What does this stream carry? Programs, codecs, PSIP channels, PCR spacing and continuity.

Why one inspector: the emulator derives its lineup from a media file, tests (and people) check a
synthetic or captured stream the way a tuner client would, and the publisher reads the head of its
input to learn which broadcast it is before it ingests. All three ask the same questions of the same
tables, so they share this module. Pure and bounded: bytes in, a report out. Damage (junk, CC gaps,
bad sections) is counted in the report, never raised; only the head probe raises, through the input
guard, when the input is not usable TS at all.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from ec_node.ts.chunker import StreamInfo
from ec_node.ts.errors import SectionError
from ec_node.ts.guard import GuardedChunker
from ec_node.ts.packets import (
    NULL_PID,
    PACKET_SIZE,
    PCR_HZ,
    PTS_HZ,
    PacketFramer,
    continuity_counter,
    has_payload,
    pid_of,
    pusi,
    random_access_indicator,
    read_pcr,
)
from ec_node.ts.pcr import pcr_step
from ec_node.ts.pes import pes_dts
from ec_node.ts.psi import PAT_PID, TID_PAT, TID_PMT, VIDEO_STREAM_TYPES, Pmt, parse_pat, parse_pmt
from ec_node.ts.psip import (
    PSIP_BASE_PID,
    TID_CVCT,
    TID_MGT,
    TID_STT,
    TID_TVCT,
    MgtTable,
    SystemTime,
    VirtualChannel,
    parse_mgt,
    parse_stt,
    parse_tvct,
    parse_vct,
)
from ec_node.ts.section import SectionReassembler

# stream_type -> HDHomeRun lineup AudioCodec (video names come from ts.psi.VIDEO_STREAM_TYPES)
AUDIO_CODECS = {0x81: "AC3", 0x87: "EAC3", 0x0F: "AAC", 0x11: "AAC", 0x03: "MPEG", 0x04: "MPEG"}
PRIVATE_PES = 0x06  # DVB-style audio: stream_type 0x06 plus an AC-3 (0x6A) / E-AC-3 (0x7A) descriptor
DVB_AUDIO_DESCRIPTORS = {0x6A: "AC3", 0x7A: "EAC3"}
LINEUP_PROBE_BYTES = 8 * 1024 * 1024
# The head probe stops once this much has been read after the video PID is known (PSIP repeats every ~400 ms).
PSIP_PROBE_BYTES = 4 * 1024 * 1024


# --- the whole-stream report ---------------------------------------------------------------------------


@dataclass
class TsReport:
    """Everything one pass over a stream learnt; tables are the latest seen, channels accumulate."""

    packets: int = 0
    resyncs: int = 0  # times the framer lost sync
    skipped_bytes: int = 0  # bytes dropped while out of sync
    pid_counts: dict[int, int] = field(default_factory=dict)
    programs: dict[int, int] = field(default_factory=dict)  # program_number -> PMT PID (from the PAT)
    transport_stream_id: int | None = None
    pmts: dict[int, Pmt] = field(default_factory=dict)  # PMT PID -> last PMT seen
    pcr_pid: int | None = None
    pcr_count: int = 0
    pcr_jumps: int = 0  # PCR steps that broke the clock (back, or ahead by more than the cap)
    max_pcr_interval_s: float = 0.0  # largest PCR step that continued the clock
    cc_errors: int = 0
    random_access: dict[int, int] = field(default_factory=dict)  # PID -> packets with the RAI flag
    mgt: list[MgtTable] | None = None
    tvct_tsid: int | None = None
    channels: list[VirtualChannel] = field(default_factory=list)  # from TVCT and CVCT, first per number
    stt: list[SystemTime] = field(default_factory=list)
    psip_sections: dict[int, int] = field(default_factory=dict)  # table_id -> count
    section_crc_errors: int = 0
    section_errors: int = 0  # sections whose CRC held but whose table was malformed
    min_dts_margin_s: float | None = None  # min over PES of DTS - PCR at arrival; < 0 means late (invalid)

    @property
    def nulls(self) -> int:
        """Null packets (stuffing a CBR mux adds)."""
        return self.pid_counts.get(NULL_PID, 0)

    def pmt_of(self, program_number: int) -> Pmt | None:
        """The PMT of a program, once both the PAT and that PMT were seen."""
        pmt = self.pmts.get(self.programs.get(program_number, -1))
        return pmt if pmt is not None and pmt.program_number == program_number else None


class _Walk:
    """One pass: per-packet counters and the section reassemblers of PAT, PMTs and PSIP."""

    def __init__(self) -> None:
        self.report = TsReport()
        self._asm: dict[int, SectionReassembler] = {
            PAT_PID: SectionReassembler(PAT_PID),
            PSIP_BASE_PID: SectionReassembler(PSIP_BASE_PID),
        }
        self._last_cc: dict[int, int] = {}
        self._last_pcr: int | None = None
        self._es_pids: set[int] = set()

    def packet(self, pkt: bytes) -> None:
        p = self.report
        pid = pid_of(pkt)
        p.packets += 1
        p.pid_counts[pid] = p.pid_counts.get(pid, 0) + 1
        if pid == NULL_PID:
            return
        if has_payload(pkt):
            cc = continuity_counter(pkt)
            prev = self._last_cc.get(pid)
            if prev is not None and cc not in (prev, (prev + 1) & 0x0F):
                p.cc_errors += 1
            self._last_cc[pid] = cc
        if random_access_indicator(pkt):
            p.random_access[pid] = p.random_access.get(pid, 0) + 1
        self._pcr(pid, read_pcr(pkt))
        if pusi(pkt) and self._last_pcr is not None and pid in self._es_pids:
            dts = pes_dts(pkt)
            if dts is not None:
                margin = dts / PTS_HZ - self._last_pcr / PCR_HZ
                if p.min_dts_margin_s is None or margin < p.min_dts_margin_s:
                    p.min_dts_margin_s = margin
        asm = self._asm.get(pid)
        if asm is not None:
            for sec in asm.feed(pkt):
                try:
                    self._section(pid, sec.data)
                except SectionError:
                    p.section_errors += 1  # a malformed table says nothing about the stream

    def finish(self) -> TsReport:
        self.report.section_crc_errors = sum(a.crc_errors for a in self._asm.values())
        return self.report

    def _pcr(self, pid: int, pcr: int | None) -> None:
        p = self.report
        if pcr is None or (p.pcr_pid is not None and pid != p.pcr_pid):
            return
        p.pcr_pid = pid
        p.pcr_count += 1
        if self._last_pcr is not None:
            step = pcr_step(self._last_pcr, pcr)
            if step is None:
                p.pcr_jumps += 1
            else:
                p.max_pcr_interval_s = max(p.max_pcr_interval_s, step / PCR_HZ)
        self._last_pcr = pcr

    def _section(self, pid: int, sec: bytes) -> None:
        p = self.report
        tid = sec[0]
        if pid == PAT_PID:
            if tid == TID_PAT:
                pat = parse_pat(sec)
                p.transport_stream_id, p.programs = pat.transport_stream_id, pat.programs
                for pmt_pid in p.programs.values():
                    self._asm.setdefault(pmt_pid, SectionReassembler(pmt_pid))
        elif pid == PSIP_BASE_PID:
            p.psip_sections[tid] = p.psip_sections.get(tid, 0) + 1
            if tid == TID_MGT:
                p.mgt = parse_mgt(sec)
            elif tid in (TID_TVCT, TID_CVCT):
                channels = parse_vct(sec)  # (checked the header and CRC)
                p.tvct_tsid = (sec[3] << 8) | sec[4]  # table_id_extension
                known = {(c.major, c.minor) for c in p.channels}
                p.channels += [c for c in channels if (c.major, c.minor) not in known]
            elif tid == TID_STT:
                p.stt.append(parse_stt(sec))
        elif tid == TID_PMT:
            p.pmts[pid] = parse_pmt(sec)
            self._es_pids = {s.pid for m in p.pmts.values() for s in m.streams}


def inspect_ts(
    data: bytes | bytearray | memoryview,
    *,
    max_bytes: int | None = None,
    until: Callable[[TsReport], bool] | None = None,
) -> TsReport:
    """Walk the packets of ``data`` (its first ``max_bytes``; junk is skipped) and summarise.

    ``until`` ends the walk early, checked after every packet.
    """
    mv = memoryview(data)[:max_bytes]
    framer = PacketFramer()
    walk = _Walk()
    for run in framer.feed(mv) + framer.flush():
        d = run.data
        for off in range(0, len(d), PACKET_SIZE):
            walk.packet(d[off : off + PACKET_SIZE])
            if until is not None and until(walk.report):
                return _framed(walk.finish(), framer)
    return _framed(walk.finish(), framer)


def _framed(report: TsReport, framer: PacketFramer) -> TsReport:
    report.resyncs, report.skipped_bytes = framer.total_resyncs, framer.total_skipped
    return report


# --- the lineup a tuner would show ----------------------------------------------------------------------


@dataclass(frozen=True)
class ProbedChannel:
    """One program as an HDHomeRun lineup lists it: number and name from the VCT, codecs from the PMT."""

    program_number: int
    guide_number: str | None = None  # "major.minor" from the VCT
    guide_name: str | None = None
    video_codec: str | None = None
    audio_codec: str | None = None


def codecs(pmt: Pmt) -> tuple[str | None, str | None]:
    """(VideoCodec, AudioCodec) as an HDHomeRun lineup names them: the first of each kind."""
    es_video = pmt.video()
    video = VIDEO_STREAM_TYPES[es_video.stream_type].upper() if es_video else None
    audio = next((AUDIO_CODECS[es.stream_type] for es in pmt.streams if es.stream_type in AUDIO_CODECS), None)
    if audio is None:
        audio = next(
            (name for es in pmt.streams if es.stream_type == PRIVATE_PES for name in _dvb_audio(es.descriptors)),
            None,
        )
    return video, audio


def _dvb_audio(descriptors: bytes) -> list[str]:
    """AC-3/E-AC-3 carried DVB-style: the audio descriptor tags in one ES_info loop."""
    out = []
    j = 0
    while j + 2 <= len(descriptors):
        if descriptors[j] in DVB_AUDIO_DESCRIPTORS:
            out.append(DVB_AUDIO_DESCRIPTORS[descriptors[j]])
        j += 2 + descriptors[j + 1]
    return out


def lineup_complete(report: TsReport) -> bool:
    """Every PAT program has its PMT, and a VCT was seen: nothing more for a lineup to learn."""
    return (
        bool(report.programs)
        and bool(report.channels)  # cheap first: it runs after every packet
        and all(report.pmt_of(prog) is not None for prog in report.programs)
    )


def lineup(report: TsReport) -> list[ProbedChannel]:
    """One channel per PAT program, in PAT order, named and numbered from the VCT when it has one."""
    out = []
    for prog in report.programs:
        vc = next((c for c in report.channels if c.program_number == prog), None)
        pmt = report.pmt_of(prog)
        video, audio = codecs(pmt) if pmt is not None else (None, None)
        gn = f"{vc.major}.{vc.minor}" if vc else None
        out.append(ProbedChannel(prog, gn, vc.short_name.rstrip() if vc else None, video, audio))
    return out


def probe_channels(data: bytes, *, max_bytes: int = LINEUP_PROBE_BYTES) -> list[ProbedChannel]:
    """Channels found in the first ``max_bytes`` of ``data``, one per PAT program, in PAT order."""
    return lineup(inspect_ts(data, max_bytes=max_bytes, until=lineup_complete))


# --- the head of a live input ---------------------------------------------------------------------------


def tvct_channels(info: StreamInfo) -> list[VirtualChannel]:
    """The TVCT channels among the PSIP sections the chunker kept (malformed ones skipped)."""
    out: list[VirtualChannel] = []
    for sec in info.psip_sections:
        if sec and sec[0] == TID_TVCT:
            try:
                out.extend(parse_tvct(sec))
            except SectionError:
                continue
    return out


@dataclass
class HeadProbe:
    """What the head of an input said, and the reads it took (to replay into the real chunker)."""

    info: StreamInfo
    head: list[bytes] = field(default_factory=list)


def probe_head(reads: Iterator[bytes], chunk_ms: int, name: str) -> HeadProbe:
    """Read until PAT+PMT (and a TVCT, if the stream has PSIP) are known; keep what was read.

    ``reads`` is an iterator the caller goes on consuming after the head.

    Why: a publisher announces its broadcast, named from these tables, before it ingests.
    Raises :class:`~ec_node.ts.errors.NotTsError` when the input ends without a usable stream.
    """
    g = GuardedChunker(chunk_ms, name)
    p = HeadProbe(g.chunker.info)
    after_video = 0
    for data in reads:
        p.head.append(data)
        g.feed(data)
        if g.chunker.info.video_pid is not None:
            after_video += len(data)
            if tvct_channels(g.chunker.info) or after_video >= PSIP_PROBE_BYTES:
                return p
    g.flush()
    return p
