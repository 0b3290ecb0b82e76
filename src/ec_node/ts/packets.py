"""MPEG-TS packet fields and a resyncing framer: the byte-level layer under everything else.

Pure: no I/O. The framer accepts reads of any size and hands back runs of aligned
188-byte packets, noting every place it lost and regained sync.
"""

from __future__ import annotations

from dataclasses import dataclass, field

PACKET_SIZE = 188
SYNC_BYTE = 0x47
NULL_PID = 0x1FFF
PCR_HZ = 27_000_000
PTS_HZ = 90_000
# Sync is (re)acquired when this many consecutive packets start with 0x47.
LOCK_PACKETS = 3


def pid_of(pkt: bytes | memoryview, off: int = 0) -> int:
    """The 13-bit PID of the packet at ``off``."""
    return ((pkt[off + 1] & 0x1F) << 8) | pkt[off + 2]


def pusi(pkt: bytes | memoryview, off: int = 0) -> bool:
    """payload_unit_start_indicator: a PES or PSI section starts in this packet."""
    return bool(pkt[off + 1] & 0x40)


def transport_error(pkt: bytes | memoryview, off: int = 0) -> bool:
    """transport_error_indicator: the demodulator flagged this packet as corrupt."""
    return bool(pkt[off + 1] & 0x80)


def continuity_counter(pkt: bytes | memoryview, off: int = 0) -> int:
    """The 4-bit continuity counter, used to detect lost packets on a PID."""
    return pkt[off + 3] & 0x0F


def has_payload(pkt: bytes | memoryview, off: int = 0) -> bool:
    """Whether the packet carries payload bytes (adaptation_field_control payload bit)."""
    return bool(pkt[off + 3] & 0x10)


def adaptation_length(pkt: bytes | memoryview, off: int = 0) -> int:
    """Bytes of adaptation field after the 4-byte header (0 when absent)."""
    if not pkt[off + 3] & 0x20:
        return 0
    return 1 + pkt[off + 4]


def random_access_indicator(pkt: bytes | memoryview, off: int = 0) -> bool:
    """random_access_indicator: the next PES on this PID starts at a random-access point."""
    return bool(pkt[off + 3] & 0x20) and pkt[off + 4] > 0 and bool(pkt[off + 5] & 0x40)


def discontinuity_indicator(pkt: bytes | memoryview, off: int = 0) -> bool:
    """discontinuity_indicator: the time base or continuity counter legitimately jumps at this packet."""
    return bool(pkt[off + 3] & 0x20) and pkt[off + 4] > 0 and bool(pkt[off + 5] & 0x80)


def payload_offset(pkt: bytes | memoryview, off: int = 0) -> int | None:
    """Offset (relative to the packet) of the payload, or None when there is none or it is malformed."""
    if not has_payload(pkt, off):
        return None
    start = 4 + adaptation_length(pkt, off)
    return start if start < PACKET_SIZE else None


def read_pcr(pkt: bytes | memoryview, off: int = 0) -> int | None:
    """The PCR in 27 MHz ticks, or None when this packet carries none."""
    if not pkt[off + 3] & 0x20 or pkt[off + 4] < 7 or not pkt[off + 5] & 0x10:
        return None
    b = pkt[off + 6 : off + 12]
    base = (b[0] << 25) | (b[1] << 17) | (b[2] << 9) | (b[3] << 1) | (b[4] >> 7)
    ext = ((b[4] & 0x01) << 8) | b[5]
    return base * 300 + ext


@dataclass
class Framed:
    """One feed's worth of output: aligned packet bytes and the resyncs seen before them."""

    data: bytes  # a whole number of packets, each starting with 0x47
    resyncs: int = 0  # times sync was lost (junk skipped) before or inside this run
    skipped: int = 0  # bytes discarded while resyncing


@dataclass
class PacketFramer:
    """Turns an arbitrary byte stream into aligned 188-byte packets.

    Carries partial packets between reads. When a packet does not start with 0x47 it drops
    bytes until LOCK_PACKETS consecutive sync bytes line up again. Output is a list of
    runs; a new run starts after every resync so callers can tell where damage was.
    """

    _buf: bytearray = field(default_factory=bytearray)
    _locked: bool = False
    total_resyncs: int = 0
    total_skipped: int = 0

    def feed(self, data: bytes | bytearray | memoryview) -> list[Framed]:
        """Buffer ``data``; return the runs of aligned packets now complete."""
        self._buf += data
        return self._drain(final=False)

    def flush(self) -> list[Framed]:
        """End of stream: a trailing partial packet is dropped (counted as skipped)."""
        out = self._drain(final=True)
        if self._buf:
            self.total_skipped += len(self._buf)
            self._buf.clear()
        return out

    def _find_sync(self, start: int, final: bool) -> int | None:
        buf = self._buf
        n = len(buf)
        i = buf.find(SYNC_BYTE, start)
        while i != -1:
            need = i + PACKET_SIZE * (LOCK_PACKETS - 1)
            if need >= n:
                if final and all(buf[j] == SYNC_BYTE for j in range(i, n, PACKET_SIZE)):
                    return i
                return None  # not enough data to confirm yet
            if all(buf[i + k * PACKET_SIZE] == SYNC_BYTE for k in range(LOCK_PACKETS)):
                return i
            i = buf.find(SYNC_BYTE, i + 1)
        return -1

    def _drain(self, final: bool) -> list[Framed]:
        out: list[Framed] = []
        buf = self._buf
        pos = 0
        pending_resyncs = 0
        pending_skipped = 0
        while True:
            if not self._locked:
                s = self._find_sync(pos, final)
                if s is None:  # undecided: keep the tail for the next read
                    break
                if s == -1:
                    keep = min(len(buf) - pos, PACKET_SIZE * LOCK_PACKETS) if not final else 0
                    pending_skipped += len(buf) - pos - keep
                    pos = len(buf) - keep
                    break
                pending_skipped += s - pos
                pos = s
                self._locked = True
            # Locked: take whole packets while each starts with the sync byte.
            n = len(buf)
            whole = (n - pos) // PACKET_SIZE
            syncs = bytes(buf[pos : pos + whole * PACKET_SIZE : PACKET_SIZE])  # one byte per packet, in C
            good = whole - len(syncs.lstrip(b"\x47"))
            end = pos + good * PACKET_SIZE
            if end > pos:
                out.append(Framed(bytes(buf[pos:end]), pending_resyncs, pending_skipped))
                pending_resyncs = 0
                pending_skipped = 0
                pos = end
            if end + PACKET_SIZE <= n or (final and end < n and buf[end] != SYNC_BYTE):
                # the next packet does not start with 0x47: sync lost
                self._locked = False
                pending_resyncs += 1
                continue
            break
        if pending_resyncs or pending_skipped:
            out.append(Framed(b"", pending_resyncs, pending_skipped))
        self.total_resyncs += sum(f.resyncs for f in out)
        self.total_skipped += sum(f.skipped for f in out)
        del buf[:pos]
        return out
