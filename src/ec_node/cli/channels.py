"""`ec-node channels`: which broadcasts a peer or relay announces, and what each one is."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import click

from ec_node.cli.exits import documents_exits
from ec_node.cli.url_options import url_peer_config, url_peer_options
from ec_node.errors import ExitCode, UsageError
from ec_node.pipeline.channels import DEFAULT_WINDOW_S, list_channels
from ec_node.pipeline.peers import peer_name
from ec_node.transport.addr import parse_endpoint_addr
from ec_node.transport.moq_transport import moq_transport

_SECONDS = click.FloatRange(min=0, min_open=True)


class _OneLineUsage(click.Command):
    """Bad flags are one ``ec-node: error:`` line (exit 2), not click's usage block."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        try:
            return super().parse_args(ctx, args)
        except click.UsageError as e:
            raise UsageError(f"{e.format_message()} (see ec-node {self.name} --help)") from None


@documents_exits(ExitCode.OK, ExitCode.USAGE, ExitCode.UNREACHABLE, ExitCode.CONFIG)
@click.command("channels", cls=_OneLineUsage)
@click.option(
    "--remote",
    required=True,
    metavar="ADDR",
    help="The peer or relay: EndpointAddr JSON, @FILE, or moql:// / moqt:// / https:// URL.",
)
@click.option(
    "--timeout",
    type=_SECONDS,
    default=DEFAULT_WINDOW_S,
    show_default=True,
    help="Seconds to collect announcements; also the bound on reading one group of each track.",
)
@click.option("--connect-timeout", type=_SECONDS, default=10.0, show_default=True)
@click.option("--json", "json_", is_flag=True, help="One JSON object per broadcast on stdout.")
@url_peer_options(push=False)
def channels(remote: str, timeout: float, connect_timeout: float, json_: bool, **kw: Any) -> None:
    """List the broadcasts a peer or relay announces, one line each.

    For each: the channel identity parsed from its ec-node stream id (tsid, program, call sign), its
    roles (chunks and/or manifests, found by reading one group of each), the signer its manifests
    claim (untrusted: nothing is verified) and channel number/name from manifest metadata. With
    --json: {"broadcast", "stream_id", "identity", "roles", "tracks", "signer_id_untrusted",
    "signer_ids_untrusted", "channel_number", "channel_name", "notes"} per line. Progress goes to
    stderr; when nothing is announced within --timeout it says so (on stdout, or stderr with --json).
    """
    addr = parse_endpoint_addr(remote)
    transport = moq_transport(url_peers=url_peer_config(kw)["url_peers"])
    infos = asyncio.run(list_channels(transport, addr, window_s=timeout, connect_timeout_s=connect_timeout))
    if not infos:
        click.echo(f"no broadcasts announced by {peer_name(addr)} within {timeout:g} s", err=json_)
        return
    for info in infos:
        click.echo(json.dumps(info.to_json(), separators=(",", ":")) if json_ else info.line())


COMMANDS = [channels]
