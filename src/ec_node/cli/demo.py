"""`ec-node demo`."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from ec_node.transport.addr import AddressError, parse_host_port


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
@click.option(
    "--http",
    default="127.0.0.1:0",
    show_default=True,
    metavar="HOST:PORT",
    help="Where the watch page is served (port 0: any free port; the URL is printed).",
)
@click.option("--no-serve", is_flag=True, help="End once the run is done instead of serving the result until Ctrl-C.")
def demo(
    directory: Path,
    seconds: int,
    size: str,
    codec: str,
    stop_after: int | None,
    fast: bool,
    http: str,
    no_serve: bool,
) -> None:
    """Run the whole split-source mesh on this machine and show it working.

    Tuner emulator -> capture -> leader (manifests) + relay (objects) -> verifying subscriber -> HLS,
    watched live on the printed URL and served until Ctrl-C (--no-serve: end at once).
    Needs no network beyond 127.0.0.1.
    """
    from ec_node.devkit.demo import DemoConfig, run_demo  # PyAV: loaded only by this command

    try:
        where = parse_host_port(http, "--http", any_port=True)
    except AddressError as e:
        raise click.UsageError(str(e)) from None
    cfg = DemoConfig(
        directory=directory,
        seconds=seconds,
        size=size,
        codec=codec,
        stop_after=stop_after,
        realtime=not fast,
        http=where,
        serve=not no_serve,
    )
    sys.exit(run_demo(cfg))


COMMANDS = [demo]
