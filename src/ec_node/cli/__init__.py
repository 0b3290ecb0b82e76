"""The `ec-node` command line: parse arguments, call one function, map errors to exit codes.

Each command group lives in its own module in this package and is imported and registered below; a
module that fails to import fails the whole CLI (a silently missing command would be worse).
Exceptions become exit codes through the one table in :mod:`ec_node.cli.exits`.
"""

from __future__ import annotations

import logging
import sys
from importlib import import_module
from typing import Any

import click

from ec_node import __version__
from ec_node.cli.exits import documents_exits, error_line, exit_code_for
from ec_node.errors import ExitCode

#: The command modules of this package, in registration order; each exports ``COMMANDS``.
COMMAND_MODULES = ("chunk", "media", "hdhr", "keys", "moq", "demo", "relay", "channels", "node")


class _Root(click.Group):
    """Turns a mapped failure into one stderr line and its exit code, never a traceback; bugs keep theirs."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt:
            click.echo("ec-node: interrupted", err=True)
            ctx.exit(130)
        except Exception as e:
            code = exit_code_for(e)
            if code is None:
                raise
            click.echo(error_line(e), err=True)
            ctx.exit(int(code))


@documents_exits(*ExitCode)
@click.group(cls=_Root, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="ec-node")
@click.option("-v", "--verbose", count=True, help="More logging on stderr (-v info, -vv debug).")
def cli(verbose: int) -> None:
    """every.channel node: chunk broadcast TV, sign it, carry it over MoQ."""
    level = logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    logging.basicConfig(level=level, stream=sys.stderr, format="%(asctime)s %(name)s %(levelname)s %(message)s")


def _register() -> None:
    """Add every module's commands; an import error propagates (``from . import x`` would hide its cause)."""
    for name in COMMAND_MODULES:
        for cmd in import_module(f"ec_node.cli.{name}").COMMANDS:
            cli.add_command(cmd)


_register()


def main() -> None:
    """Console-script entry point (``ec-node``)."""
    cli(prog_name="ec-node")


__all__ = ["cli", "main", "ExitCode"]
