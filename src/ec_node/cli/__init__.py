"""The `ec-node` command line: parse arguments, call one function, map errors to exit codes.

Each command group lives in its own module in this package and is registered below.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import click

from ec_node import __version__
from ec_node.errors import EcError, ExitCode


class _Root(click.Group):
    """Turns :class:`EcError` into one stderr line and its exit code, never a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except EcError as e:
            click.echo(f"ec-node: error: {e}", err=True)
            ctx.exit(int(e.code))
        except KeyboardInterrupt:
            click.echo("ec-node: interrupted", err=True)
            ctx.exit(130)


@click.group(cls=_Root, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="ec-node")
@click.option("-v", "--verbose", count=True, help="More logging on stderr (-v info, -vv debug).")
def cli(verbose: int) -> None:
    """every.channel node: chunk broadcast TV, sign it, carry it over MoQ.

    Exit codes: 0 ok, 2 usage, 3 bad input, 4 unreachable, 5 tuner busy, 6 config,
    7 output not writable, 8 integrity, 9 ended early, 10 manifest timeout.
    """
    level = logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    logging.basicConfig(level=level, stream=sys.stderr, format="%(asctime)s %(name)s %(levelname)s %(message)s")


def _register() -> None:
    from importlib import import_module

    for name in ("chunk", "media", "hdhr", "keys", "moq", "demo", "relay"):
        try:
            mod = import_module(f"ec_node.cli.{name}")
        except ModuleNotFoundError as e:  # a command group not written yet
            if e.name == f"ec_node.cli.{name}":
                continue
            raise
        for cmd in getattr(mod, "COMMANDS", []):
            cli.add_command(cmd)


_register()


def main() -> None:
    cli(prog_name="ec-node")


__all__ = ["cli", "main", "ExitCode"]
