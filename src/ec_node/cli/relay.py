"""`ec-node relay`: flags in, one pipeline call out."""

from __future__ import annotations

import asyncio
from typing import Any

import click

from ec_node.cli.exits import documents_exits
from ec_node.cli.pull_options import pull_config, pull_options
from ec_node.cli.serve_options import serving_config, serving_options
from ec_node.cli.url_options import url_peer_config, url_peer_options
from ec_node.errors import ExitCode
from ec_node.memory import tune_malloc
from ec_node.pipeline.relay import RelayConfig, run_relay


@documents_exits(ExitCode.OK, ExitCode.USAGE, ExitCode.UNREACHABLE, ExitCode.CONFIG, ExitCode.OUTPUT)
@click.command("relay")
@pull_options(
    "Objects upstream (repeatable): EndpointAddr JSON, @FILE, or moql:// / moqt:// / https:// URL.",
    "Manifests upstream (default: the first --remote).",
)
@serving_options()
@click.option(
    "--broadcast",
    help="MoQ broadcast name (default: from an --remote @FILE startup object, else the one broadcast "
    "the first --remote announces).",
)
@click.option(
    "--keyless",
    is_flag=True,
    help="Without the network secret: check manifests and object metadata only, not ciphertext.",
)
@click.option(
    "--max-subscribers",
    type=click.IntRange(1),
    default=64,
    show_default=True,
    help="Downstream sessions held at once; more are refused (event subscriber_refused).",
)
@click.option(
    "--max-lag-mb",
    type=click.IntRange(1),
    default=32,
    show_default=True,
    help="A downstream session this far behind is shed (event subscriber_shed).",
)
@click.option(
    "--max-total-lag-mb",
    type=click.IntRange(1),
    default=256,
    show_default=True,
    help="When all downstream sessions together lag more, the furthest behind are shed first.",
)
@url_peer_options(push=True)
def relay(
    broadcast: str | None,
    keyless: bool,
    max_subscribers: int,
    max_lag_mb: int,
    max_total_lag_mb: int,
    **kw: Any,
) -> None:
    """Re-serve a broadcast's chunks and manifests from upstream peers to any number of subscribers.

    Prints one JSON line first, like moq-publish: {"endpoint_addr", "broadcast", "stream_id",
    "tracks", "signer_id": null}. With --require-manifest only what verifies is re-served; without
    it, what decodes and names the stream. Runs until SIGINT/SIGTERM (then ok), serving its cache
    after the upstream ends; unreachable once every upstream is lost.
    """
    cfg = RelayConfig(
        broadcast=broadcast,
        keyless=keyless,
        max_subscribers=max_subscribers,
        max_lag_mb=max_lag_mb,
        max_total_lag_mb=max_total_lag_mb,
        **serving_config(kw),
        **url_peer_config(kw),
        **pull_config(kw),
    )
    tune_malloc()  # a relay's memory grows with its subscribers; the CPU this costs is cheap there
    asyncio.run(run_relay(cfg))


COMMANDS = [relay]
