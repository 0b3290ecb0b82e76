"""The input guard: a chunker that says clearly when its input is not usable MPEG-TS.

Why: a bare :class:`~ec_node.ts.chunker.Chunker` fed a text file or an audio-only stream just
emits nothing. Every ingest path (``ts-chunk``, ``moq-publish``, the head probe) wants one clear
error instead, raised as soon as enough input has passed to be sure. Pure: bytes in, chunks out.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from ec_node.ts.chunker import Chunk, Chunker
from ec_node.ts.errors import NotTsError

# Give up when this much input has passed without sync, or without a PAT/PMT naming a video PID.
NO_SYNC_LIMIT = 2 * 1024 * 1024
NO_VIDEO_LIMIT = 16 * 1024 * 1024


class GuardedChunker:
    """A :class:`Chunker` that raises :class:`NotTsError` when its input is not usable MPEG-TS."""

    def __init__(self, chunk_ms: int, name: str = "input") -> None:
        self.chunker = Chunker(chunk_ms)
        self.name = name
        self.bytes_in = 0

    def feed(self, data: bytes) -> list[Chunk]:
        """Chunk the next bytes; raise once the input has shown it is not usable TS."""
        self.bytes_in += len(data)
        out = self.chunker.feed(data)
        self._check(final=False)
        return out

    def flush(self) -> list[Chunk]:
        """End of input: the last chunks, or the reason there never were any."""
        out = self.chunker.flush()
        self._check(final=True)
        return out

    def _check(self, final: bool) -> None:
        ch = self.chunker
        if ch.packets_seen == 0 and (final or self.bytes_in > NO_SYNC_LIMIT):
            if self.bytes_in == 0:
                raise NotTsError(f"{self.name}: empty input")
            raise NotTsError(f"{self.name}: not an MPEG-TS stream (no 0x47 sync at 188-byte spacing)")
        if ch.info.video_pid is None and (final or self.bytes_in > NO_VIDEO_LIMIT) and ch.packets_seen:
            if ch.info.pat is None:
                raise NotTsError(f"{self.name}: MPEG-TS without a PAT")
            raise NotTsError(f"{self.name}: MPEG-TS has no video PID in its PMT")


def chunks_of(reads: Iterable[bytes], chunk_ms: int, name: str = "input") -> Iterator[Chunk]:
    """Chunk a whole stream given as successive reads, guarded."""
    g = GuardedChunker(chunk_ms, name)
    for data in reads:
        yield from g.feed(data)
    yield from g.flush()
