"""PCR-timed schedule of a TS file, looped forever: the pure core of the emulator's streamer.

A null-stripped SPTS is VBR, so byte-rate pacing is wrong; each run of packets is tagged
with the media time of the PCR that starts it, and the streamer sends it when the wall
clock reaches that time.

Looping: at the end of the file the schedule starts over with its media clock still
counting up. The PCR/PTS time base then jumps back, which a real re-tune also does.
To signal it the way ISO 13818-1 asks, the **first PCR-bearing packet of the PCR PID
after each wrap has ``discontinuity_indicator`` set**. Continuity counters are rewritten
on every later pass so that each PID's CC continues across the wrap, so no other PID
sees a CC error and none needs its own indicator. An ATSC System Time Table keeps counting too: on
pass k its time is the first pass's plus round(k * loop length) seconds, as a broadcast's clock
would read, so a node anchoring chunk indices to broadcast time sees them run on, not back.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from ec_node.ts.crc import crc32_mpeg
from ec_node.ts.errors import NotTsError
from ec_node.ts.packets import NULL_PID, PACKET_SIZE, PCR_HZ, PacketFramer
from ec_node.ts.pcr import pcr_packets, pcr_step
from ec_node.ts.psip import PSIP_BASE_PID, TID_STT

MAX_MEDIA_BYTES = 1 << 30  # the file is held in memory; refuse absurd inputs up front


@dataclass(frozen=True)
class Segment:
    """A run of packets and the media time the streamer sends it at."""

    media_s: float  # seconds since the start of the stream, by the file's PCR
    data: bytes  # whole TS packets
    loop: int  # 0 for the first pass over the file


@dataclass(frozen=True)
class TsMedia:
    """A TS file cut into PCR-started runs, ready to be replayed."""

    data: bytes  # aligned packets only
    starts: tuple[int, ...]  # packet index where each run begins (first is 0)
    times: tuple[float, ...]  # media seconds of each run
    loop_s: float  # media length of one pass (last PCR + one typical PCR interval)
    pcr_pid: int
    first_pcr_index: int  # packet index of the first PCR on pcr_pid
    cc_step: npt.NDArray[np.uint8]  # per PID: CC advance from one pass to the next
    stt_sections: tuple[tuple[int, int, int], ...] = ()  # (packet, section start, end) of one-packet STTs

    @property
    def packets(self) -> int:
        """Number of 188-byte packets in one pass over the file."""
        return len(self.data) // PACKET_SIZE


def load_ts(raw: bytes) -> TsMedia:
    """Align, find the PCR clock and precompute the run table. NotTsError if it is not usable TS.

    A PCR step the clock does not continue (see :mod:`ec_node.ts.pcr`) is an in-file
    discontinuity: the schedule advances by one typical step there instead.
    """
    if len(raw) > MAX_MEDIA_BYTES:
        raise NotTsError(f"media of {len(raw)} bytes is larger than {MAX_MEDIA_BYTES}")
    framer = PacketFramer()
    data = b"".join(f.data for f in framer.feed(raw) + framer.flush())
    if len(data) < PACKET_SIZE * 2:
        raise NotTsError("media is not an MPEG transport stream (no aligned 188-byte packets)")
    found = pcr_packets(data)
    if not found:
        raise NotTsError("media carries no PCR, so it cannot be paced in real time")
    pcr_pid = found[0][1]
    idx = [row for row, pid, _ in found if pid == pcr_pid]
    pcrs = [pcr for _, pid, pcr in found if pid == pcr_pid]
    steps = [pcr_step(a, b) for a, b in zip(pcrs, pcrs[1:], strict=False)]
    sane = sorted(d for d in steps if d)
    typical = sane[len(sane) // 2] if sane else PCR_HZ // 25
    times = [0.0]
    for d in steps:
        times.append(times[-1] + (d or typical) / PCR_HZ)
    starts = [0] + idx[1:]
    loop_s = times[-1] + typical / PCR_HZ

    arr = np.frombuffer(data, dtype=np.uint8).reshape(-1, PACKET_SIZE)
    pids = ((arr[:, 1].astype(np.int32) & 0x1F) << 8) | arr[:, 2]
    cc = arr[:, 3] & 0x0F
    payload = (arr[:, 3] & 0x10) != 0
    cc_step = np.zeros(8192, dtype=np.uint8)
    for pid in np.unique(pids):
        if pid == NULL_PID:
            continue
        sel = np.flatnonzero((pids == pid) & payload)
        if sel.size:
            cc_step[pid] = (int(cc[sel[-1]]) + 1 - int(cc[sel[0]])) & 0x0F
    return TsMedia(
        data=data,
        starts=tuple(starts),
        times=tuple(times),
        loop_s=loop_s,
        pcr_pid=pcr_pid,
        first_pcr_index=idx[0],
        cc_step=cc_step,
        stt_sections=_stt_sections(arr, pids),
    )


def _stt_sections(arr: npt.NDArray[np.uint8], pids: npt.NDArray[np.int32]) -> tuple[tuple[int, int, int], ...]:
    """Where the one-packet STT sections are (payload-only PSIP packets starting a section)."""
    out = []
    for r in np.flatnonzero((pids == PSIP_BASE_PID) & ((arr[:, 1] & 0x40) != 0) & ((arr[:, 3] & 0x30) == 0x10)):
        start = 5 + int(arr[r, 4])
        if start + 3 > PACKET_SIZE or arr[r, start] != TID_STT:
            continue
        end = start + 3 + (((int(arr[r, start + 1]) & 0x0F) << 8) | int(arr[r, start + 2]))
        if end <= PACKET_SIZE and end - start >= 17:  # header, protocol_version, system_time ..., CRC
            out.append((int(r), start, end))
    return tuple(out)


def pass_bytes(media: TsMedia, loop: int) -> bytes:
    """The file as sent on pass ``loop``: CCs continued and the PCR discontinuity flagged."""
    if loop == 0:
        return media.data
    arr = np.frombuffer(media.data, dtype=np.uint8).reshape(-1, PACKET_SIZE).copy()
    pids = ((arr[:, 1].astype(np.int32) & 0x1F) << 8) | arr[:, 2]
    delta = ((media.cc_step.astype(np.int32) * loop) & 0x0F).astype(np.uint8)[pids]
    arr[:, 3] = (arr[:, 3] & 0xF0) | ((arr[:, 3] + delta) & 0x0F)
    arr[media.first_pcr_index, 5] |= 0x80  # discontinuity_indicator: the time base restarts here
    shift = round(loop * media.loop_s)
    for row, start, end in media.stt_sections:  # broadcast time runs on: system_time + shift, CRC redone
        pkt = arr[row]
        at = start + 9  # table_id, length (2), extension (2), version, numbers (2), protocol_version
        gps = (int.from_bytes(pkt[at : at + 4].tobytes(), "big") + shift) & 0xFFFFFFFF
        pkt[at : at + 4] = np.frombuffer(gps.to_bytes(4, "big"), dtype=np.uint8)
        crc = crc32_mpeg(pkt[start : end - 4].tobytes())
        pkt[end - 4 : end] = np.frombuffer(crc.to_bytes(4, "big"), dtype=np.uint8)
    return arr.tobytes()


def schedule(media: TsMedia, *, loops: int | None = None, first_pass: int = 0) -> Iterator[Segment]:
    """Runs of packets with their media time (from 0), passing over the file ``loops`` times (None =
    forever) starting with pass ``first_pass`` (its CCs and broadcast time, as if that many passes had gone)."""
    loop = first_pass
    ends = media.starts[1:] + (media.packets,)
    while loops is None or loop < first_pass + loops:
        data = pass_bytes(media, loop)
        base = (loop - first_pass) * media.loop_s
        for start, end, t in zip(media.starts, ends, media.times, strict=True):
            yield Segment(base + t, data[start * PACKET_SIZE : end * PACKET_SIZE], loop)
        loop += 1
