"""The HDHomeRun HTTP API's data model, parsed with the field types real devices send.

Pure: JSON in, dataclasses out, and the mapping from a stream response's status and
``X-HDHomeRun-Error`` header to what a client should do. No sockets here.
"""

from __future__ import annotations

import enum
import json
import math
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from ec_node.errors import ConfigError, UnreachableError, UsageError

DEFAULT_HTTP_PORT = 80
STREAM_PORT = 5004
MAX_JSON_BYTES = 4 * 1024 * 1024  # a lineup of thousands of channels is still far below this

ERROR_TEXT = {
    801: "Unknown Channel",
    802: "Unknown Transcode Profile",
    803: "System Busy",
    804: "Tuner In Use",
    805: "All Tuners In Use",
    806: "Tune Failed",
    807: "No Video Data",
    808: "DVR Failure",
    809: "Too Many Connections",
    810: "DVR Full",
    811: "Content Protection Required",
}


def parse_host(host: str) -> tuple[str, int]:
    """``host[:port]`` (also ``[v6]:port`` or a pasted ``http://host:port/...``) → (host, port)."""
    text = host.strip()
    if not text:
        raise UsageError("empty HDHomeRun host")
    if "://" not in text:
        text = "http://" + text
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError as e:
        raise UsageError(f"bad HDHomeRun host {host!r}: {e}") from e
    if not parts.hostname:
        raise UsageError(f"bad HDHomeRun host {host!r}")
    return parts.hostname, port if port is not None else DEFAULT_HTTP_PORT


def format_host(host: str, port: int) -> str:
    """Inverse of :func:`parse_host`: ``host:port``, with IPv6 addresses bracketed."""
    h = f"[{host}]" if ":" in host else host
    return f"{h}:{port}"


def _opt_int(v: Any) -> int | None:
    if isinstance(v, bool):
        return int(v)
    if isinstance(v, int):
        return v
    if isinstance(v, str) and v.strip().isascii() and v.strip().isdigit():
        return int(v)
    return None


def _opt_str(v: Any) -> str | None:
    return v if isinstance(v, str) else None


@dataclass(frozen=True)
class DeviceInfo:
    """``/discover.json``. Only DeviceID is required; TunerCount and friends are optional on real devices."""

    device_id: str
    friendly_name: str | None = None
    model_number: str | None = None
    firmware_name: str | None = None
    firmware_version: str | None = None
    device_auth: str | None = None
    base_url: str | None = None
    lineup_url: str | None = None
    tuner_count: int | None = None
    raw: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)


def parse_discover_json(body: bytes, where: str) -> DeviceInfo:
    """Raises UnreachableError when the body is not an HDHomeRun's discover.json."""
    obj = _load_json(body, where)
    if not isinstance(obj, dict) or not isinstance(obj.get("DeviceID"), str):
        raise UnreachableError(f"{where} is not an HDHomeRun: discover.json has no DeviceID")
    return DeviceInfo(
        device_id=obj["DeviceID"],
        friendly_name=_opt_str(obj.get("FriendlyName")),
        model_number=_opt_str(obj.get("ModelNumber")),
        firmware_name=_opt_str(obj.get("FirmwareName")),
        firmware_version=_opt_str(obj.get("FirmwareVersion")),
        device_auth=_opt_str(obj.get("DeviceAuth")),
        base_url=_opt_str(obj.get("BaseURL")),
        lineup_url=_opt_str(obj.get("LineupURL")),
        tuner_count=_opt_int(obj.get("TunerCount")),
        raw=obj,
    )


@dataclass(frozen=True)
class LineupEntry:
    """One ``/lineup.json`` entry. Flags (HD, Favorite, DRM) are 1 or absent on real devices."""

    guide_number: str
    guide_name: str
    url: str
    hd: bool = False
    favorite: bool = False
    drm: bool = False
    video_codec: str | None = None
    audio_codec: str | None = None
    raw: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    def to_json(self) -> dict[str, Any]:
        """The entry exactly as the device sent it, unknown fields included."""
        return dict(self.raw)


def _guide_number(v: Any) -> str | None:
    if isinstance(v, str) and v.strip():
        return v.strip()
    if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v):
        return str(v)  # tolerate emulators that send a number
    return None


def _usable_url(url: str) -> bool:
    """An http(s) URL with a host and, if given, a valid port (a device's lineup is input too)."""
    if not url.startswith(("http://", "https://")):
        return False
    try:
        parts = urlsplit(url)
        _ = parts.port  # raises for a port out of range or not a number
    except ValueError:
        return False
    return bool(parts.hostname)


def parse_lineup_json(body: bytes, where: str) -> list[LineupEntry]:
    """Raises UnreachableError when the body is not a lineup; skips entries without a usable URL."""
    obj = _load_json(body, where)
    if not isinstance(obj, list):
        raise UnreachableError(f"{where} is not an HDHomeRun: lineup.json is not a JSON array")
    out: list[LineupEntry] = []
    for item in obj:
        if not isinstance(item, dict):
            continue
        gn = _guide_number(item.get("GuideNumber"))
        url = item.get("URL")
        if gn is None or not isinstance(url, str) or not _usable_url(url):
            continue
        tags = item.get("Tags") if isinstance(item.get("Tags"), str) else ""
        tagset = {t.strip().lower() for t in tags.split(",")} if tags else set()
        out.append(
            LineupEntry(
                guide_number=gn,
                guide_name=_opt_str(item.get("GuideName")) or "",
                url=url,
                hd=bool(_opt_int(item.get("HD"))),
                favorite=bool(_opt_int(item.get("Favorite"))) or "favorite" in tagset,
                drm=bool(_opt_int(item.get("DRM"))) or "drm" in tagset,
                video_codec=_opt_str(item.get("VideoCodec")),
                audio_codec=_opt_str(item.get("AudioCodec")),
                raw=item,
            )
        )
    return out


def _load_json(body: bytes, where: str) -> Any:
    if len(body) > MAX_JSON_BYTES:
        raise UnreachableError(f"{where} is not an HDHomeRun: response larger than {MAX_JSON_BYTES} bytes")
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError) as e:
        raise UnreachableError(f"{where} is not an HDHomeRun: response is not JSON ({e})") from e


def parse_error_header(value: str | None) -> int | None:
    """``X-HDHomeRun-Error: 805 All Tuners In Use`` → 805 (parsed by prefix, as the guide says)."""
    if not value:
        return None
    head = value.strip().split(" ", 1)[0]
    return int(head) if head.isascii() and head.isdigit() and len(head) <= 4 else None


class StreamVerdict(enum.Enum):
    """What a client should do with a stream response, as decided by :func:`classify_stream_response`."""

    OK = "ok"
    BUSY = "busy"  # back off and retry (805, 804, 803, or 503 with no code)
    CONFIG = "config"  # unknown channel or other permanent refusal: do not retry
    NO_SIGNAL = "no_signal"  # 806/807
    NOT_HDHR = "not_hdhr"  # a status no HDHomeRun sends


def classify_stream_response(status: int, error_header: str | None) -> tuple[StreamVerdict, int | None]:
    """Pure decision table for a stream request's response headers."""
    code = parse_error_header(error_header)
    if status == 200:
        return StreamVerdict.OK, None
    if status == 404:
        return StreamVerdict.CONFIG, code or 801
    if status == 503:
        if code in (None, 803, 804, 805):
            return StreamVerdict.BUSY, code
        if code in (806, 807):
            return StreamVerdict.NO_SIGNAL, code
        return StreamVerdict.CONFIG, code
    return StreamVerdict.NOT_HDHR, code


def describe_error(code: int | None, header: str | None) -> str:
    """Reason for a refused stream: the device's header text, else the code and its standard name."""
    if header:
        return header.strip()
    if code is None:
        return "no X-HDHomeRun-Error header"
    return f"{code} {ERROR_TEXT.get(code, 'Unknown Error')}"


def duration_query(duration_s: float | None) -> str:
    """Devices take whole seconds; round up so a capture is never shorter than asked."""
    if duration_s is None:
        return ""
    if not math.isfinite(duration_s) or duration_s <= 0:
        raise UsageError(f"duration must be a positive number of seconds, got {duration_s}")
    return f"?duration={math.ceil(duration_s)}"


def not_found_error(guide_number: str, where: str) -> ConfigError:
    """The ConfigError for a channel the device does not carry (404/801)."""
    return ConfigError(f"unknown channel {guide_number!r} on {where} (404 801 Unknown Channel)")
