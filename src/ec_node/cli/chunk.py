"""`ec-node ts-chunk`."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from ec_node.cli.exits import documents_exits
from ec_node.errors import ExitCode
from ec_node.pipeline.ts_chunk import run_ts_chunk
from ec_node.ts.chunker import DEFAULT_CHUNK_MS, MAX_CHUNK_MS, MIN_CHUNK_MS


@documents_exits(ExitCode.OK, ExitCode.USAGE, ExitCode.BAD_INPUT, ExitCode.OUTPUT)
@click.command("ts-chunk")
@click.argument("input", metavar="INPUT")
@click.option("-o", "--output-dir", type=click.Path(path_type=Path), help="Also write chunk_<index>.ts files here.")
@click.option(
    "--chunk-ms",
    type=click.IntRange(MIN_CHUNK_MS, MAX_CHUNK_MS),
    default=DEFAULT_CHUNK_MS,
    show_default=True,
    help="Chunk window length.",
)
def ts_chunk(input: str, output_dir: Path | None, chunk_ms: int) -> None:
    """Cut MPEG-TS INPUT (a path, or - for stdin) into deterministic chunks.

    Prints one JSON line per chunk: chunk_index, duration_ms, bytes, blake3, damaged.
    """
    run_ts_chunk(input, output_dir, chunk_ms, sys.stdout)


COMMANDS = [ts_chunk]
