"""`ec-node demo`."""

from __future__ import annotations

import sys
from pathlib import Path

import click


@click.command("demo")
@click.option(
    "--dir",
    "directory",
    type=click.Path(path_type=Path),
    default=Path("ec-demo"),
    show_default=True,
    help="Where media, capture, keys, logs and HLS output go.",
)
@click.option("--seconds", type=click.IntRange(6, 600), default=24, show_default=True, help="Capture length.")
@click.option("--size", default="720p", show_default=True, help="Media size: 1080i, 720p, small or WxH.")
@click.option("--codec", type=click.Choice(["mpeg2", "h264"]), default="mpeg2", show_default=True)
@click.option("--stop-after", type=click.IntRange(1), default=None, help="Subscriber stops after N segments.")
@click.option("--fast", is_flag=True, help="Publish the capture unpaced instead of in real time.")
def demo(directory: Path, seconds: int, size: str, codec: str, stop_after: int | None, fast: bool) -> None:
    """Run the whole split-source mesh on this machine and show it working.

    Tuner emulator -> capture -> leader (manifests) + relay (objects) -> verifying subscriber -> HLS.
    Needs no network beyond 127.0.0.1.
    """
    from ec_node.devkit.demo import DemoConfig, run_demo  # PyAV: loaded only by this command

    cfg = DemoConfig(
        directory=directory, seconds=seconds, size=size, codec=codec, stop_after=stop_after, realtime=not fast
    )
    sys.exit(run_demo(cfg))


COMMANDS = [demo]
