"""`ec-node media ...`: synthetic ATSC-like test streams (argument parsing only)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from ec_node.cli.exits import documents_exits
from ec_node.errors import ExitCode


class _IntAnyBase(click.ParamType):
    """Integers written as 2049 or 0x0801."""

    name = "integer"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        if isinstance(value, int):
            return value
        try:
            return int(str(value), 0)
        except ValueError:
            self.fail(f"{value!r} is not an integer", param, ctx)


@click.group()
def media() -> None:
    """Synthetic ATSC-like MPEG-TS for tests and demos."""


@documents_exits(ExitCode.OK, ExitCode.USAGE, ExitCode.OUTPUT)
@media.command("synth")
@click.option("-o", "--output", "output", required=True, type=click.Path(path_type=Path), help="File to write.")
@click.option(
    "--codec",
    type=click.Choice(["mpeg2", "h264"]),
    default="mpeg2",
    show_default=True,
    help="mpeg2 = MPEG-2 + AC-3 (ATSC 1.0); h264 = H.264 + AAC.",
)
@click.option(
    "--duration",
    type=click.FloatRange(0, 3600, min_open=True),
    default=10.0,
    show_default=True,
    help="Seconds of media.",
)
@click.option(
    "--size", default=None, help="1080i, 720p, small (320x180) or WxH. Default: 1080i for mpeg2, 720p for h264."
)
@click.option("--fps", type=click.Choice(["29.97", "59.94", "30"]), default=None, help="Override the preset.")
@click.option("--open-gop/--closed-gop", "open_gop", default=False, show_default=True)
@click.option(
    "--null-padding/--no-null-padding",
    default=False,
    show_default=True,
    help="Keep CBR null packets (off: null-stripped, like an HDHomeRun).",
)
@click.option("--psip/--no-psip", default=True, show_default=True, help="ATSC MGT/TVCT/STT on PID 0x1FFB.")
@click.option("--channel-name", default="WSYN-HD", show_default=True, help="TVCT short name (max 7 chars).")
@click.option("--major", type=click.IntRange(0, 1023), default=7, show_default=True)
@click.option("--minor", type=click.IntRange(0, 1023), default=1, show_default=True)
@click.option("--tsid", type=_IntAnyBase(), default=0x0801, show_default=True, help="transport_stream_id.")
@click.option("--program", type=_IntAnyBase(), default=3, show_default=True, help="program_number.")
@click.option("--wall-clock", is_flag=True, help="STT from the current time (default: fixed, reproducible).")
def synth(
    output: Path,
    codec: str,
    duration: float,
    size: str | None,
    fps: str | None,
    open_gop: bool,
    null_padding: bool,
    psip: bool,
    channel_name: str,
    major: int,
    minor: int,
    tsid: int,
    program: int,
    wall_clock: bool,
) -> None:
    """Write a synthetic stream and print one JSON summary line."""
    extra: dict[str, Any] = {"stt_unix": None} if wall_clock else {}
    if fps is not None:
        extra["fps"] = fps
    from ec_node.devkit.synth import synthesize_preset  # PyAV: loaded only by this command

    result = synthesize_preset(
        output,
        size,
        codec,  # type: ignore[arg-type]
        duration_s=duration,
        closed_gop=not open_gop,
        null_padding=null_padding,
        psip=psip,
        channel_name=channel_name,
        major=major,
        minor=minor,
        tsid=tsid,
        program_number=program,
        **extra,
    )
    click.echo(json.dumps(result.summary()))


COMMANDS = [media]
