"""`ec-node node --init`: a commented config written from the lineup a tuner serves.

:func:`example_config` is pure (the device's answers in, TOML text out; what it writes parses with
:func:`~ec_node.home.config.parse_config`); :func:`find_device` asks the tuner.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from urllib.parse import urlsplit

from ec_node.errors import UnreachableError, UsageError
from ec_node.hdhr.api import LineupEntry, format_host, parse_host


@dataclass(frozen=True)
class FoundDevice:
    """What ``--init`` learnt from the tuner."""

    where: str  # HOST:PORT of the control port
    device_id: str
    tuners: int | None
    lineup: list[LineupEntry]


def find_device(target: str | None, device: str | None, timeout_s: float = 2.0) -> FoundDevice:
    """The tuner at ``device`` (``hdhr://HOST[:PORT]``), else the first that answers discovery at ``target``."""
    from ec_node.hdhr.client import HdhrClient

    if device is not None:
        if not device.startswith("hdhr://") or not device.removeprefix("hdhr://").strip("/"):
            raise UsageError(f'--device {device!r} must be "hdhr://HOST[:PORT]"')
        where = format_host(*parse_host(device.removeprefix("hdhr://").rstrip("/")))
    else:
        from ec_node.hdhr.discovery import DISCOVER_PORT, discover

        host, port = (target or "255.255.255.255"), DISCOVER_PORT
        if target is not None and ":" in target.strip("[]"):
            host, port = parse_host(target)
        found = discover(host, port, timeout_s)
        if not found:
            raise UnreachableError(
                f"no HDHomeRun answered discovery at {host}:{port} within {timeout_s:.0f} s "
                "(give --target HOST for another subnet, or --device hdhr://HOST[:PORT])"
            )
        parts = urlsplit(found[0].base_url)
        where = format_host(parts.hostname or found[0].ip, parts.port or 80)
    client = HdhrClient(where)
    info = client.discover()
    return FoundDevice(where, info.device_id, info.tuner_count, client.lineup())


def _q(text: str) -> str:
    return json.dumps(text)  # a TOML basic string is a JSON string for what we write


def example_config(found: FoundDevice) -> str:
    """The commented TOML: the node, the tuner, one channel per lineup entry (as many on as tuners)."""
    tuners = found.tuners or 1
    out = [
        f"# ec-node home node: written by `ec-node node --init` from HDHomeRun {found.device_id} at {found.where}.",
        "# Run it with: ec-node node --config THIS_FILE  (SIGHUP reloads it; docs/node.example.toml explains each key)",
        "",
        "[node]",
        'state_dir = "~/.ec-node/node"        # HLS, address files (CHANNEL/publisher.json) and identities',
        'http = "127.0.0.1:8089"              # /status (JSON) and /metrics (Prometheus)',
        '# log_file = "~/.ec-node/node.log"  # default: stderr',
        "",
        "[tuner]",
        f'device = "hdhr://{found.where}"',
        f"tuners = {tuners}                           # channels beyond this wait for a free tuner, in file order",
        "",
        "[defaults]                           # every channel below has these unless it says otherwise",
        'signing_key = "~/.ec-node/leader.key"  # the leader\'s key: create it once with ec-node keygen -o PATH',
        "",
    ]
    for i, e in enumerate(found.lineup):
        on = i < tuners
        c = "" if on else "# "
        codecs = "/".join(x for x in (e.video_codec, e.audio_codec) if x)
        out.append(f"# {e.guide_number} {e.guide_name}" + (f" ({codecs})" if codecs else ""))
        out.append(f"{c}[[channel]]")
        out.append(f"{c}guide_number = {_q(e.guide_number)}")
        roles = '["leader", "objects", "watch"]' if i == 0 else '["leader", "objects"]'
        out.append(f"{c}roles = {roles}")
        if i == 0:
            out.append(f'{c}watch_http = "127.0.0.1:8080"     # the watch page, HLS and a virtual HDHomeRun')
        out.append("")
    if not found.lineup:
        out.append("# the tuner's lineup is empty: scan for channels on the device first, then run --init again")
    return "\n".join(out).rstrip("\n") + "\n"


__all__ = ["FoundDevice", "example_config", "find_device"]
