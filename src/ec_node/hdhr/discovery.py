"""HDHomeRun UDP discovery (port 65001) as libhdhomerun speaks it.

Frame: ``uint16 type | uint16 payload_len | TLVs | uint32 CRC-32 (little-endian, = zlib.crc32)``.
TLV lengths are one byte up to 127, else two bytes ``(len & 0x7F) | 0x80, len >> 7``.
The codec is pure and strict: every malformed input raises :class:`DiscoveryPacketError`,
nothing else. :func:`discover` is the thin socket shell around it.
"""

from __future__ import annotations

import logging
import socket
import struct
import time
import zlib
from dataclasses import dataclass, field

from ec_node.errors import BadInputError, UnreachableError

log = logging.getLogger(__name__)

DISCOVER_PORT = 65001
TYPE_DISCOVER_REQ = 0x0002
TYPE_DISCOVER_RPY = 0x0003

TAG_DEVICE_TYPE = 0x01
TAG_DEVICE_ID = 0x02
TAG_TUNER_COUNT = 0x10
TAG_LINEUP_URL = 0x27
TAG_STORAGE_URL = 0x28
TAG_BASE_URL = 0x2A
TAG_DEVICE_AUTH_STR = 0x2B
TAG_STORAGE_ID = 0x2C
TAG_MULTI_TYPE = 0x2D

DEVICE_TYPE_TUNER = 0x00000001
DEVICE_TYPE_STORAGE = 0x00000005
DEVICE_TYPE_WILDCARD = 0xFFFFFFFF
DEVICE_ID_WILDCARD = 0xFFFFFFFF

# libhdhomerun caps a packet at 3074 bytes; a TLV value can never exceed the 2-byte length form.
MAX_PACKET = 3074
MAX_TLV_LEN = 0x3FFF

_LUT = (0xA, 0x5, 0xF, 0x6, 0x7, 0xC, 0x1, 0xB, 0x9, 0x2, 0x8, 0xD, 0x4, 0x3, 0xE, 0x0)


class DiscoveryPacketError(BadInputError):
    """A discovery datagram that is truncated, oversized, badly framed or fails its CRC."""


def validate_device_id(device_id: int) -> bool:
    """libhdhomerun's ``hdhomerun_discover_validate_device_id``: real IDs carry a nibble checksum."""
    if not 0 <= device_id <= 0xFFFFFFFF:
        return False
    acc = 0
    for shift in (24, 16, 8, 0):
        byte = (device_id >> shift) & 0xFF
        acc ^= _LUT[byte >> 4]
        acc ^= byte & 0x0F
    return acc == 0


@dataclass(frozen=True)
class DiscoveryPacket:
    """One decoded frame: its type and TLVs in wire order (tags may repeat; unknown tags are kept)."""

    type: int
    tlvs: tuple[tuple[int, bytes], ...] = field(default_factory=tuple)

    def get(self, tag: int) -> bytes | None:
        """Value of the first TLV with ``tag``, or None."""
        for t, v in self.tlvs:
            if t == tag:
                return v
        return None

    def get_u32(self, tag: int) -> int | None:
        """First ``tag`` value as a big-endian uint32; DiscoveryPacketError unless it is 4 bytes."""
        v = self.get(tag)
        if v is None:
            return None
        if len(v) != 4:
            raise DiscoveryPacketError(f"tag 0x{tag:02x} must be 4 bytes, got {len(v)}")
        return int(struct.unpack(">I", v)[0])

    def get_str(self, tag: int) -> str | None:
        """First ``tag`` value as text, trailing NULs stripped and undecodable bytes replaced."""
        v = self.get(tag)
        if v is None:
            return None
        return v.rstrip(b"\x00").decode("utf-8", errors="replace")


def _encode_len(n: int) -> bytes:
    if n < 0 or n > MAX_TLV_LEN:
        raise DiscoveryPacketError(f"TLV value length {n} out of range")
    if n <= 127:
        return bytes((n,))
    return bytes(((n & 0x7F) | 0x80, n >> 7))


def build_packet(ptype: int, tlvs: list[tuple[int, bytes]] | tuple[tuple[int, bytes], ...]) -> bytes:
    """Frame TLVs with header and CRC; raises DiscoveryPacketError when the result would be too big."""
    payload = bytearray()
    for tag, value in tlvs:
        if not 0 <= tag <= 0xFF:
            raise DiscoveryPacketError(f"tag {tag} out of range")
        payload.append(tag)
        payload += _encode_len(len(value))
        payload += value
    if not 0 <= ptype <= 0xFFFF or len(payload) + 8 > MAX_PACKET:
        raise DiscoveryPacketError("packet too large or bad type")
    head = struct.pack(">HH", ptype, len(payload)) + bytes(payload)
    return head + struct.pack("<I", zlib.crc32(head))


def parse_packet(data: bytes | bytearray | memoryview) -> DiscoveryPacket:
    """Decode and CRC-check one datagram. Bounded: nothing is allocated beyond the input size."""
    buf = bytes(data)
    if len(buf) > MAX_PACKET:
        raise DiscoveryPacketError(f"packet of {len(buf)} bytes exceeds {MAX_PACKET}")
    if len(buf) < 8:
        raise DiscoveryPacketError(f"packet of {len(buf)} bytes is shorter than a header and CRC")
    ptype, plen = struct.unpack_from(">HH", buf, 0)
    if 4 + plen + 4 != len(buf):
        raise DiscoveryPacketError(f"payload length {plen} does not match a {len(buf)}-byte packet")
    (crc,) = struct.unpack_from("<I", buf, 4 + plen)
    if zlib.crc32(buf[: 4 + plen]) != crc:
        raise DiscoveryPacketError("CRC mismatch")
    tlvs: list[tuple[int, bytes]] = []
    pos, end = 4, 4 + plen
    while pos < end:
        tag = buf[pos]
        pos += 1
        if pos >= end:
            raise DiscoveryPacketError("TLV truncated in its length")
        n = buf[pos]
        pos += 1
        if n & 0x80:
            if pos >= end:
                raise DiscoveryPacketError("TLV truncated in its 2-byte length")
            n = (n & 0x7F) | (buf[pos] << 7)
            pos += 1
        if pos + n > end:
            raise DiscoveryPacketError(f"TLV 0x{tag:02x} of {n} bytes overruns the payload")
        tlvs.append((tag, buf[pos : pos + n]))
        pos += n
    return DiscoveryPacket(ptype, tuple(tlvs))


def build_request(
    device_type: int = DEVICE_TYPE_TUNER, device_id: int = DEVICE_ID_WILDCARD, *, include_wildcard_id: bool = False
) -> bytes:
    """A DISCOVER_REQ; like libhdhomerun, the DEVICE_ID tag is left out when it is the wildcard."""
    tlvs = [(TAG_DEVICE_TYPE, struct.pack(">I", device_type))]
    if device_id != DEVICE_ID_WILDCARD or include_wildcard_id:
        tlvs.append((TAG_DEVICE_ID, struct.pack(">I", device_id)))
    return build_packet(TYPE_DISCOVER_REQ, tlvs)


@dataclass(frozen=True)
class DiscoveredDevice:
    """What a DISCOVER_RPY says about a device, with libhdhomerun's fill-ins for missing tags."""

    ip: str
    device_type: int
    device_id: int
    tuner_count: int | None
    base_url: str
    lineup_url: str | None
    device_auth: str | None

    @property
    def device_id_hex(self) -> str:
        """DeviceID as 8 uppercase hex digits, as devices print it."""
        return f"{self.device_id:08X}"

    def to_json(self) -> dict[str, object]:
        """JSON line for ``ec-node hdhr discover``, with discover.json-style keys and the checksum verdict."""
        return {
            "DeviceID": self.device_id_hex,
            "IP": self.ip,
            "DeviceType": self.device_type,
            "TunerCount": self.tuner_count,
            "BaseURL": self.base_url,
            "LineupURL": self.lineup_url,
            "DeviceAuth": self.device_auth,
            "DeviceIDValid": validate_device_id(self.device_id),
        }


def parse_reply(data: bytes | bytearray | memoryview, ip: str) -> DiscoveredDevice:
    """Decode a DISCOVER_RPY from ``ip``; unknown tags are skipped as libhdhomerun does."""
    pkt = parse_packet(data)
    if pkt.type != TYPE_DISCOVER_RPY:
        raise DiscoveryPacketError(f"packet type 0x{pkt.type:04x} is not a discover reply")
    device_type = pkt.get_u32(TAG_DEVICE_TYPE)
    device_id = pkt.get_u32(TAG_DEVICE_ID)
    if device_type is None or device_id is None:
        raise DiscoveryPacketError("discover reply lacks DEVICE_TYPE or DEVICE_ID")
    tc = pkt.get(TAG_TUNER_COUNT)
    if tc is not None and len(tc) != 1:
        raise DiscoveryPacketError("TUNER_COUNT must be 1 byte")
    base_url = pkt.get_str(TAG_BASE_URL) or f"http://{ip}:80"
    return DiscoveredDevice(
        ip=ip,
        device_type=device_type,
        device_id=device_id,
        tuner_count=tc[0] if tc is not None else None,
        base_url=base_url,
        lineup_url=pkt.get_str(TAG_LINEUP_URL),
        device_auth=pkt.get_str(TAG_DEVICE_AUTH_STR),
    )


def request_matches(pkt: DiscoveryPacket, device_type: int, device_id: int) -> bool:
    """Server side: does this DISCOVER_REQ ask for a device like ours?"""
    if pkt.type != TYPE_DISCOVER_REQ:
        return False
    types: list[int] = []
    for tag, value in pkt.tlvs:
        if tag == TAG_DEVICE_TYPE and len(value) == 4:
            types.append(int(struct.unpack(">I", value)[0]))
        elif tag == TAG_MULTI_TYPE and len(value) % 4 == 0:
            types.extend(int(x) for x in struct.unpack(f">{len(value) // 4}I", value))
    if types and not any(t in (device_type, DEVICE_TYPE_WILDCARD) for t in types):
        return False
    want_id = pkt.get(TAG_DEVICE_ID)
    if want_id is not None and len(want_id) == 4:
        wid = int(struct.unpack(">I", want_id)[0])
        if wid not in (device_id, DEVICE_ID_WILDCARD):
            return False
    return True


def build_reply(
    device_id: int,
    *,
    tuner_count: int,
    base_url: str,
    lineup_url: str,
    device_auth: str,
    device_type: int = DEVICE_TYPE_TUNER,
) -> bytes:
    """A DISCOVER_RPY carrying the tags a current tuner sends."""
    return build_packet(
        TYPE_DISCOVER_RPY,
        [
            (TAG_DEVICE_TYPE, struct.pack(">I", device_type)),
            (TAG_DEVICE_ID, struct.pack(">I", device_id)),
            (TAG_TUNER_COUNT, bytes((tuner_count & 0xFF,))),
            (TAG_BASE_URL, base_url.encode()),
            (TAG_LINEUP_URL, lineup_url.encode()),
            (TAG_DEVICE_AUTH_STR, device_auth.encode()),
        ],
    )


def discover(
    target: str = "255.255.255.255", port: int = DISCOVER_PORT, timeout: float = 1.0
) -> list[DiscoveredDevice]:
    """Send one DISCOVER_REQ for tuners and collect replies until ``timeout`` (dedup by DeviceID)."""
    found: dict[int, DiscoveredDevice] = {}
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
        try:
            sock.bind(("", 0))
            sock.sendto(build_request(), (target, port))
        except OSError as e:
            raise UnreachableError(f"cannot send HDHomeRun discovery to {target}:{port}: {e}") from e
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            sock.settimeout(left)
            try:
                data, addr = sock.recvfrom(MAX_PACKET + 1)
            except TimeoutError:
                break
            except OSError as e:  # e.g. ICMP port unreachable surfaced as ECONNREFUSED
                log.debug("discovery recv: %s", e)
                continue
            try:
                dev = parse_reply(data, addr[0])
            except DiscoveryPacketError as e:
                log.debug("ignoring bad discovery reply from %s: %s", addr[0], e)
                continue
            found.setdefault(dev.device_id, dev)
    return list(found.values())
