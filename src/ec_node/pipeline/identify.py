"""Which broadcast is this? The stream's own tables, as the identity its stream id is derived from.

Glue between :mod:`ec_node.ts.inspect` (what the head of the stream carried) and
:mod:`ec_node.integrity.stream_id` (how an identity names a broadcast); the reading itself is
:func:`ec_node.ts.inspect.probe_head`.
"""

from __future__ import annotations

from ec_node.integrity.stream_id import BroadcastIdentity
from ec_node.ts.chunker import StreamInfo
from ec_node.ts.inspect import tvct_channels


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
