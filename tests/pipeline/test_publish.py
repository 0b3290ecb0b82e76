"""moq-publish's ingest reads on a fake clock: --realtime pacing starts when ingest starts."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from ec_node.pipeline.publish import ingest_reads
from ec_node.ts.packets import PCR_HZ

NULL_PACKET = bytes([0x47, 0x1F, 0xFF, 0x10]) + bytes(184)


def _pcr_packet(seconds: float, pid: int = 0x31) -> bytes:
    base, ext = divmod(round(seconds * PCR_HZ), 300)
    af = bytes([7, 0x10]) + (base << 15 | 0x7E00 | ext).to_bytes(6, "big")
    pkt = bytes([0x47, pid >> 8, pid & 0xFF, 0x20]) + af + b"\xff" * (188 - 4 - len(af))
    return pkt + NULL_PACKET  # (the framer holds a stream's last packet back until the next one starts)


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def _source() -> Iterator[bytes]:
    return iter([_pcr_packet(i * 0.5) for i in range(25)])  # 12 s of media, a PCR every 0.5 s


@pytest.mark.parametrize("delay_s", [0.0, 11.5])
def test_realtime_pacing_starts_when_ingest_starts_after_the_probe_and_the_startup_delay(delay_s: float) -> None:
    clock = FakeClock()
    source = _source()
    head = [next(source) for _ in range(3)]  # what the probe read to name the stream (media 0.0 .. 1.0 s)
    clock.now += 0.2  # listening, announcing
    clock.now += delay_s  # --startup-delay-ms
    start = clock.now
    released = []
    for _ in ingest_reads(head, source, realtime=True, clock=clock, sleep=clock.sleep):
        released.append(clock.now - start)
    # every piece goes out at its own media time after ingest started: nothing is owed for the time
    # before (the bug: the delay's worth of media, all at once, as the delay ended)
    assert released == pytest.approx([i * 0.5 for i in range(25)])
    assert sum(1 for t in released if t < 1.0) == 2  # in the first second, one second of media


def test_without_realtime_ingest_reads_the_head_then_the_rest_at_once() -> None:
    clock = FakeClock()
    source = _source()
    head = [next(source) for _ in range(3)]
    got = list(ingest_reads(head, source, realtime=False, clock=clock, sleep=clock.sleep))
    assert got == list(_source()) and clock.now == 0.0
