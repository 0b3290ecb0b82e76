"""HLS output (RFC 8216): verified chunks become `segment_NNNNNN.ts` files named by `index.m3u8`.

:class:`Playlist` is the pure model (which segments, which tags, and reading back our own
playlist); :class:`Retirement` is the pure rule for when a segment that left the playlist may
go; :class:`HlsSink` is the thin shell that writes files. A segment is complete on disk (write,
then rename) before the playlist names it, and the playlist itself is replaced atomically.

Lifetime (RFC 8216 §6.2.2): a segment removed from a sliding-window playlist stays on disk for its
own duration plus the playlist's, so a client that loaded the previous playlist can still fetch it.
Restart: a sink takes over an existing ``index.m3u8`` only when its first new segment is written
(a run that fails to connect leaves the old playlist exactly as it was), keeps what it found, and
continues its media sequence. One directory has one writer: a lock file refuses a second one.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import math
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ec_node.atomic import output_mode, write_atomic
from ec_node.errors import OutputError

log = logging.getLogger(__name__)

#: the default live window: 150 segments, five minutes of 2 s chunks (``--hls-window 0`` keeps all)
DEFAULT_HLS_WINDOW = 150
PLAYLIST_NAME = "index.m3u8"
LOCK_NAME = ".ec-node.lock"
_SEGMENT_RE = re.compile(r"segment_(\d{6,})\.ts")


def segment_name(index: int) -> str:
    """The file name of chunk ``index``'s segment."""
    return f"segment_{index:06d}.ts"


def segment_index(name: str) -> int | None:
    """The chunk index a segment file name stands for, or None if it is not one of ours."""
    m = _SEGMENT_RE.fullmatch(name)
    return int(m.group(1)) if m else None


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
        """Append a segment; return the segments that left the window (their files may go later)."""
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
            gone.append(self._pop_oldest())
        return gone

    def _pop_oldest(self) -> Segment:
        old = self.segments.pop(0)
        if self.segments and self.segments[0].discontinuity:
            self.discontinuity_sequence += 1
        return old

    def drop_from(self, index: int) -> list[Segment]:
        """Forget the newest segments from chunk ``index`` on (a restart re-writing them); return them."""
        dropped = [s for s in self.segments if s.index >= index]
        if dropped:  # sequence numbers are implicit (consecutive from MEDIA-SEQUENCE): the new ones take theirs
            self.segments = self.segments[: len(self.segments) - len(dropped)]
            self._next_sequence = dropped[0].sequence
            self._last_index = self.segments[-1].index if self.segments else None
        return dropped

    @property
    def duration_s(self) -> float:
        """The playlist's duration: what a client may have buffered from it."""
        return sum(s.duration_ms for s in self.segments) / 1000

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
            f"#EXT-X-MEDIA-SEQUENCE:{self.segments[0].sequence if self.segments else self._next_sequence}",
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

    @classmethod
    def parse(cls, text: str, *, window: int = 0, min_target_s: int = 2) -> Playlist:
        """Read back a playlist this module wrote, to continue it (ValueError if it is not one)."""
        if not text.startswith("#EXTM3U"):
            raise ValueError("not an M3U playlist")
        p = cls(window=window, min_target_s=min_target_s)
        sequence = None
        duration_ms: int | None = None
        disc = False
        for line in text.splitlines()[1:]:
            line = line.strip()
            tag, _, value = line.partition(":")
            if tag == "#EXT-X-TARGETDURATION":
                p._target = int(value)
            elif tag == "#EXT-X-MEDIA-SEQUENCE":
                sequence = int(value)
            elif tag == "#EXT-X-DISCONTINUITY-SEQUENCE":
                p.discontinuity_sequence = int(value)
            elif tag == "#EXT-X-DISCONTINUITY":
                disc = True
            elif tag == "#EXTINF":
                duration_ms = round(float(value.split(",")[0]) * 1000)
            elif line and not line.startswith("#"):
                index = segment_index(line)
                if index is None or duration_ms is None or sequence is None:
                    raise ValueError(f"not an ec-node playlist (segment {line[:40]!r})")
                p.segments.append(Segment(index, sequence, duration_ms, disc and bool(p.segments)))
                sequence, duration_ms, disc = sequence + 1, None, False
        if sequence is None:
            raise ValueError("no #EXT-X-MEDIA-SEQUENCE")
        p._next_sequence = sequence
        p._last_index = p.segments[-1].index if p.segments else None
        return p


@dataclass
class Retirement:
    """Segments that left the playlist, each with the time from which its file may be deleted."""

    pending: list[tuple[float, str]] = field(default_factory=list)  # (deadline, file name)

    def retire(self, name: str, now: float, keep_s: float) -> None:
        """``name`` left the playlist at ``now``; clients may still fetch it for ``keep_s``."""
        self.pending.append((now + keep_s, name))

    def due(self, now: float) -> list[str]:
        """The files whose time is up (and forget them)."""
        ready = [n for t, n in self.pending if t <= now]
        self.pending = [(t, n) for t, n in self.pending if t > now]
        return ready


def prepare_dir(path: Path) -> Path:
    """Create the output directory, or raise OutputError if it cannot be written."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputError(f"cannot create output directory {path}: {e.strerror or e}") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise OutputError(f"output directory {path} is not writable")
    return path


def lock_dir(path: Path) -> int:
    """Take the directory's writer lock (held while the returned fd is open), or raise OutputError."""
    lock = path / LOCK_NAME
    try:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, output_mode())
    except OSError as e:
        raise OutputError(f"cannot create {lock}: {e.strerror or e}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.read(fd, 32).decode(errors="replace").strip() or "?"
        os.close(fd)
        raise OutputError(f"output directory {path} is in use by another ec-node (pid {holder})") from None
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    return fd


class HlsSink:
    """Writes segments and keeps `index.m3u8` naming only complete files."""

    def __init__(
        self,
        directory: Path,
        window: int = 0,
        chunk_ms: int = 2000,
        *,
        lock: bool = True,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.dir = prepare_dir(directory)
        self._lock_fd = lock_dir(self.dir) if lock else None
        self.clock = clock
        # chunks are chunk_ms +- one GOP (PROTOCOL.md section 1): 1.5x the window covers GOPs up to half a window
        self.min_target_s = max(1, math.ceil(1.5 * chunk_ms / 1000))
        self.playlist = Playlist(window=window, min_target_s=self.min_target_s)
        self.retirement = Retirement()
        self.written = 0

    @property
    def playlist_path(self) -> Path:
        """Where ``index.m3u8`` is written."""
        return self.dir / PLAYLIST_NAME

    def write(self, index: int, data: bytes, duration_ms: int) -> Path:
        """Write one verified segment, then a playlist naming it; retire segments that left the window."""
        path = self.dir / segment_name(index)
        write_atomic(path, data)
        now = self.clock()
        if self.written == 0:
            self._take_over(index, now)
        gone = self.playlist.add(index, duration_ms)
        self._write_playlist()
        for s in gone:
            self.retirement.retire(s.uri, now, s.duration_ms / 1000 + self.playlist.duration_s)
        self._delete_due(now)
        self.written += 1
        return path

    def finish(self) -> None:
        """Mark the playlist ended (#EXT-X-ENDLIST), unless this run wrote nothing (then leave it alone)."""
        if self.written:
            self.playlist.ended = True
            self._write_playlist()
        self._delete_due(self.clock())

    def close(self) -> None:
        """Release the directory (segments not yet due stay; the next run on it retires them)."""
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def __enter__(self) -> HlsSink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _take_over(self, first_index: int, now: float) -> None:
        """Continue the playlist found on disk (if any), now that there is a first new segment."""
        try:
            text = self.playlist_path.read_text()
        except FileNotFoundError:
            text = None
        except OSError as e:
            raise OutputError(f"cannot read {self.playlist_path}: {e.strerror or e}") from None
        if text is not None:
            try:
                found = Playlist.parse(text, window=self.playlist.window, min_target_s=self.min_target_s)
            except ValueError as e:
                log.warning("replacing %s: %s", self.playlist_path, e)
            else:
                found.drop_from(first_index)  # the same broadcast re-written: same names, same bytes
                self.playlist = found
                log.info("continuing %s (%d segments kept)", self.playlist_path, len(found.segments))
        named = {s.uri for s in self.playlist.segments} | {segment_name(first_index)}
        keep_s = self.playlist.duration_s + self.playlist.target_duration
        for p in sorted(self.dir.glob("segment_*.ts")):
            if p.name not in named:  # left a playlist in an earlier run: give it the full lifetime again
                self.retirement.retire(p.name, now, keep_s)

    def _delete_due(self, now: float) -> None:
        for name in self.retirement.due(now):
            with contextlib.suppress(FileNotFoundError):
                (self.dir / name).unlink()

    def _write_playlist(self) -> None:
        write_atomic(self.playlist_path, self.playlist.render().encode())


@dataclass(frozen=True)
class Variant:
    """One rendition a master playlist names."""

    uri: str
    bandwidth: int  # peak bits per second (RFC 8216 4.3.4.2: required)
    codecs: str | None = None  # RFC 6381 list; players skip a variant whose codecs they cannot play


def master_playlist(variants: list[Variant]) -> str:
    """A master playlist (RFC 8216 4.3.4.2) naming each variant's media playlist."""
    lines = ["#EXTM3U", "#EXT-X-VERSION:3", "#EXT-X-INDEPENDENT-SEGMENTS"]
    for v in variants:
        codecs = f',CODECS="{v.codecs}"' if v.codecs else ""
        lines += [f"#EXT-X-STREAM-INF:BANDWIDTH={v.bandwidth}{codecs}", v.uri]
    return "\n".join(lines) + "\n"


def write_master(directory: Path, variants: list[Variant]) -> None:
    """Write ``master.m3u8`` beside the source playlist."""
    write_atomic(directory / "master.m3u8", master_playlist(variants).encode())
