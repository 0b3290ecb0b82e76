"""The flags of a node that serves peers (`moq-publish` and `relay`), defined once."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from ec_node.cli.pull_options import stacked
from ec_node.transport.addr import parse_host_port

F = TypeVar("F", bound=Callable[..., Any])


SERVING_KEYS = ("listen", "no_listen", "advertise", "identity_dir", "cache_mb", "addr_file")


def serving_options() -> Callable[[F], F]:
    """--listen, --no-listen, --advertise, --identity, --cache-mb and --addr-file."""
    return stacked(
        [
            click.option("--listen", default="127.0.0.1:0", show_default=True, metavar="HOST:PORT"),
            click.option(
                "--no-listen",
                is_flag=True,
                help="Serve no socket: the broadcast reaches only the --relay URLs it is pushed to.",
            ),
            click.option(
                "--advertise",
                multiple=True,
                metavar="HOST:PORT",
                help="Address peers dial, put in endpoint_addr (repeatable; needed with --listen 0.0.0.0:PORT).",
            ),
            click.option(
                "--identity",
                "identity_dir",
                type=click.Path(path_type=Path),
                help="Directory keeping this node's TLS identity (node id) across restarts.",
            ),
            click.option(
                "--cache-mb",
                type=click.IntRange(1),
                default=64,
                show_default=True,
                help="Bound of the group cache served to peers (history for late joiners).",
            ),
            click.option("--addr-file", type=click.Path(path_type=Path), help="Also write the startup JSON here."),
        ]
    )


def serving_config(kw: dict[str, Any]) -> dict[str, Any]:
    """Pop the serving flags out of a command's ``**kw`` as config fields (``listen`` None with
    --no-listen); a malformed --advertise is AddressError (exit 2)."""
    opts = {k: kw.pop(k) for k in SERVING_KEYS}
    advertise = []
    for text in opts.pop("advertise"):
        host, port = parse_host_port(text, "--advertise")
        advertise.append(f"[{host}]:{port}" if ":" in host else f"{host}:{port}")
    if opts.pop("no_listen"):
        opts["listen"] = None
    return {**opts, "advertise": tuple(advertise)}
