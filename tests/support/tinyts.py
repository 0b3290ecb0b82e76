"""A tiny MPEG-2 + AC-3 TS made with PyAV, for the HDHomeRun and emulator tests.

Small on purpose (320x240, 3 s) so unpaced streams and loops are cheap; it has no PSIP,
so the emulator falls back to its default channel 7.1 "WSYN-HD".
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np


def make_ts(path: Path, seconds: float = 3.0, fps: int = 25) -> Path:
    with av.open(str(path), "w", format="mpegts") as out:
        v = out.add_stream("mpeg2video", rate=fps)
        v.width, v.height, v.pix_fmt = 320, 240, "yuv420p"
        v.gop_size = fps // 2
        v.bit_rate = 800_000
        a = out.add_stream("ac3", rate=48000)
        a.bit_rate = 96_000
        a.layout = "stereo"
        n = int(seconds * fps)
        samples_per_frame = 1536
        audio_frames = int(seconds * 48000 / samples_per_frame)
        t = 0
        for i in range(n):
            img = np.full((240, 320, 3), (i * 7) % 256, dtype=np.uint8)
            img[:, (i * 4) % 320] = 255
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            frame.pts = i
            frame.time_base = Fraction(1, fps)
            for pkt in v.encode(frame):
                out.mux(pkt)
            while t < audio_frames and t * samples_per_frame * fps <= (i + 1) * 48000:
                tone = np.sin(np.arange(samples_per_frame) * 0.05 + t).astype(np.float32)
                af = av.AudioFrame.from_ndarray(np.stack([tone, tone]), format="fltp", layout="stereo")
                af.sample_rate = 48000
                af.pts = t * samples_per_frame
                af.time_base = Fraction(1, 48000)
                for pkt in a.encode(af):
                    out.mux(pkt)
                t += 1
        for s in (v, a):
            for pkt in s.encode(None):
                out.mux(pkt)
    return path
