"""Everything a node makes locally of one channel's verified chunks: source HLS, browser rendition, master.

``index.m3u8`` and its segments are the verified chunks themselves. When the source is not
browser-playable (MPEG-2 video, AC-3 audio: ATSC 1.0) a browser rendition (H.264 + AAC, one
segment per chunk, same indices and durations) goes to ``browser/``, and ``master.m3u8`` names
both. The rendition is made only from verified bytes and never leaves this machine.
Progress is told as events (``channel``, ``browser_rendition``, ``segment``, ``rendition``,
``rendition_skipped``) through ``emit``: the same objects ``--json`` prints and the watch server reads.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ec_node.pipeline.hls import HlsSink, Variant, write_master
from ec_node.ts.errors import TsError
from ec_node.ts.inspect import ProbedChannel, probe_channels

if TYPE_CHECKING:
    from ec_node.pipeline.rendition import RenditionWorker

log = logging.getLogger(__name__)

RENDITION_MODES = ("auto", "always", "off")
BROWSER_DIR = "browser"
#: chunks waiting for the rendition are held in memory up to this (~13 chunks of 1080i): a replay faster
#: than the transcoder gets a whole rendition while it fits, then skips (live input never comes near)
RENDITION_BUFFER_BYTES = 64 << 20
#: RFC 6381 names for what an HDHomeRun lineup calls the codecs (players skip variants they cannot play)
_CODECS = {"MPEG2": "mp4v.61", "H264": "avc1.640028", "HEVC": "hvc1.1.6.L120.90",
           "AC3": "ac-3", "EAC3": "ec-3", "AAC": "mp4a.40.2"}  # fmt: skip
Emit = Callable[[dict[str, Any]], None]


def _codecs(*names: str | None) -> str | None:
    known = [_CODECS[n] for n in names if n in _CODECS]
    return ",".join(known) or None


def _bandwidth(nbytes: int, duration_ms: int) -> int:
    return int(nbytes * 8 * 1000 / max(duration_ms, 1) * 1.25)  # a first segment's rate, with headroom for peaks


class ChannelOutput:
    """The local products of one channel: written in order, each only after the chunk was verified."""

    def __init__(
        self, directory: Path, *, window: int, chunk_ms: int, rendition: str = "auto", emit: Emit | None = None
    ) -> None:
        self.dir = Path(directory)
        self.sink = HlsSink(self.dir, window=window, chunk_ms=chunk_ms)
        self.window, self.chunk_ms, self.mode = window, chunk_ms, rendition
        self.emit: Emit = emit or (lambda ev: None)
        self.channel: ProbedChannel | None = None
        self.browser: HlsSink | None = None
        self.worker: RenditionWorker | None = None
        self._variants: list[Variant] = []
        self._decided = False

    def write(self, index: int, data: bytes, duration_ms: int, received_at: float) -> None:
        """Write one verified chunk as a segment, tell it, and hand it to the rendition if there is one."""
        self.sink.write(index, data, duration_ms)
        if not self._decided:
            self._first(index, data, duration_ms)
        latency = round((time.monotonic() - received_at) * 1000, 2)  # object received -> segment on disk
        self.emit({"event": "segment", "chunk_index": index, "bytes": len(data), "duration_ms": duration_ms,
                   "latency_ms": latency})  # fmt: skip
        if self.worker is not None:
            self.worker.submit(index, data, duration_ms, received_at)

    def _first(self, index: int, data: bytes, duration_ms: int) -> None:
        """Learn the channel from the first chunk's PSIP and PMT, and decide on the rendition."""
        self._decided = True
        try:
            found = [c for c in probe_channels(data) if c.guide_number] or probe_channels(data)
        except TsError:
            found = []
        self.channel = found[0] if found else None
        ch = self.channel or ProbedChannel(0)
        self.emit({"event": "channel", "name": ch.guide_name, "guide_number": ch.guide_number,
                   "video_codec": ch.video_codec, "audio_codec": ch.audio_codec})  # fmt: skip
        self._variants = [Variant("index.m3u8", _bandwidth(len(data), duration_ms),
                                  _codecs(ch.video_codec, ch.audio_codec))]  # fmt: skip
        enabled = False
        if self.mode != "off":
            from ec_node.pipeline.rendition import RenditionWorker, Transcoder, wants_rendition  # PyAV: only if used

            enabled = wants_rendition(self.mode, data)
            if enabled:
                self.browser = HlsSink(self.dir / BROWSER_DIR, window=self.window, chunk_ms=self.chunk_ms, lock=False)
                room = max(3, RENDITION_BUFFER_BYTES // max(len(data), 1))
                self.worker = RenditionWorker(
                    Transcoder(), self._rendition_ready, on_skip=self._rendition_skipped, max_pending=room
                )
        self.emit({"event": "browser_rendition", "enabled": enabled, "mode": self.mode})
        write_master(self.dir, self._variants)

    def _rendition_ready(self, index: int, data: bytes, duration_ms: int, received_at: float) -> None:
        assert self.browser is not None
        first = self.browser.written == 0
        self.browser.write(index, data, duration_ms)
        if first:
            from ec_node.pipeline.rendition import CODECS

            self._variants.insert(0, Variant(f"{BROWSER_DIR}/index.m3u8", _bandwidth(len(data), duration_ms), CODECS))
            write_master(self.dir, self._variants)
        latency = round((time.monotonic() - received_at) * 1000, 2)  # object received -> rendition segment on disk
        self.emit({"event": "rendition", "chunk_index": index, "bytes": len(data), "latency_ms": latency})

    def _rendition_skipped(self, index: int, reason: str) -> None:
        self.emit({"event": "rendition_skipped", "chunk_index": index, "reason": reason})

    async def close(self) -> None:
        """Finish the rendition's pending work, end both playlists, release the directory."""
        try:
            if self.worker is not None:
                await self.worker.close()
            if self.browser is not None:
                self.browser.finish()
            self.sink.finish()
        finally:
            self.release()

    def release(self) -> None:
        """Let the output directory go (the lock), whatever happened; safe to call twice."""
        self.sink.close()
