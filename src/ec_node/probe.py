"""Decode checks with PyAV (FFmpeg): does a chunk or an HLS playlist really play?

Used by tests and by the demo to prove output with a real decoder rather than by inspection.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path

import av
import av.logging


@dataclass
class DecodeReport:
    video_frames: int = 0
    audio_frames: int = 0
    first_video_keyframe: bool | None = None
    video_codec: str | None = None
    audio_codec: str | None = None
    errors: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors and self.video_frames > 0


def decode(source: bytes | Path | str, *, audio: bool = True) -> DecodeReport:
    """Decode every video (and audio) frame; collect FFmpeg's error-level log lines."""
    rep = DecodeReport()
    target: object = io.BytesIO(source) if isinstance(source, bytes) else str(source)
    prev_level = av.logging.get_level()
    av.logging.set_level(av.logging.ERROR)  # PyAV logs nothing by default; errors are what we check
    try:
        _decode_into(rep, target, audio)
    finally:
        av.logging.set_level(prev_level)
    return rep


def _decode_into(rep: DecodeReport, target: object, audio: bool) -> None:
    with av.logging.Capture() as logs:
        try:
            with av.open(target, "r") as c:
                streams: list[av.stream.Stream] = list(c.streams.video[:1])
                if audio:
                    streams += list(c.streams.audio[:1])
                if not c.streams.video:
                    rep.errors.append("no video stream")
                    return
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
        except av.error.FFmpegError as e:
            rep.errors.append(f"{type(e).__name__}: {e}")
    for level, _name, msg in logs:
        if level is not None and level <= av.logging.ERROR:
            rep.errors.append(msg.strip())
