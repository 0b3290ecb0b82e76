"""Ingest sources: where MPEG-TS bytes come from, and the guard that they are MPEG-TS at all.

A source spec is a path, ``-`` (stdin), an ``http(s)://`` URL of a TS stream (such as an
HDHomeRun stream URL), or ``hdhr://HOST[:PORT]/<GuideNumber>``.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from ec_node.errors import BadInputError
from ec_node.ts.chunker import Chunk, Chunker
from ec_node.ts.packets import PACKET_SIZE, PCR_HZ, PacketFramer, read_pcr

log = logging.getLogger(__name__)

READ_SIZE = 256 * 1024
# Give up when this much input has passed without sync, or without a PAT/PMT naming a video PID.
NO_SYNC_LIMIT = 2 * 1024 * 1024
NO_VIDEO_LIMIT = 16 * 1024 * 1024
MAX_PCR_STEP_S = 2.0


@dataclass(frozen=True)
class SourceSpec:
    kind: str  # "file" | "stdin" | "url" | "hdhr"
    locator: str
    host: str | None = None
    channel: str | None = None


def parse_source(spec: str) -> SourceSpec:
    if spec == "-":
        return SourceSpec("stdin", "-")
    if spec.startswith(("http://", "https://")):
        return SourceSpec("url", spec)
    if spec.startswith("hdhr://"):
        rest = spec[len("hdhr://") :]
        host, _, channel = rest.partition("/")
        if not host or not channel:
            from ec_node.errors import UsageError

            raise UsageError(f"bad hdhr source {spec!r}: expected hdhr://HOST[:PORT]/<GuideNumber>")
        return SourceSpec("hdhr", spec, host=host, channel=channel)
    return SourceSpec("file", spec)


def read_file(path: Path, read_size: int = READ_SIZE) -> Iterator[bytes]:
    try:
        f = path.open("rb")
    except FileNotFoundError:
        raise BadInputError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise BadInputError(f"{path}: is a directory") from None
    except PermissionError:
        raise BadInputError(f"{path}: permission denied") from None
    with f:
        while True:
            data = f.read(read_size)
            if not data:
                return
            yield data


def read_stdin(read_size: int = READ_SIZE) -> Iterator[bytes]:
    stream = sys.stdin.buffer
    while True:
        data = stream.read1(read_size) if hasattr(stream, "read1") else stream.read(read_size)
        if not data:
            return
        yield data


def read_url(url: str, duration_s: float | None = None) -> Iterator[bytes]:
    import urllib.error
    import urllib.request

    from ec_node.errors import UnreachableError

    try:
        resp = urllib.request.urlopen(url, timeout=15)
    except urllib.error.HTTPError as e:
        raise BadInputError(f"{url}: HTTP {e.code} {e.reason}") from None
    except (urllib.error.URLError, OSError) as e:
        raise UnreachableError(f"{url}: {getattr(e, 'reason', e)}") from None
    with resp:
        deadline = None if duration_s is None else time.monotonic() + duration_s
        while True:
            try:
                data = resp.read1(READ_SIZE)
            except OSError:
                return  # the server closing mid-body is an end of stream
            if not data:
                return
            yield data
            if deadline is not None and time.monotonic() >= deadline:
                return


def open_source(spec: str, duration_s: float | None = None) -> Iterator[bytes]:
    """Bytes of the source, as they arrive."""
    s = parse_source(spec)
    if s.kind == "stdin":
        return read_stdin()
    if s.kind == "file":
        return read_file(Path(s.locator))
    if s.kind == "url":
        return read_url(s.locator, duration_s)
    from ec_node.hdhr.client import HdhrClient

    assert s.host is not None and s.channel is not None
    return HdhrClient(s.host).open_stream(s.channel, duration_s)


def pace_by_pcr(reads: Iterable[bytes], speed: float = 1.0) -> Iterator[bytes]:
    """Release reads no faster than the stream's own PCR clock (``--realtime`` for files).

    Reads may split packets anywhere; PCRs are taken from aligned packets only. A PCR that
    jumps back, or ahead by more than MAX_PCR_STEP_S, restarts the clock (a loop or a splice).
    """
    framer = PacketFramer()
    t0 = 0.0
    pcr0: int | None = None
    last = 0
    for data in reads:
        for run in framer.feed(data):
            d = run.data
            for off in range(0, len(d), PACKET_SIZE):
                pcr = read_pcr(d, off)
                if pcr is None:
                    continue
                if pcr0 is None or pcr < last or pcr - last > MAX_PCR_STEP_S * PCR_HZ:
                    pcr0, t0 = pcr, time.monotonic()
                last = pcr
        if pcr0 is not None:
            delay = t0 + (last - pcr0) / PCR_HZ / speed - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        yield data


class GuardedChunker:
    """A :class:`Chunker` that fails clearly when its input is not usable MPEG-TS."""

    def __init__(self, chunk_ms: int, name: str = "input") -> None:
        self.chunker = Chunker(chunk_ms)
        self.name = name
        self.bytes_in = 0

    def feed(self, data: bytes) -> list[Chunk]:
        self.bytes_in += len(data)
        out = self.chunker.feed(data)
        self._check(final=False)
        return out

    def flush(self) -> list[Chunk]:
        out = self.chunker.flush()
        self._check(final=True)
        return out

    def _check(self, final: bool) -> None:
        ch = self.chunker
        if ch.packets_seen == 0 and (final or self.bytes_in > NO_SYNC_LIMIT):
            if self.bytes_in == 0:
                raise BadInputError(f"{self.name}: empty input")
            raise BadInputError(f"{self.name}: not an MPEG-TS stream (no 0x47 sync at 188-byte spacing)")
        if ch.info.video_pid is None and (final or self.bytes_in > NO_VIDEO_LIMIT) and ch.packets_seen:
            if ch.info.pat is None:
                raise BadInputError(f"{self.name}: MPEG-TS without a PAT")
            raise BadInputError(f"{self.name}: MPEG-TS has no video PID in its PMT")


def chunks_of(reads: Iterable[bytes], chunk_ms: int, name: str = "input") -> Iterator[Chunk]:
    g = GuardedChunker(chunk_ms, name)
    for data in reads:
        yield from g.feed(data)
    yield from g.flush()


__all__ = ["SourceSpec", "parse_source", "open_source", "pace_by_pcr", "chunks_of", "GuardedChunker"]
