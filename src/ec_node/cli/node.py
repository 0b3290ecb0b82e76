"""`ec-node node`: run a home node from its config, or write an example config (``--init``)."""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import threading
from pathlib import Path

import click

from ec_node.cli.exits import documents_exits
from ec_node.errors import ExitCode, OutputError, UsageError

_EXITS = (ExitCode.OK, ExitCode.USAGE, ExitCode.UNREACHABLE, ExitCode.CONFIG, ExitCode.OUTPUT)


@documents_exits(*_EXITS)
@click.command("node")
@click.option("--config", "config", type=click.Path(dir_okay=False, path_type=Path), help="The node's TOML config.")
@click.option("--json", "json_", is_flag=True, help="The node's events as JSON lines on stdout.")
@click.option("--no-live", is_flag=True, help="Plain log lines on stderr even on a terminal (no live table).")
@click.option("--init", "init", is_flag=True, help="Write an example config from the tuner's lineup instead.")
@click.option("--target", metavar="HOST[:PORT]", help="--init: UDP discovery at this address (default: broadcast).")
@click.option("--device", metavar="URL", help="--init: the tuner at hdhr://HOST[:PORT] (no discovery).")
@click.option(
    "-o", "--output", type=click.Path(dir_okay=False, path_type=Path), help="--init: write here (default stdout)."
)
@click.option("--force", is_flag=True, help="--init: replace an existing -o file.")
def node(
    config: Path | None,
    json_: bool,
    no_live: bool,
    init: bool,
    target: str | None,
    device: str | None,
    output: Path | None,
    force: bool,
) -> None:
    """Run a tuner's lineup in one process: per channel a leader, objects publisher, relay, watcher.

    The config (docs/node.example.toml) names the tuner, the channels and their roles. Channels
    start, fail and retry independently; when there are more than tuners, the first in the file
    run and the others wait for a free tuner. SIGHUP reloads the config (unchanged channels keep
    running; a bad file is refused and the old one kept); SIGINT/SIGTERM stop every channel
    (exit 0). [node] http serves /status (JSON) and /metrics (Prometheus). On a terminal stderr
    shows a live table, otherwise a status line per channel every status_every_s seconds.
    A bad or missing config is a usage error (2); an unreachable tuner at start 4; a missing
    signing key 6; an unwritable state folder or an HTTP address in use 7.
    """
    if init:
        if config is not None or json_ or no_live:
            raise UsageError("node --init writes a config: give it without --config, --json or --no-live")
        if target is not None and device is not None:
            raise UsageError("node --init: give --target (discovery) or --device (a known tuner), not both")
        _init(target, device, output, force)
        return
    if target is not None or device is not None or output is not None or force:
        raise UsageError("--target, --device, -o and --force go with --init")
    if config is None:
        raise UsageError("node: give --config PATH (write one with: ec-node node --init -o node.toml)")
    _run(config, json_, live=not no_live and sys.stderr.isatty())


def _init(target: str | None, device: str | None, output: Path | None, force: bool) -> None:
    from ec_node.atomic import write_atomic
    from ec_node.home.init import example_config, find_device

    if output is not None and output.exists() and not force:
        raise OutputError(f"{output} exists; pass --force to replace it")
    text = example_config(find_device(target, device))
    if output is None:
        click.echo(text, nl=False)
        return
    write_atomic(output, text.encode())
    click.echo(f"ec-node: wrote {output}; edit it, then run: ec-node node --config {output}", err=True)


def _run(config: Path, json_: bool, *, live: bool) -> None:
    from ec_node.home.runner import NodeOptions, run_node

    if logging.getLogger().getEffectiveLevel() > logging.INFO:
        logging.getLogger("ec_node.home").setLevel(logging.INFO)  # the node's own lines show without -v
    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(run_node(NodeOptions(config, json=json_, live=live)))
    finally:
        try:
            loop.run_until_complete(loop.shutdown_asyncgens())
        finally:
            loop.close()  # the default executor is not waited for (a tuner request may still block)
    blocked = [t for t in threading.enumerate() if t is not threading.main_thread() and t.is_alive() and not t.daemon]
    if blocked:  # a device call in a worker thread (busy-tuner backoff): do not wait for it to give up
        logging.getLogger(__name__).info("leaving %d blocked device calls behind", len(blocked))
        sys.stdout.flush()
        sys.stderr.flush()
        logging.shutdown()
        os._exit(0)


COMMANDS = [node]
