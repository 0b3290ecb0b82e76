"""UDP discovery: packet codec, DeviceID checksum, and real discovery of the emulator."""

from __future__ import annotations

import contextlib
import shutil
import struct
import subprocess
import zlib
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ec_node.devkit.emulator import HdhrEmulator
from ec_node.errors import ConfigError
from ec_node.hdhr import discovery as d

REAL_IDS = ["10439EFD", "10AA5474", "105404BE", "10A1D769", "1251E8E2", "10811DF5", "1FA4E002"]


@pytest.mark.parametrize("hex_id", REAL_IDS)
def test_real_device_ids_pass_checksum(hex_id: str) -> None:
    assert d.validate_device_id(int(hex_id, 16))


@pytest.mark.parametrize("hex_id", ["12345678", "10439EFE", "00000001", "10AA5475"])
def test_bad_device_ids_fail_checksum(hex_id: str) -> None:
    assert not d.validate_device_id(int(hex_id, 16))


def test_single_nibble_change_always_breaks_checksum() -> None:
    good = 0x10AA5474
    for shift in range(0, 32, 4):
        for v in range(16):
            cand = (good & ~(0xF << shift)) | (v << shift)
            if cand != good:
                assert not d.validate_device_id(cand), f"{cand:08X}"


def test_request_matches_reference_bytes() -> None:
    expected = bytes.fromhex("0002000c010400000001020 4ffffffff4e507f35".replace(" ", ""))
    assert d.build_request(include_wildcard_id=True) == expected
    # libhdhomerun leaves the wildcard id out; both forms parse
    short = d.parse_packet(d.build_request())
    assert short.type == d.TYPE_DISCOVER_REQ and short.get(d.TAG_DEVICE_ID) is None
    assert d.request_matches(short, d.DEVICE_TYPE_TUNER, 0x1FA4E002)
    assert d.request_matches(d.parse_packet(expected), d.DEVICE_TYPE_TUNER, 0x1FA4E002)


def test_request_filters() -> None:
    storage = d.parse_packet(d.build_request(d.DEVICE_TYPE_STORAGE))
    assert not d.request_matches(storage, d.DEVICE_TYPE_TUNER, 0x1FA4E002)
    other = d.parse_packet(d.build_request(device_id=0x10AA5474))
    assert not d.request_matches(other, d.DEVICE_TYPE_TUNER, 0x1FA4E002)
    multi = d.parse_packet(d.build_packet(d.TYPE_DISCOVER_REQ, [(d.TAG_MULTI_TYPE, struct.pack(">II", 5, 1))]))
    assert d.request_matches(multi, d.DEVICE_TYPE_TUNER, 0x1FA4E002)


def test_two_byte_tlv_length() -> None:
    value = b"x" * 300
    pkt = d.build_packet(d.TYPE_DISCOVER_RPY, [(d.TAG_BASE_URL, value)])
    # tag, then (300 & 0x7f) | 0x80, 300 >> 7
    assert pkt[4:7] == bytes((d.TAG_BASE_URL, (300 & 0x7F) | 0x80, 300 >> 7))
    assert d.parse_packet(pkt).get(d.TAG_BASE_URL) == value


tlv_lists = st.lists(st.tuples(st.integers(0, 255), st.binary(max_size=400)), max_size=6)


@given(ptype=st.integers(0, 0xFFFF), tlvs=tlv_lists)
def test_packet_round_trip(ptype: int, tlvs: list[tuple[int, bytes]]) -> None:
    pkt = d.build_packet(ptype, tlvs)
    assert struct.unpack("<I", pkt[-4:])[0] == zlib.crc32(pkt[:-4])
    back = d.parse_packet(pkt)
    assert back.type == ptype and list(back.tlvs) == tlvs


@given(
    device_id=st.integers(0, 0xFFFFFFFF),
    tuners=st.integers(1, 8),
    url=st.text(alphabet="abcdefghijklmnop:/.0123456789", min_size=1, max_size=200),
)
def test_reply_round_trip(device_id: int, tuners: int, url: str) -> None:
    raw = d.build_reply(device_id, tuner_count=tuners, base_url=url, lineup_url=url + "/lineup.json", device_auth="A")
    dev = d.parse_reply(raw, "127.0.0.1")
    assert (dev.device_id, dev.tuner_count, dev.base_url, dev.lineup_url) == (
        device_id,
        tuners,
        url,
        url + "/lineup.json",
    )


def test_reply_without_base_url_gets_libhdhomerun_default() -> None:
    raw = d.build_packet(
        d.TYPE_DISCOVER_RPY, [(d.TAG_DEVICE_TYPE, struct.pack(">I", 1)), (d.TAG_DEVICE_ID, bytes.fromhex("10AA5474"))]
    )
    dev = d.parse_reply(raw, "192.0.2.7")
    assert dev.base_url == "http://192.0.2.7:80" and dev.tuner_count is None


@settings(max_examples=400)
@given(st.binary(max_size=4000))
def test_fuzz_raw_bytes_only_raise_packet_error(data: bytes) -> None:
    with contextlib.suppress(d.DiscoveryPacketError):
        d.parse_reply(data, "127.0.0.1")


@settings(max_examples=400)
@given(ptype=st.sampled_from([2, 3]), payload=st.binary(max_size=600))
def test_fuzz_crc_valid_payload_only_raises_packet_error(ptype: int, payload: bytes) -> None:
    head = struct.pack(">HH", ptype, len(payload)) + payload
    pkt = head + struct.pack("<I", zlib.crc32(head))
    try:
        d.parse_reply(pkt, "127.0.0.1")
        d.request_matches(d.parse_packet(pkt), 1, 0x1FA4E002)
    except d.DiscoveryPacketError:
        pass


def test_corrupt_crc_rejected() -> None:
    pkt = bytearray(d.build_request())
    pkt[-1] ^= 1
    with pytest.raises(d.DiscoveryPacketError, match="CRC"):
        d.parse_packet(bytes(pkt))


def test_oversized_packet_rejected_before_parsing() -> None:
    with pytest.raises(d.DiscoveryPacketError, match="exceeds"):
        d.parse_packet(b"\x00" * (d.MAX_PACKET + 1))


def test_python_client_discovers_emulator(hdhr_media: Path) -> None:
    with HdhrEmulator(hdhr_media, tuners=3, serve_speed=0) as emu:
        devices = d.discover("127.0.0.1", emu.discover_port, timeout=1.0)
    assert len(devices) == 1
    dev = devices[0]
    assert dev.device_id == 0x1FA4E002 and d.validate_device_id(dev.device_id)
    assert dev.tuner_count == 3
    assert dev.base_url == emu.base_url and dev.lineup_url == emu.lineup_url
    assert dev.ip == "127.0.0.1" and dev.device_auth


def test_real_hdhomerun_config_finds_emulator(hdhr_media: Path) -> None:
    exe = shutil.which("hdhomerun_config")
    if exe is None:
        pytest.skip("hdhomerun_config not installed (Debian package hdhomerun-config)")
    try:
        emu = HdhrEmulator(hdhr_media, serve_speed=0, discover_port=d.DISCOVER_PORT).start()
    except ConfigError as e:
        pytest.skip(f"UDP 127.0.0.1:65001 unavailable, which hdhomerun_config requires: {e}")
    try:
        out = subprocess.run([exe, "discover", "127.0.0.1"], capture_output=True, text=True, timeout=20)
    finally:
        emu.stop()
    assert out.returncode == 0, out.stderr
    assert "hdhomerun device 1FA4E002 found at 127.0.0.1" in out.stdout
