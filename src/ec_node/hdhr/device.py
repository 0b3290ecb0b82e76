"""The documents an HDHomeRun serves (`/discover.json`, `/lineup.json`, `/lineup_status.json`), built once.

Media servers (Jellyfin, Plex, Channels DVR, Kodi) add a tuner by reading these, so the test
emulator and ec-node's own virtual tuner build them here, with a real device's field names and
types (``GuideNumber`` a string, flags the number 1 or absent; see the HDHomeRun reference §1.2-1.3).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from ec_node.hdhr.discovery import _LUT, validate_device_id

#: the model a virtual or emulated tuner claims (a 4-tuner CONNECT QUATRO; media servers know it)
MODEL_NUMBER = "HDHR5-4US"
FIRMWARE_NAME = "hdhomerun5_atsc"
FIRMWARE_VERSION = "20250506"
LINEUP_STATUS = {"ScanInProgress": 0, "ScanPossible": 0, "Source": "Antenna", "SourceList": ["Antenna"]}


@dataclass(frozen=True)
class DeviceIdentity:
    """What ``/discover.json`` says a device is."""

    device_id: int
    friendly_name: str
    model_number: str
    firmware_name: str
    firmware_version: str
    device_auth: str
    tuner_count: int


@dataclass(frozen=True)
class Channel:
    """One ``/lineup.json`` entry: the guide number and name, codecs, and where its stream is."""

    guide_number: str
    guide_name: str
    url: str
    video_codec: str | None = None
    audio_codec: str | None = None
    hd: bool = True


def device_id_from(seed: bytes) -> int:
    """A stable DeviceID for ``seed`` that passes libhdhomerun's checksum (media servers check it)."""
    value = int.from_bytes(hashlib.blake2b(seed, digest_size=4).digest(), "big") & 0xFFFFFFF0
    acc = 0
    for shift in (24, 16, 8, 0):
        byte = (value >> shift) & 0xFF
        acc ^= _LUT[byte >> 4] ^ (byte & 0x0F)
    value |= acc  # the last low nibble is XORed in last: choosing it zeroes the checksum
    assert validate_device_id(value)
    return value


def discover_json(dev: DeviceIdentity, base_url: str) -> dict[str, Any]:
    """``/discover.json`` for ``dev`` reachable at ``base_url`` (no trailing slash)."""
    return {
        "FriendlyName": dev.friendly_name,
        "ModelNumber": dev.model_number,
        "FirmwareName": dev.firmware_name,
        "FirmwareVersion": dev.firmware_version,
        "DeviceID": f"{dev.device_id:08X}",
        "DeviceAuth": dev.device_auth,
        "BaseURL": base_url,
        "LineupURL": f"{base_url}/lineup.json",
        "TunerCount": dev.tuner_count,
    }


def lineup_json(channels: list[Channel]) -> list[dict[str, Any]]:
    """``/lineup.json``: one entry per channel, flags as a real device writes them."""
    out = []
    for c in channels:
        e: dict[str, Any] = {"GuideNumber": c.guide_number, "GuideName": c.guide_name}
        if c.video_codec:
            e["VideoCodec"] = c.video_codec
        if c.audio_codec:
            e["AudioCodec"] = c.audio_codec
        if c.hd:
            e["HD"] = 1
        e.update({"SignalStrength": 100, "SignalQuality": 100, "URL": c.url})
        out.append(e)
    return out


def m3u_playlist(channels: list[Channel], group: str = "every.channel") -> str:
    """An M3U playlist with ``tvg-`` attributes, as IPTV clients (VLC, Kodi, Jellyfin's M3U tuner) read it."""

    def attr(v: str) -> str:
        return v.replace('"', "'").replace("\n", " ")

    lines = ["#EXTM3U"]
    for c in channels:
        lines.append(
            f'#EXTINF:-1 tvg-id="{attr(c.guide_number)}" tvg-chno="{attr(c.guide_number)}" '
            f'tvg-name="{attr(c.guide_name)}" group-title="{attr(group)}",{attr(c.guide_name)}'
        )
        lines.append(c.url)
    return "\n".join(lines) + "\n"
