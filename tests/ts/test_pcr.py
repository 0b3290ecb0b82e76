"""The one PCR clock: its step rule, across any read split, a jump back, and the 42-bit wrap."""

from __future__ import annotations

from pathlib import Path

import pytest

from ec_node.ts.packets import PCR_HZ
from ec_node.ts.pcr import MAX_PCR_STEP, PCR_WRAP, PcrClock, pcr_packets, pcr_span_s, pcr_step


def _pcr_packet(pcr: int, pid: int = 0x31) -> bytes:
    base, ext = divmod(pcr, 300)
    af = bytes([7, 0x10]) + (base << 15 | 0x7E00 | ext).to_bytes(6, "big")
    return bytes([0x47, pid >> 8, pid & 0xFF, 0x20]) + af + b"\xff" * (188 - 4 - len(af))


def test_step_rule() -> None:
    assert pcr_step(1000, 1000 + PCR_HZ // 10) == PCR_HZ // 10
    assert pcr_step(1000, 1000) == 0
    assert pcr_step(PCR_WRAP - 100, 200) == 300  # across the wrap
    assert pcr_step(1000, 999) is None  # back
    assert pcr_step(0, MAX_PCR_STEP) == MAX_PCR_STEP and pcr_step(0, MAX_PCR_STEP + 1) is None


def test_pcr_packets_reads_pid_and_value() -> None:
    data = _pcr_packet(12345, 0x31) + b"\x47\x1f\xff\x10" + b"\xff" * 184 + _pcr_packet(PCR_WRAP - 1, 0x40)
    assert pcr_packets(data) == [(0, 0x31, 12345), (2, 0x40, PCR_WRAP - 1)]


def test_clock_follows_the_first_pcr_pid_and_counts_epochs() -> None:
    tenth = PCR_HZ // 10
    pcrs = [PCR_WRAP - tenth, 0, tenth, 5 * PCR_HZ, 5 * PCR_HZ + tenth]  # wrap continues, then a jump
    data = b"".join(_pcr_packet(p) + _pcr_packet(7 * PCR_HZ, pid=0x50) for p in pcrs)
    clock = PcrClock()
    clock.feed(data)
    clock.flush()
    assert clock.pid == 0x31
    assert clock.ticks == 3 * tenth and clock.epochs == 2
    assert clock.epoch_seconds == pytest.approx(0.1)


def test_clock_counts_media_time_across_any_read_split(media_mpeg2: Path) -> None:
    data = media_mpeg2.read_bytes()
    expect = pcr_span_s(data)
    assert expect > 10
    for step in (997, 187, 4096, 65536):  # an odd prime instead of 1-byte reads, which would be slow
        clock = PcrClock()
        for i in range(0, len(data), step):
            clock.feed(data[i : i + step])
        assert clock.seconds == pytest.approx(expect, abs=0.05)


def test_clock_ignores_a_jump_back(media_mpeg2: Path) -> None:
    data = media_mpeg2.read_bytes()
    clock = PcrClock()
    clock.feed(data)
    one = clock.seconds
    clock.feed(data)  # the file again: PCR goes back, one step lost, not a negative or huge one
    assert one * 2 - 1.0 < clock.seconds <= one * 2 and clock.epochs == 2
