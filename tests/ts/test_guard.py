"""The input guard: a clear NotTsError for input that is not usable MPEG-TS, chunks otherwise."""

from __future__ import annotations

import pytest

from ec_node.ts.chunker import chunk_stream
from ec_node.ts.errors import NotTsError, TsError
from ec_node.ts.guard import NO_SYNC_LIMIT, GuardedChunker, chunks_of

from support.tsbuild import pat, stream, video_payload

FRAME = 3003


def test_a_stream_passes_and_chunks_like_the_chunker() -> None:
    data = stream([i * FRAME for i in range(300)])
    chunks = list(chunks_of([data[:5000], data[5000:]], 2000, "x"))
    assert chunks == list(chunk_stream([data], 2000)) and [c.index for c in chunks] == [1, 2, 3, 4]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "x: empty input"),
        (b"not a transport stream\n" * 100, "x: not an MPEG-TS stream"),
        (video_payload(0) * 10, "x: MPEG-TS without a PAT"),
        (pat() + video_payload(0) * 10, "x: MPEG-TS has no video PID in its PMT"),
    ],
)
def test_unusable_input_is_named_at_the_end(data: bytes, message: str) -> None:
    g = GuardedChunker(2000, "x")
    assert g.feed(data) == []
    with pytest.raises(NotTsError, match=message):
        g.flush()
    assert issubclass(NotTsError, TsError)


def test_junk_fails_before_the_end_once_past_the_limit() -> None:
    g = GuardedChunker(2000, "x")
    g.feed(b"\x00" * NO_SYNC_LIMIT)  # exactly at the limit: still undecided
    with pytest.raises(NotTsError, match="not an MPEG-TS stream"):
        g.feed(b"\x00")
