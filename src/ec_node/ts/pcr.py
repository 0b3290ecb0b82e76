"""The PCR clock: a stream's media time by its own 27 MHz program clock reference.

Why one module: ingest counts the media seconds a live source delivered (to ask for the rest after a
reconnect), ``--realtime`` paces a file by it, the emulator schedules its replay by it and the
inspector reports PCR spacing. They must agree on the wrap and on what counts as a jump, so there
is one rule: the step from one PCR to the next, modulo the 2^33 * 300 wrap, continues the clock when
it is at most MAX_PCR_STEP_S; anything else (a jump back, a splice, a loop) is a restart.
Pure; vectorised with numpy where it scans whole runs of packets.
"""

from __future__ import annotations

import numpy as np

from ec_node.ts.packets import PACKET_SIZE, PCR_HZ, PacketFramer, pid_of, read_pcr

PCR_WRAP = (1 << 33) * 300  # 33-bit base * 300 + 9-bit extension
MAX_PCR_STEP_S = 1.0  # ISO 13818-1 spaces PCRs at most 0.1 s apart: ten times that is a splice, not a step
MAX_PCR_STEP = int(MAX_PCR_STEP_S * PCR_HZ)


def pcr_step(prev: int, pcr: int) -> int | None:
    """Ticks from ``prev`` forward to ``pcr`` (across the wrap), or None when the time base jumped."""
    step = (pcr - prev) % PCR_WRAP
    return step if step <= MAX_PCR_STEP else None


def has_pcr(rows: np.ndarray) -> np.ndarray:
    """Which of these packets (an N x 188 array) carry a PCR: adaptation field present, long enough, PCR flag."""
    return ((rows[:, 3] & 0x20) != 0) & (rows[:, 4] >= 7) & ((rows[:, 5] & 0x10) != 0)


def pcr_packets(data: bytes | memoryview) -> list[tuple[int, int, int]]:
    """(packet index, PID, PCR) of every PCR-bearing packet in aligned ``data``, in order.

    Why vectorised: ingest runs this over every byte of a live stream; only the few packets with
    a PCR are decoded in Python.
    """
    n = len(data) // PACKET_SIZE
    if n == 0:
        return []
    rows = np.frombuffer(data, dtype=np.uint8, count=n * PACKET_SIZE).reshape(n, PACKET_SIZE)
    out = []
    for r in np.flatnonzero(has_pcr(rows)).tolist():
        off = r * PACKET_SIZE
        pcr = read_pcr(data, off)
        assert pcr is not None
        out.append((r, pid_of(data, off), pcr))
    return out


class PcrClock:
    """Media time of one PCR PID (the first seen unless given), from bytes split anywhere.

    ``ticks`` sums the steps that continue the clock; a jump adds nothing and starts a new
    *epoch* (``epochs`` counts the first PCR as one), so a splice or a loop costs one step
    instead of corrupting the total.
    """

    def __init__(self, pid: int | None = None) -> None:
        self.pid = pid
        self._framer = PacketFramer()
        self._last: int | None = None
        self.ticks = 0
        self.epochs = 0
        self.epoch_ticks = 0  # ``ticks`` when the current epoch began

    @property
    def seconds(self) -> float:
        """Media seconds counted so far."""
        return self.ticks / PCR_HZ

    @property
    def epoch_seconds(self) -> float:
        """Media seconds since the last jump (or the first PCR)."""
        return (self.ticks - self.epoch_ticks) / PCR_HZ

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        """Take the next bytes of the stream (any split; junk is skipped by the framer)."""
        for run in self._framer.feed(data):
            self._take(run.data)

    def flush(self) -> None:
        """End of stream: take the last packets the framer was holding back."""
        for run in self._framer.flush():
            self._take(run.data)

    def _take(self, data: bytes) -> None:
        for _, pid, pcr in pcr_packets(data):
            if self.pid is None:
                self.pid = pid
            if pid != self.pid:
                continue
            step = None if self._last is None else pcr_step(self._last, pcr)
            if step is None:
                self.epochs += 1
                self.epoch_ticks = self.ticks
            else:
                self.ticks += step
            self._last = pcr


def pcr_span_s(data: bytes, pcr_pid: int | None = None) -> float:
    """Media seconds the PCRs in ``data`` cover (summing steps, so loops and wraps count)."""
    clock = PcrClock(pcr_pid)
    clock.feed(data)
    clock.flush()
    return clock.seconds
