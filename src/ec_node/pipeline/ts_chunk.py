"""`ec-node ts-chunk`: chunk a TS file or stdin and report each chunk as a JSON line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TextIO

import blake3

from ec_node.atomic import write_atomic
from ec_node.pipeline.hls import prepare_dir
from ec_node.pipeline.ingest import open_source
from ec_node.ts.guard import chunks_of


def run_ts_chunk(source: str, out_dir: Path | None, chunk_ms: int, out: TextIO) -> int:
    """Chunk ``source``; print one JSON line per chunk; return how many chunks were made."""
    if out_dir is not None:
        prepare_dir(out_dir)
    count = 0
    name = "stdin" if source == "-" else source
    for c in chunks_of(open_source(source), chunk_ms, name=name):
        if out_dir is not None:
            write_atomic(out_dir / f"chunk_{c.index}.ts", c.data)
        line = {
            "chunk_index": c.index,
            "duration_ms": c.duration_ms,
            "bytes": len(c.data),
            "blake3": blake3.blake3(c.data).hexdigest(),
            "damaged": c.damaged,
            "complete": c.complete,
        }
        out.write(json.dumps(line, separators=(",", ":")) + "\n")
        out.flush()
        count += 1
    return count
