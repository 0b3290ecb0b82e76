"""`ec-node hdhr ...` and `ec-node hdhr-emulator`: parse arguments, call one library function."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from ec_node.cli.exits import documents_exits
from ec_node.errors import ExitCode, UnreachableError
from ec_node.hdhr.discovery import DISCOVER_PORT

_EXITS = (ExitCode.OK, ExitCode.USAGE, ExitCode.UNREACHABLE, ExitCode.TUNER_BUSY, ExitCode.CONFIG, ExitCode.OUTPUT)


def _emit(obj: Any) -> None:
    click.echo(json.dumps(obj, separators=(",", ":")))


@documents_exits(*_EXITS)
@click.group(help="Talk to HDHomeRun tuners.")
def hdhr() -> None:
    """Command group for the HDHomeRun client subcommands."""
    pass


@documents_exits(*_EXITS)
@hdhr.command(help="Find tuners by UDP discovery (port 65001); one JSON line per device.")
@click.option("--target", default="255.255.255.255", show_default=True, help="Broadcast or unicast address.")
@click.option("--port", type=click.IntRange(1, 65535), default=DISCOVER_PORT, show_default=True)
@click.option(
    "--timeout",
    "timeout_s",
    type=click.FloatRange(0.05, 60),
    default=1.0,
    show_default=True,
    help="Seconds to wait for replies.",
)
def discover(target: str, port: int, timeout_s: float) -> None:
    """Print each tuner that answers UDP discovery; unreachable if none does."""
    from ec_node.hdhr.discovery import discover as run

    devices = run(target, port, timeout_s)
    if not devices:
        raise UnreachableError(f"no HDHomeRun answered discovery at {target}:{port}")
    for d in devices:
        _emit(d.to_json())


@documents_exits(*_EXITS)
@hdhr.command(help="Print a device's lineup.json, one JSON line per channel. HOST is host[:port].")
@click.argument("host")
@click.option("--timeout", "timeout_s", type=click.FloatRange(0.1, 120), default=10.0, show_default=True)
def lineup(host: str, timeout_s: float) -> None:
    """Print the device's lineup, one JSON line per channel."""
    from ec_node.hdhr.client import HdhrClient

    for entry in HdhrClient(host, timeout_s=timeout_s).lineup():
        _emit(entry.to_json())


@documents_exits(*_EXITS)
@hdhr.command(
    help=(
        "Record CHANNEL (GuideNumber, e.g. 7.1) from HOST[:port] for --duration seconds using the device's "
        "?duration= query. Prints one JSON summary line. Partial output is removed on failure."
    )
)
@click.argument("host")
@click.argument("channel")
@click.option(
    "--duration",
    "duration_s",
    type=click.FloatRange(0, 86400, min_open=True),
    required=True,
    help="Seconds; the device takes whole seconds, so this is rounded up.",
)
@click.option("-o", "--output", type=click.Path(path_type=Path), required=True, help="Output .ts file.")
@click.option("--timeout", "timeout_s", type=click.FloatRange(0.1, 120), default=10.0, show_default=True)
@click.option("--busy-retries", type=click.IntRange(0, 100), default=5, show_default=True)
@click.option(
    "--backoff",
    "backoff_s",
    type=click.FloatRange(0, 60),
    default=1.0,
    show_default=True,
    help="First retry delay when all tuners are busy; doubles each retry.",
)
def capture(
    host: str, channel: str, duration_s: float, output: Path, timeout_s: float, busy_retries: int, backoff_s: float
) -> None:
    """Record a channel with the device's ``?duration=`` query and print the summary line."""
    from ec_node.hdhr.capture import capture as run

    summary = run(
        host, channel, duration_s, output, timeout_s=timeout_s, busy_retries=busy_retries, backoff_s=backoff_s
    )
    _emit(summary.to_json())


@documents_exits(ExitCode.OK, ExitCode.USAGE, ExitCode.BAD_INPUT, ExitCode.CONFIG)
@click.command(
    "hdhr-emulator",
    help=(
        "Serve MEDIA as a fake HDHomeRun on loopback: HTTP API, PCR-paced streams, tuner allocation and UDP "
        "discovery. Prints one JSON line with its ports and URLs when ready; runs until SIGINT/SIGTERM "
        "(then ok). Ports default to 0 (any free port); use --discover-port 65001 to be found by "
        "`hdhomerun_config discover 127.0.0.1`. It cannot listen on a busy port (config)."
    ),
)
@click.option("--media", type=click.Path(path_type=Path, dir_okay=False), required=True, help="MPEG-TS file.")
@click.option("--tuners", type=click.IntRange(1, 64), default=2, show_default=True)
@click.option("--bind", default="127.0.0.1", show_default=True)
@click.option("--http-port", type=click.IntRange(0, 65535), default=0, show_default=True)
@click.option("--stream-port", type=click.IntRange(0, 65535), default=0, show_default=True)
@click.option("--discover-port", type=click.IntRange(0, 65535), default=0, show_default=True)
@click.option("--device-id", default="1FA4E002", show_default=True, help="8 hex digits passing the checksum.")
@click.option(
    "--channel",
    "channels",
    multiple=True,
    metavar="GUIDE=NAME",
    help="Lineup entry such as 7.1=WSYN-HD (repeatable). Default: the media's PSIP TVCT, else 7.1=WSYN-HD.",
)
@click.option(
    "--tuning-delay-ms",
    type=click.IntRange(0, 60000),
    default=0,
    show_default=True,
    help="Delay before response headers, like a real tuner locking.",
)
@click.option(
    "--cut-after-s",
    type=click.FloatRange(0, min_open=True),
    default=None,
    help="Close every stream after this many media seconds.",
)
@click.option(
    "--junk-at-s",
    type=click.FloatRange(0),
    default=None,
    help="Inject 100 junk bytes once per stream at this media time.",
)
@click.option(
    "--busy-for-s",
    type=click.FloatRange(0),
    default=0.0,
    show_default=True,
    help="Answer 503/805 to every stream request for this long after start.",
)
@click.option(
    "--serve-speed",
    type=click.FloatRange(0),
    default=1.0,
    show_default=True,
    help="Pace at this multiple of real time; 0 = unpaced.",
)
@click.option(
    "--tune-error",
    type=click.Choice(["806", "807", "811"]),
    default=None,
    help="Fail every tune with 503 and this X-HDHomeRun-Error code.",
)
def hdhr_emulator(
    media: Path,
    tuners: int,
    bind: str,
    http_port: int,
    stream_port: int,
    discover_port: int,
    device_id: str,
    channels: tuple[str, ...],
    tuning_delay_ms: int,
    cut_after_s: float | None,
    junk_at_s: float | None,
    busy_for_s: float,
    serve_speed: float,
    tune_error: str | None,
) -> None:
    """Serve media as a loopback HDHomeRun until SIGINT/SIGTERM, printing its ready line first."""
    from ec_node.devkit.emulator import HdhrEmulator, parse_channel_arg, parse_device_id

    emu = HdhrEmulator(
        media,
        tuners=tuners,
        bind=bind,
        http_port=http_port,
        stream_port=stream_port,
        discover_port=discover_port,
        device_id=parse_device_id(device_id),
        channels=[parse_channel_arg(c) for c in channels] or None,
        tuning_delay_ms=tuning_delay_ms,
        cut_after_s=cut_after_s,
        junk_at_s=junk_at_s,
        busy_for_s=busy_for_s,
        serve_speed=serve_speed,
        tune_error=int(tune_error) if tune_error else None,
    )
    emu.run_until_signal(_emit)


COMMANDS = [hdhr, hdhr_emulator]
