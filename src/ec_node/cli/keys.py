"""`ec-node keygen`: create the Ed25519 key that signs manifests."""

from __future__ import annotations

from pathlib import Path

import click

from ec_node.cli.exits import documents_exits
from ec_node.errors import ExitCode
from ec_node.integrity.keys import generate_key_file


@documents_exits(ExitCode.OK, ExitCode.USAGE, ExitCode.OUTPUT)
@click.command("keygen")
@click.option(
    "-o",
    "--output",
    "output",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Key file to write (PEM PKCS#8, mode 0600).",
)
@click.option("--force", is_flag=True, help="Overwrite an existing key file.")
def keygen(output: Path, force: bool) -> None:
    """Write a new manifest signing key and print its signer id (hex public key).

    Give the signer id to subscribers as --trust-signer. An existing file is kept unless --force
    (that, like an unwritable path, is an output error).
    """
    click.echo(generate_key_file(output, force=force))


COMMANDS = [keygen]
