"""The flags of a node that serves peers (`moq-publish` and `relay`), defined once."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from ec_node.cli.pull_options import stacked

F = TypeVar("F", bound=Callable[..., Any])


def serving_options() -> Callable[[F], F]:
    """--listen, --identity, --cache-mb and --addr-file."""
    return stacked(
        [
            click.option("--listen", default="127.0.0.1:0", show_default=True, metavar="HOST:PORT"),
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
