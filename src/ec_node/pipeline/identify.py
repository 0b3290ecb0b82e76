"""What broadcast is this? Read the head of a stream until its PAT, PMT and PSIP say.

The publisher must announce its broadcast (named by the stream id) before it ingests, so it
probes the first bytes, derives the id, then replays those bytes into the real chunker.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from ec_node.integrity.stream_id import BroadcastIdentity
from ec_node.pipeline.ingest import GuardedChunker
from ec_node.ts.chunker import StreamInfo
from ec_node.ts.psip import PsipError, VirtualChannel, parse_tvct

# Stop probing once this much has been read after the video PID is known (PSIP repeats every ~400 ms).
PSIP_PROBE_BYTES = 4 * 1024 * 1024


def tvct_channels(info: StreamInfo) -> list[VirtualChannel]:
    out: list[VirtualChannel] = []
    for sec in info.psip_sections:
        if sec and sec[0] in (0xC8, 0xC9):
            try:
                out.extend(parse_tvct(sec))
            except PsipError:
                continue
    return out


def identity_of(info: StreamInfo) -> BroadcastIdentity | None:
    """The broadcast identity the stream claims, or None when it has no PAT."""
    if info.pat is None:
        return None
    channels = tvct_channels(info)
    program = info.program_number
    name = next((c.short_name for c in channels if c.program_number == program), None)
    return BroadcastIdentity(
        transport_stream_id=info.pat.transport_stream_id,
        program_numbers=tuple(sorted(info.pat.programs)),
        has_psip=bool(channels),
        short_name=name,
    )


@dataclass
class Probe:
    info: StreamInfo
    head: list[bytes] = field(default_factory=list)  # bytes read while probing, to replay


def probe(reads: Iterator[bytes], chunk_ms: int, name: str) -> Probe:
    """Read until PAT+PMT (and a TVCT, if the stream has PSIP) are known; keep what was read."""
    g = GuardedChunker(chunk_ms, name)
    p = Probe(g.chunker.info)
    after_video = 0
    for data in reads:
        p.head.append(data)
        g.feed(data)
        if g.chunker.info.video_pid is not None:
            after_video += len(data)
            if tvct_channels(g.chunker.info) or after_video >= PSIP_PROBE_BYTES:
                return p
    g.flush()  # raises a clear error when the input ended without a usable stream
    return p
