"""Decode checks with PyAV (FFmpeg): does a chunk or an HLS playlist really play?

Used by tests and by the demo to prove output with a real decoder rather than by inspection.
FFmpeg's messages are collected from the ``libav`` logger, which PyAV feeds from every thread
(``av.logging.Capture`` misses messages from decoder threads).
"""

from __future__ import annotations

import io
import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import av
import av.logging

_LOCK = threading.RLock()  # av.logging's level is process-wide; nested use is fine


class _Collect(logging.Handler):
    def __init__(self, level: int) -> None:
        super().__init__(level)
        self.records: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record.getMessage().strip())


@contextmanager
def ffmpeg_messages(level: int = logging.ERROR) -> Iterator[list[str]]:
    """Collect FFmpeg log lines at ``level`` or worse while the block runs."""
    handler = _Collect(level)
    logger = logging.getLogger("libav")
    with _LOCK:
        prev = av.logging.get_level()
        prev_propagate = logger.propagate
        logger.propagate = False  # collected, not printed
        logger.addHandler(handler)
        av.logging.set_level(av.logging.WARNING if level <= logging.WARNING else av.logging.ERROR)
        try:
            yield handler.records
        finally:
            av.logging.set_level(prev)
            logger.removeHandler(handler)
            logger.propagate = prev_propagate


@dataclass
class DecodeReport:
    """What :func:`decode` saw: frame counts, codecs, whether video starts on a keyframe, FFmpeg errors."""

    video_frames: int = 0
    audio_frames: int = 0
    first_video_keyframe: bool | None = None
    video_codec: str | None = None
    audio_codec: str | None = None
    errors: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when at least one video frame decoded and no error was reported."""
        return not self.errors and self.video_frames > 0


def decode(source: bytes | Path | str, *, audio: bool = True) -> DecodeReport:
    """Decode every video (and audio) frame; report FFmpeg's error-level messages as errors."""
    rep = DecodeReport()
    target: object = io.BytesIO(source) if isinstance(source, bytes) else str(source)
    with ffmpeg_messages() as logs:
        try:
            _decode_into(rep, target, audio)
        except av.error.FFmpegError as e:
            rep.errors.append(f"{type(e).__name__}: {e}")
    rep.errors.extend(logs)
    return rep


def _decode_into(rep: DecodeReport, target: object, audio: bool) -> None:
    with av.open(target, "r") as c:
        if not c.streams.video:
            rep.errors.append("no video stream")
            return
        streams: list[av.stream.Stream] = list(c.streams.video[:1])
        if audio:
            streams += list(c.streams.audio[:1])
        rep.video_codec = c.streams.video[0].codec_context.name
        if c.streams.audio:
            rep.audio_codec = c.streams.audio[0].codec_context.name
        for packet in c.demux(*streams):
            for frame in packet.decode():
                if isinstance(frame, av.VideoFrame):
                    if rep.first_video_keyframe is None:
                        rep.first_video_keyframe = bool(frame.key_frame)
                    rep.video_frames += 1
                else:
                    rep.audio_frames += 1
