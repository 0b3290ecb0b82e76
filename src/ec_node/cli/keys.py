"""`ec-node keygen`: create the Ed25519 key that signs manifests, or show an existing key's signer id."""

from __future__ import annotations

from pathlib import Path

import click

from ec_node.cli.exits import documents_exits
from ec_node.errors import ExitCode, UsageError
from ec_node.integrity.keys import generate_key_file, key_file_signer_id


@documents_exits(ExitCode.OK, ExitCode.USAGE, ExitCode.CONFIG, ExitCode.OUTPUT)
@click.command("keygen")
@click.option(
    "-o",
    "--output",
    "output",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Key file to write (PEM PKCS#8, mode 0600; missing folders are made, mode 0700).",
)
@click.option("--force", is_flag=True, help="Overwrite an existing key file (a new signing identity).")
@click.option(
    "--show",
    "show",
    metavar="PATH",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Print the signer id of this existing key file; the file is only read.",
)
def keygen(output: Path | None, force: bool, show: Path | None) -> None:
    """Write a new manifest signing key and print its signer id (hex public key).

    Give the signer id to subscribers as --trust-signer. An existing file is kept unless --force
    (that, like an unwritable path, is an output error). --show PATH prints the signer id of a key
    made before (never the key itself); a missing or unusable file is a config error.
    """
    if show is not None:
        if output is not None or force:
            raise UsageError("keygen: --show only reads a key; give it without -o/--force")
        click.echo(key_file_signer_id(show))
        return
    if output is None:
        raise UsageError("keygen: give -o PATH to write a new key, or --show PATH to print an existing key's signer id")
    click.echo(generate_key_file(output, force=force))


COMMANDS = [keygen]
