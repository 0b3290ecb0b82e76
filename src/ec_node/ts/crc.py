"""CRC-32/MPEG-2 (poly 0x04C11DB7, init 0xFFFFFFFF, no reflection, no final xor) for PSI sections."""

from __future__ import annotations


def _table() -> tuple[int, ...]:
    out = []
    for i in range(256):
        c = i << 24
        for _ in range(8):
            c = ((c << 1) ^ 0x04C11DB7) if c & 0x80000000 else (c << 1)
        out.append(c & 0xFFFFFFFF)
    return tuple(out)


_TABLE = _table()


def crc32_mpeg(data: bytes | bytearray | memoryview) -> int:
    """Return the CRC a PSI section carries in its last 4 bytes (a whole section checks to 0)."""
    crc = 0xFFFFFFFF
    t = _TABLE
    for b in bytes(data):
        crc = ((crc << 8) & 0xFFFFFFFF) ^ t[((crc >> 24) ^ b) & 0xFF]
    return crc
