"""Put ATSC PSIP into an ffmpeg-made CBR transport stream by swapping null packets, then optionally strip nulls.

Why null swapping: it keeps every other packet's position and every PCR, so timing stays exactly as the
muxer made it. ffmpeg's DVB SDT (PID 0x11) is turned into nulls first; ATSC has no SDT. Pure: bytes in,
bytes out.
"""

from __future__ import annotations

from bisect import bisect_right
from collections import deque
from dataclasses import dataclass, field

from ec_node.ts.packets import NULL_PID, PACKET_SIZE, PCR_HZ, pid_of, read_pcr
from ec_node.ts.psip import (
    MGT_TYPE_TVCT_CURRENT,
    PSIP_BASE_PID,
    MgtTable,
    VirtualChannel,
    build_mgt,
    build_stt,
    build_tvct,
    unix_to_gps,
)
from ec_node.ts.section import packetize_section

SDT_PID = 0x11
NULL_PACKET = bytes([0x47, 0x1F, 0xFF, 0x10]) + b"\xff" * (PACKET_SIZE - 4)


@dataclass(frozen=True)
class PsipPlan:
    """What to insert and how often (seconds, judged from the PCR)."""

    channels: tuple[VirtualChannel, ...]
    tsid: int
    stt_unix_start: int  # STT value at the first packet
    mgt_period_s: float = 0.15
    tvct_period_s: float = 0.4
    stt_period_s: float = 1.0


@dataclass
class InsertStats:
    """Counts from :func:`insert_psip`: sections and packets inserted, SDT packets nulled, nulls left."""

    sections: dict[str, int] = field(default_factory=lambda: {"mgt": 0, "tvct": 0, "stt": 0})
    psip_packets: int = 0
    sdt_nulled: int = 0
    nulls_left: int = 0  # null packets remaining (or stripped, when strip_nulls)


class _Clock:
    """Packet index -> seconds, interpolated between PCRs (extrapolated at the ends)."""

    def __init__(self, ts: bytes | memoryview, fallback_rate: int) -> None:
        idx: list[int] = []
        val: list[int] = []
        for i in range(len(ts) // PACKET_SIZE):
            pcr = read_pcr(ts, i * PACKET_SIZE)
            if pcr is not None and (not val or pcr > val[-1]):
                idx.append(i)
                val.append(pcr)
        self.idx, self.val = idx, val
        self.sec_per_packet = PACKET_SIZE * 8 / fallback_rate

    def at(self, i: int) -> float:
        idx, val = self.idx, self.val
        if not idx:
            return i * self.sec_per_packet
        if len(idx) == 1:
            return val[0] / PCR_HZ + (i - idx[0]) * self.sec_per_packet
        k = min(max(bisect_right(idx, i) - 1, 0), len(idx) - 2)
        i0, i1, v0, v1 = idx[k], idx[k + 1], val[k], val[k + 1]
        return (v0 + (v1 - v0) * (i - i0) / (i1 - i0)) / PCR_HZ


def insert_psip(ts: bytes, plan: PsipPlan | None, *, muxrate: int, strip_nulls: bool) -> tuple[bytes, InsertStats]:
    """Return the stream with SDT nulled, PSIP in place of nulls per ``plan``, and nulls stripped if asked."""
    if len(ts) % PACKET_SIZE:
        raise ValueError("stream is not a whole number of 188-byte packets")
    mv = memoryview(ts)
    n = len(ts) // PACKET_SIZE
    stats = InsertStats()
    clock = _Clock(mv, muxrate)
    t0 = clock.at(0)
    periods = {}
    if plan is not None:
        periods = {"mgt": plan.mgt_period_s, "tvct": plan.tvct_period_s, "stt": plan.stt_period_s}
        tvct = build_tvct(plan.channels, tsid=plan.tsid)
        mgt = build_mgt([MgtTable(MGT_TYPE_TVCT_CURRENT, PSIP_BASE_PID, 0, len(tvct))])
    due = dict.fromkeys(periods, t0)
    pending: deque[bytes] = deque()
    cc = 0
    out = bytearray()
    for i in range(n):
        off = i * PACKET_SIZE
        pid = pid_of(mv, off)
        if pid == SDT_PID:
            stats.sdt_nulled += 1
            pid = NULL_PID
        if pid != NULL_PID:
            out += mv[off : off + PACKET_SIZE]
            continue
        if plan is not None and not pending:
            t = clock.at(i)
            name = min(due, key=lambda k: due[k])  # dict order breaks ties: mgt, tvct, stt
            if due[name] <= t:
                if name == "mgt":
                    sec = mgt
                elif name == "tvct":
                    sec = tvct
                else:
                    sec = build_stt(unix_to_gps(int(plan.stt_unix_start + (t - t0))))
                pk = packetize_section(PSIP_BASE_PID, sec, cc)
                cc = (cc + len(pk)) & 0x0F
                pending.extend(pk)
                stats.sections[name] += 1
                nxt = due[name] + periods[name]
                due[name] = nxt if nxt > t else t + periods[name]
        if pending:
            out += pending.popleft()
            stats.psip_packets += 1
            continue
        stats.nulls_left += 1
        if not strip_nulls:
            out += NULL_PACKET
    return bytes(out), stats
