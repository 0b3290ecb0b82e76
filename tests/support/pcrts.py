"""Tiny PCR-only TS and a fake clock, for the real-time pacing tests (ingest and publish)."""

from __future__ import annotations

from ec_node.ts.packets import PCR_HZ

NULL_PACKET = bytes([0x47, 0x1F, 0xFF, 0x10]) + bytes(184)


def pcr_packet(seconds: float, pid: int = 0x31) -> bytes:
    """A TS packet carrying only a PCR of ``seconds``, and a null packet."""
    base, ext = divmod(round(seconds * PCR_HZ), 300)
    af = bytes([7, 0x10]) + (base << 15 | 0x7E00 | ext).to_bytes(6, "big")
    pkt = bytes([0x47, pid >> 8, pid & 0xFF, 0x20]) + af + b"\xff" * (188 - 4 - len(af))
    return pkt + NULL_PACKET  # (the framer holds a stream's last packet back until the next one starts)


class FakeClock:
    """``now`` only moves when someone sleeps (or the test says so)."""

    def __init__(self, now: float = 0.0) -> None:
        self.now = now
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds
