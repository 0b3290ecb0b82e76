"""HLS output (RFC 8216): verified chunks become `segment_NNNNNN.ts` files named by `index.m3u8`.

:class:`Playlist` is the pure model (which segments, which tags); :class:`HlsSink` is the thin
shell that writes files. A segment is complete on disk (write, then rename) before the
playlist names it, and the playlist itself is replaced atomically.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

from ec_node.atomic import write_atomic
from ec_node.errors import OutputError

log = logging.getLogger(__name__)


def segment_name(index: int) -> str:
    """The file name of chunk ``index``'s segment."""
    return f"segment_{index:06d}.ts"


@dataclass(frozen=True)
class Segment:
    """One segment as the playlist names it."""

    index: int  # chunk index
    sequence: int  # media sequence number: +1 per segment
    duration_ms: int
    discontinuity: bool  # the chunk index does not follow the previous segment's

    @property
    def uri(self) -> str:
        """The segment's URI, relative to the playlist."""
        return segment_name(self.index)


@dataclass
class Playlist:
    """A live playlist with an optional sliding window; `window == 0` keeps every segment."""

    window: int = 0
    min_target_s: int = 2
    segments: list[Segment] = field(default_factory=list)
    ended: bool = False
    discontinuity_sequence: int = 0
    _next_sequence: int = 0
    _last_index: int | None = None
    _target: int = 0

    def add(self, index: int, duration_ms: int) -> list[Segment]:
        """Append a segment; return the segments that left the window (their files may go)."""
        disc = self._last_index is not None and index != self._last_index + 1
        seg = Segment(index, self._next_sequence, duration_ms, disc)
        self._next_sequence += 1
        self._last_index = index
        self.segments.append(seg)
        # RFC 8216 6.2.1: the target duration must not change. It starts with room for a chunk's
        # +-one-GOP variation (min_target_s); only a segment that would otherwise break the rule
        # (EXTINF rounded > target, e.g. a GOP longer than the chunk window) raises it, with a warning.
        need = int(duration_ms / 1000 + 0.5)  # RFC 8216 rounds to the nearest integer (half up)
        if self._target and need > self._target:
            log.warning("segment %d lasts %.3f s: raising EXT-X-TARGETDURATION to %d", index, duration_ms / 1000, need)
        self._target = max(self._target, self.min_target_s, need)
        gone: list[Segment] = []
        while self.window and len(self.segments) > self.window:
            old = self.segments.pop(0)
            gone.append(old)
            if self.segments[0].discontinuity:
                self.discontinuity_sequence += 1
        return gone

    @property
    def target_duration(self) -> int:
        """EXT-X-TARGETDURATION: fixed from the start unless a segment forced it up."""
        return max(self._target, self.min_target_s)

    def render(self) -> str:
        """The playlist text (RFC 8216)."""
        lines = [
            "#EXTM3U",
            "#EXT-X-VERSION:3",
            f"#EXT-X-TARGETDURATION:{self.target_duration}",
            f"#EXT-X-MEDIA-SEQUENCE:{self.segments[0].sequence if self.segments else 0}",
        ]
        if self.discontinuity_sequence:
            lines.append(f"#EXT-X-DISCONTINUITY-SEQUENCE:{self.discontinuity_sequence}")
        if self.window == 0:
            lines.append("#EXT-X-PLAYLIST-TYPE:EVENT")  # EVENT stays EVENT: only ENDLIST is added at the end
        lines.append("#EXT-X-INDEPENDENT-SEGMENTS")
        for i, s in enumerate(self.segments):
            if s.discontinuity and i > 0:
                lines.append("#EXT-X-DISCONTINUITY")
            lines.append(f"#EXTINF:{s.duration_ms / 1000:.3f},")
            lines.append(s.uri)
        if self.ended:
            lines.append("#EXT-X-ENDLIST")
        return "\n".join(lines) + "\n"


def prepare_dir(path: Path) -> Path:
    """Create the output directory, or raise OutputError if it cannot be written."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputError(f"cannot create output directory {path}: {e.strerror or e}") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise OutputError(f"output directory {path} is not writable")
    return path


class HlsSink:
    """Writes segments and keeps `index.m3u8` naming only complete files."""

    def __init__(self, directory: Path, window: int = 0, chunk_ms: int = 2000) -> None:
        self.dir = prepare_dir(directory)
        # chunks are chunk_ms +- one GOP (PROTOCOL.md section 1): 1.5x the window covers GOPs up to half a window
        self.playlist = Playlist(window=window, min_target_s=max(1, math.ceil(1.5 * chunk_ms / 1000)))
        self.written = 0

    @property
    def playlist_path(self) -> Path:
        """Where ``index.m3u8`` is written."""
        return self.dir / "index.m3u8"

    def write(self, index: int, data: bytes, duration_ms: int) -> Path:
        """Write one verified segment, then a playlist naming it; delete segments that left the window."""
        path = self.dir / segment_name(index)
        write_atomic(path, data)
        gone = self.playlist.add(index, duration_ms)
        self._write_playlist()
        for s in gone:
            with contextlib.suppress(FileNotFoundError):
                (self.dir / s.uri).unlink()
        self.written += 1
        return path

    def finish(self) -> None:
        """Mark the playlist ended (#EXT-X-ENDLIST)."""
        self.playlist.ended = True
        self._write_playlist()

    def _write_playlist(self) -> None:
        write_atomic(self.playlist_path, self.playlist.render().encode())
