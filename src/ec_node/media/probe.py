"""Packet-level inspection of a transport stream: PIDs, PAT/PMT, PCR spacing, continuity, PSIP.

Why: lets tests (and people) check a synthetic or captured stream the way a tuner client would,
without ffprobe. Pure and bounded: bytes in, a summary out; only :class:`PsipError` on bad sections.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

from ec_node.errors import BadInputError
from ec_node.ts.packets import (
    NULL_PID,
    PACKET_SIZE,
    PCR_HZ,
    SYNC_BYTE,
    continuity_counter,
    has_payload,
    payload_offset,
    pid_of,
    pusi,
    random_access_indicator,
    read_pcr,
)
from ec_node.ts.psi import PAT_PID, Pmt, PsiError, parse_pat, parse_pmt
from ec_node.ts.psip import (
    PSIP_BASE_PID,
    TID_MGT,
    TID_STT,
    TID_TVCT,
    MgtTable,
    PsipError,
    SectionAssembler,
    SystemTime,
    VirtualChannel,
    parse_mgt,
    parse_section_header,
    parse_stt,
    parse_tvct,
)

_T = TypeVar("_T")


@dataclass
class TsProbe:
    packets: int = 0
    pid_counts: dict[int, int] = field(default_factory=dict)
    programs: dict[int, int] = field(default_factory=dict)  # program_number -> PMT PID (from the PAT)
    transport_stream_id: int | None = None
    pmts: dict[int, Pmt] = field(default_factory=dict)  # PMT PID -> last PMT seen
    pcr_pid: int | None = None
    pcr_count: int = 0
    max_pcr_interval_s: float = 0.0
    cc_errors: int = 0
    random_access: dict[int, int] = field(default_factory=dict)  # PID -> packets with the RAI flag
    mgt: list[MgtTable] | None = None
    tvct_tsid: int | None = None
    channels: list[VirtualChannel] = field(default_factory=list)
    stt: list[SystemTime] = field(default_factory=list)
    psip_sections: dict[int, int] = field(default_factory=dict)  # table_id -> count
    section_crc_errors: int = 0
    min_dts_margin_s: float | None = None  # min over PES of DTS - PCR at arrival; < 0 means late (invalid)

    @property
    def nulls(self) -> int:
        return self.pid_counts.get(NULL_PID, 0)


def _psi(parse: Callable[[bytes], _T], section: bytes) -> _T:
    """ts.psi raises its own ValueError; here a bad table is bad input like any other section."""
    try:
        return parse(section)
    except PsiError as e:
        raise PsipError(str(e)) from e


def probe_ts(data: bytes | bytearray | memoryview) -> TsProbe:
    """Walk every packet once and summarise; raises BadInputError if this is not aligned MPEG-TS."""
    mv = memoryview(data)
    if len(mv) % PACKET_SIZE or not len(mv):
        raise BadInputError(f"not a whole number of 188-byte packets ({len(mv)} bytes)")
    p = TsProbe()
    asm: dict[int, SectionAssembler] = {
        PAT_PID: SectionAssembler(PAT_PID),
        PSIP_BASE_PID: SectionAssembler(PSIP_BASE_PID),
    }
    last_cc: dict[int, int] = {}
    last_pcr: int | None = None
    for off in range(0, len(mv), PACKET_SIZE):
        if mv[off] != SYNC_BYTE:
            raise BadInputError(f"lost sync at byte {off}")
        pkt = mv[off : off + PACKET_SIZE]
        pid = pid_of(pkt)
        p.packets += 1
        p.pid_counts[pid] = p.pid_counts.get(pid, 0) + 1
        if pid == NULL_PID:
            continue
        if has_payload(pkt):
            cc = continuity_counter(pkt)
            prev = last_cc.get(pid)
            if prev is not None and cc not in (prev, (prev + 1) & 0x0F):
                p.cc_errors += 1
            last_cc[pid] = cc
        if random_access_indicator(pkt):
            p.random_access[pid] = p.random_access.get(pid, 0) + 1
        pcr = read_pcr(pkt)
        if pcr is not None and (p.pcr_pid is None or pid == p.pcr_pid):
            p.pcr_pid = pid
            p.pcr_count += 1
            if last_pcr is not None:
                p.max_pcr_interval_s = max(p.max_pcr_interval_s, (pcr - last_pcr) / PCR_HZ)
            last_pcr = pcr
        if pusi(pkt) and last_pcr is not None and any(pid in _es_pids(m) for m in p.pmts.values()):
            dts = _pes_dts(pkt)
            if dts is not None:
                margin = (dts - last_pcr / 300) / 90_000
                if p.min_dts_margin_s is None or margin < p.min_dts_margin_s:
                    p.min_dts_margin_s = margin
        a = asm.get(pid)
        if a is None:
            continue
        for sec in a.feed(pkt):
            _take_section(p, pid, sec, asm)
    p.section_crc_errors = sum(a.crc_errors for a in asm.values())
    return p


def _es_pids(pmt: Pmt) -> set[int]:
    return {s.pid for s in pmt.streams}


def _pes_dts(pkt: memoryview) -> int | None:
    """DTS (or PTS when there is no DTS) of a PES starting in this packet, 90 kHz; None if absent."""
    off = payload_offset(pkt)
    if off is None or off + 19 > PACKET_SIZE:
        return None
    pes = pkt[off:]
    if pes[0:3] != b"\x00\x00\x01" or not pes[7] & 0x80:
        return None
    b = pes[14:19] if pes[7] & 0x40 else pes[9:14]
    return ((b[0] >> 1) & 7) << 30 | b[1] << 22 | (b[2] >> 1) << 15 | b[3] << 7 | b[4] >> 1


def _take_section(p: TsProbe, pid: int, sec: bytes, asm: dict[int, SectionAssembler]) -> None:
    tid = sec[0]
    if pid == PAT_PID and tid == 0x00:
        pat = _psi(parse_pat, sec)
        p.transport_stream_id, p.programs = pat.transport_stream_id, pat.programs
        for pmt_pid in p.programs.values():
            asm.setdefault(pmt_pid, SectionAssembler(pmt_pid))
    elif pid == PSIP_BASE_PID:
        p.psip_sections[tid] = p.psip_sections.get(tid, 0) + 1
        if tid == TID_MGT:
            p.mgt = parse_mgt(sec)
        elif tid == TID_TVCT:
            p.tvct_tsid = parse_section_header(sec).table_id_extension
            p.channels = parse_tvct(sec)
        elif tid == TID_STT:
            p.stt.append(parse_stt(sec))
    elif tid == 0x02:
        p.pmts[pid] = _psi(parse_pmt, sec)


__all__ = ["TsProbe", "probe_ts"]
