"""Synthetic ATSC-like MPEG-TS made with PyAV, so tests and demos need neither a tuner nor system ffmpeg.

The muxer writes a CBR stream padded with nulls (PMT 0x30, video 0x31, audio 0x34, PCR every 30 ms);
PSIP (MGT/TVCT/STT on 0x1FFB) then replaces nulls, and the remaining nulls are stripped unless CBR
padding was asked for (an HDHomeRun sends a single program without nulls). Output is deterministic for
given options unless the STT is taken from the wall clock.
"""

from __future__ import annotations

import io
import os
import tempfile
import time
from dataclasses import dataclass, replace
from fractions import Fraction
from pathlib import Path
from typing import Any, Literal

import numpy as np

from ec_node import atomic
from ec_node.devkit.psip_insert import InsertStats, PsipPlan, insert_psip
from ec_node.errors import OutputError, UsageError
from ec_node.ts.errors import SectionError
from ec_node.ts.psip import ServiceLocation, ServiceLocationElement, VirtualChannel, build_tvct

PMT_PID = 0x30
VIDEO_PID = 0x31
AUDIO_PID = 0x34
ATSC_MUXRATE = 19_392_658
FIXED_STT_UNIX = 1_704_067_200  # 2024-01-01T00:00:00Z: same options -> byte-identical files
AUDIO_RATE = 48_000
MAX_OUTPUT_BYTES = 2 << 30  # generation is in memory (twice over, briefly): bound it
_FPS = {"29.97": Fraction(30000, 1001), "59.94": Fraction(60000, 1001), "30": Fraction(30)}
# PMT stream_type values ffmpeg writes (System A): MPEG-2 video, AC-3, H.264, AAC (ADTS)
_STREAM_TYPES = {"mpeg2": (0x02, 0x81), "h264": (0x1B, 0x0F)}


@dataclass(frozen=True)
class SynthOptions:
    """Everything that determines a synthetic stream's bytes (its repr also keys the media cache)."""

    codec: Literal["mpeg2", "h264"] = "mpeg2"  # mpeg2 = MPEG-2 + AC-3 (ATSC 1.0), h264 = H.264 + AAC
    duration_s: float = 10.0
    width: int = 1920
    height: int = 1080
    fps: Literal["29.97", "59.94", "30"] = "29.97"
    interlaced: bool = True
    gop_s: float = 0.5
    closed_gop: bool = True
    null_padding: bool = False  # True: CBR padded with null packets; False: null-stripped like an HDHomeRun
    psip: bool = True
    channel_name: str = "WSYN-HD"
    major: int = 7
    minor: int = 1
    tsid: int = 0x0801
    program_number: int = 3
    # --- additions (defaults keep the contract's behaviour) ---
    stt_unix: int | None = FIXED_STT_UNIX  # STT time at the first packet; None = wall clock at generation
    video_bitrate: int | None = None  # None: chosen from size, frame rate and codec
    audio_bitrate: int | None = None  # None: AC-3 384k (HD) / 192k (small), AAC 128k
    muxrate: int | None = None  # None: 19.392658 Mb/s for HD sizes, proportionally lower for small ones
    audio_language: str = "eng"
    tone_hz: float = 1000.0


PRESETS: dict[str, dict[str, Any]] = {
    "1080i": {"width": 1920, "height": 1080, "fps": "29.97", "interlaced": True},
    "720p": {"width": 1280, "height": 720, "fps": "59.94", "interlaced": False},
    "small": {"width": 320, "height": 180, "fps": "29.97", "interlaced": False},
}


def preset_options(size: str, codec: Literal["mpeg2", "h264"] = "mpeg2", **overrides: Any) -> SynthOptions:
    """Options for a named size (1080i, 720p, small) or ``WxH`` (progressive 29.97), plus overrides."""
    if size in PRESETS:
        base = dict(PRESETS[size])
    else:
        try:
            w, h = (int(x) for x in size.lower().split("x"))
        except ValueError:
            raise UsageError(f"size must be 1080i, 720p, small or WxH, got {size!r}") from None
        base = {"width": w, "height": h, "fps": "29.97", "interlaced": False}
    base.update(codec=codec)
    base.update(overrides)
    return SynthOptions(**base)


@dataclass(frozen=True)
class SynthResult:
    """What a synthesis produced: path, size, format details and PSIP insertion counts."""

    path: Path
    bytes: int
    duration_s: float
    codec: str
    width: int
    height: int
    video_frames: int
    muxrate: int
    psip: InsertStats
    null_packets: int

    def summary(self) -> dict[str, Any]:
        """Plain-JSON summary the CLI prints."""
        return {
            "path": str(self.path),
            "bytes": self.bytes,
            "duration": self.duration_s,
            "codec": self.codec,
            "width": self.width,
            "height": self.height,
            "video_frames": self.video_frames,
            "muxrate": self.muxrate,
            "psip_sections": dict(self.psip.sections),
            "null_packets": self.null_packets,  # in the written file (0 when null-stripped)
        }


# --- parameter choices ---------------------------------------------------------------------------------


def _is_hd(o: SynthOptions) -> bool:
    return o.width * o.height >= 1280 * 720


def _video_bitrate(o: SynthOptions) -> int:
    if o.video_bitrate:
        return o.video_bitrate
    bpp = 0.25 if o.codec == "mpeg2" else 0.1
    lo = 600_000 if o.codec == "mpeg2" else 300_000
    return int(min(15_000_000, max(lo, o.width * o.height * float(_FPS[o.fps]) * bpp)))


def _audio_bitrate(o: SynthOptions) -> int:
    if o.audio_bitrate:
        return o.audio_bitrate
    if o.codec == "h264":
        return 128_000
    return 384_000 if _is_hd(o) else 192_000


def _muxrate(o: SynthOptions) -> int:
    if o.muxrate:
        return o.muxrate
    v, a = _video_bitrate(o), _audio_bitrate(o)
    if _is_hd(o) and 1.1 * (v + a) + 200_000 <= ATSC_MUXRATE:
        return ATSC_MUXRATE  # the real 8-VSB payload rate
    return int(2 * v + 1.3 * a + 200_000)  # headroom: nulls (PSIP slots) even next to big I-frames


def _gop_frames(o: SynthOptions) -> int:
    target = max(1, round(o.gop_s * float(_FPS[o.fps])))
    if o.codec == "mpeg2" and o.closed_gop:
        # ffmpeg's closed MPEG-2 GOP with 2 B-frames ends on a P: lengths of the form 3k+1 are kept exactly
        return 3 * max(1, round((target - 1) / 3)) + 1
    return target


def _validate(o: SynthOptions) -> None:
    if o.codec not in _STREAM_TYPES:
        raise UsageError(f"codec must be mpeg2 or h264, got {o.codec!r}")
    if o.fps not in _FPS:
        raise UsageError(f"fps must be one of {', '.join(_FPS)}, got {o.fps!r}")
    if not 0 < o.duration_s <= 3600:
        raise UsageError(f"duration must be in (0, 3600] seconds, got {o.duration_s}")
    if not (16 <= o.width <= 4096 and 16 <= o.height <= 2304) or o.width % 2 or o.height % 2:
        raise UsageError(f"size must be even and between 16x16 and 4096x2304, got {o.width}x{o.height}")
    if not 0 < o.gop_s <= 10:
        raise UsageError(f"GOP length must be in (0, 10] seconds, got {o.gop_s}")
    if not 1 <= o.program_number <= 0xFFFF or not 0 <= o.tsid <= 0xFFFF:
        raise UsageError("program number must be 1..65535 and TSID 0..65535")
    if o.stt_unix is not None and o.stt_unix < 315_964_800:
        raise UsageError("STT time must not be before the GPS epoch (1980-01-06)")
    if len(o.audio_language) not in (0, 3) or not o.audio_language.isascii():
        raise UsageError(f"audio language must be a 3-letter ISO-639 code, got {o.audio_language!r}")
    for name, v in (("video", o.video_bitrate), ("audio", o.audio_bitrate), ("mux", o.muxrate)):
        if v is not None and not 10_000 <= v <= 100_000_000:
            raise UsageError(f"{name} bitrate out of range: {v}")


def virtual_channel(o: SynthOptions) -> VirtualChannel:
    """The TVCT entry describing the synthesised program."""
    vt, at = _STREAM_TYPES[o.codec]
    return VirtualChannel(
        short_name=o.channel_name,
        major=o.major,
        minor=o.minor,
        program_number=o.program_number,
        channel_tsid=o.tsid,
        source_id=o.program_number,
        service_location=ServiceLocation(
            VIDEO_PID,
            (ServiceLocationElement(vt, VIDEO_PID), ServiceLocationElement(at, AUDIO_PID, o.audio_language)),
        ),
    )


# --- pictures and sound --------------------------------------------------------------------------------

_DIGITS = [  # 3x5 font
    "111101101101111",
    "010110010010111",
    "111001111100111",
    "111001111001111",
    "101101111001001",
    "111100111001111",
    "111100111101111",
    "111001001010010",
    "111101111101111",
    "111101111001111",
]
_GLYPHS = [np.array([int(c) for c in d], dtype=bool).reshape(5, 3) for d in _DIGITS]


class _Pattern:
    """A static colour gradient with a moving bar and a frame counter, built straight in YUV 4:2:0."""

    def __init__(self, w: int, h: int) -> None:
        self.w, self.h = w, h
        x = np.linspace(16, 235, w, dtype=np.float32)
        y = np.linspace(0, 40, h, dtype=np.float32)[:, None]
        cw, ch = w // 2, h // 2
        self.base = np.empty((h * 3 // 2, w), dtype=np.uint8)
        yp, up, vp = self._planes(self.base)
        yp[:] = np.clip(x[None, :] * 0.8 + y, 16, 235).astype(np.uint8)
        up[:] = np.linspace(64, 192, cw, dtype=np.float32)[None, :].astype(np.uint8)
        vp[:] = np.linspace(192, 64, ch, dtype=np.float32)[:, None].astype(np.uint8)
        self.bar = max(2, (w // 16) & ~1)
        self.scale = max(1, h // 60)
        self.glyphs = [np.where(np.kron(g, np.ones((self.scale, self.scale), dtype=bool)), 235, 16) for g in _GLYPHS]

    def _planes(self, arr: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Y, U, V views into one contiguous yuv420p buffer."""
        w, h = self.w, self.h
        flat = arr.reshape(-1)
        c = (w // 2) * (h // 2)
        return (
            flat[: w * h].reshape(h, w),
            flat[w * h : w * h + c].reshape(h // 2, w // 2),
            flat[w * h + c :].reshape(h // 2, w // 2),
        )

    def frame(self, i: int) -> np.ndarray:
        w, h = self.w, self.h
        arr = self.base.copy()
        y, u, v = self._planes(arr)
        x0 = (i * max(2, w // 90)) % (w - self.bar) & ~1
        y[:, x0 : x0 + self.bar] = 235
        u[:, x0 // 2 : (x0 + self.bar) // 2] = 128
        v[:, x0 // 2 : (x0 + self.bar) // 2] = 128
        s = self.scale
        cx = cy = 2 * s
        for ch in f"{i:06d}":
            g = self.glyphs[int(ch)]
            if cy + g.shape[0] <= h and cx + g.shape[1] <= w:
                y[cy : cy + g.shape[0], cx : cx + g.shape[1]] = g
            cx += 4 * s
        return arr


def _tone(start: int, n: int, hz: float) -> np.ndarray:
    t = (np.arange(start, start + n, dtype=np.float64)) / AUDIO_RATE
    beep = (np.floor(t * 2) % 2 == 0).astype(np.float64)  # 0.5 s on, 0.5 s off: audible sync marks
    s = (0.25 * np.sin(2 * np.pi * hz * t) * (0.3 + 0.7 * beep)).astype(np.float32)
    return np.stack([s, s])


# --- encode --------------------------------------------------------------------------------------------


def _encode(o: SynthOptions, muxrate: int) -> tuple[bytes, int]:
    import av  # deferred: PyAV is heavy and only media generation needs it

    fps = _FPS[o.fps]
    gop = _gop_frames(o)
    vbr = _video_bitrate(o)
    buf = io.BytesIO()
    mux_opts = {
        "mpegts_pmt_start_pid": str(PMT_PID),
        "mpegts_start_pid": str(VIDEO_PID),
        "mpegts_service_id": str(o.program_number),
        "mpegts_transport_stream_id": str(o.tsid),
        "mpegts_service_type": "mpeg2_digital_hdtv" if o.codec == "mpeg2" else "advanced_codec_digital_hdtv",
        "pcr_period": "30",
        "pat_period": "0.1",
        "max_delay": "700000",  # as ffmpeg(1) -muxdelay 0.7: PES arrive before their DTS (T-STD)
        "muxrate": str(muxrate),
    }
    out = av.open(buf, "w", format="mpegts", options=mux_opts)
    try:
        out.metadata["service_name"] = o.channel_name
        out.metadata["service_provider"] = "SYNTH"
        flags = [] if o.codec == "h264" else (["+cgop"] if o.closed_gop else [])
        if o.interlaced:
            flags += ["+ilme", "+ildct"]
        vopts = {
            "g": str(gop),
            "bf": "2",
            "sc_threshold": "1000000000",
            "maxrate": str(vbr),
            "bufsize": str(max(vbr // 2, 400_000)),
        }
        if flags:
            vopts["flags"] = "".join(flags)
        if o.codec == "mpeg2":
            vcodec, acodec, aframe = "mpeg2video", "ac3", 1536
            vopts["minrate"] = str(vbr)
        else:
            vcodec, acodec, aframe = "libx264", "aac", 1024
            vopts["preset"] = "veryfast"
            # threads=1: x264's frame threading with VBV is not bit-reproducible, and caching needs that
            vopts["x264-params"] = (
                f"keyint={gop}:min-keyint={gop}:scenecut=0:open-gop={0 if o.closed_gop else 1}:threads=1"
            )
        v = out.add_stream(vcodec, rate=fps, options=vopts)
        assert isinstance(v, av.VideoStream)
        v.width, v.height, v.pix_fmt, v.bit_rate = o.width, o.height, "yuv420p", vbr
        v.id = VIDEO_PID
        a = out.add_stream(acodec, rate=AUDIO_RATE, layout="stereo")
        assert isinstance(a, av.AudioStream)
        a.bit_rate = _audio_bitrate(o)
        a.id = AUDIO_PID
        if o.audio_language:
            a.metadata["language"] = o.audio_language

        graph = None
        if o.interlaced:  # frames must carry "interlaced, top field first" for the encoder to signal TFF
            graph = av.filter.Graph()
            src = graph.add_buffer(width=o.width, height=o.height, format=av.VideoFormat("yuv420p"), time_base=1 / fps)
            sf = graph.add("setfield", "tff")
            sink = graph.add("buffersink")
            src.link_to(sf)
            sf.link_to(sink)
            graph.configure()

        pattern = _Pattern(o.width, o.height)
        nframes = max(1, round(o.duration_s * float(fps)))
        total_samples = round(nframes / fps * AUDIO_RATE)
        apts = 0
        for i in range(nframes):
            frame = av.VideoFrame.from_ndarray(pattern.frame(i), format="yuv420p")
            frame.pts = i
            frame.time_base = 1 / fps
            if graph is not None:
                graph.push(frame)
                pulled = graph.pull()
                assert isinstance(pulled, av.VideoFrame)
                frame = pulled
            for p in v.encode(frame):
                out.mux(p)
            until = min(total_samples, round((i + 1) / fps * AUDIO_RATE))
            while apts < until:
                af = av.AudioFrame.from_ndarray(_tone(apts, aframe, o.tone_hz), format="fltp", layout="stereo")
                af.sample_rate = AUDIO_RATE
                af.pts = apts
                af.time_base = Fraction(1, AUDIO_RATE)
                for p in a.encode(af):
                    out.mux(p)
                apts += aframe
        for p in v.encode(None):
            out.mux(p)
        for p in a.encode(None):
            out.mux(p)
    finally:
        out.close()
    return buf.getvalue(), nframes


def synthesize_bytes(opts: SynthOptions) -> tuple[bytes, SynthResult]:
    """Generate the stream in memory; the result's ``path`` is empty until written."""
    _validate(opts)
    plan = None
    if opts.psip:
        ch = virtual_channel(opts)
        try:
            build_tvct([ch])
        except SectionError as e:
            raise UsageError(f"bad channel parameters: {e}") from None
        start = opts.stt_unix if opts.stt_unix is not None else int(time.time())
        plan = PsipPlan(channels=(ch,), tsid=opts.tsid, stt_unix_start=start)
    muxrate = _muxrate(opts)
    if muxrate * opts.duration_s / 8 > MAX_OUTPUT_BYTES:
        raise UsageError(
            f"{opts.duration_s} s at {muxrate} b/s exceeds {MAX_OUTPUT_BYTES >> 20} MiB; use a shorter clip"
        )
    raw, nframes = _encode(opts, muxrate)
    data, stats = insert_psip(raw, plan, muxrate=muxrate, strip_nulls=not opts.null_padding)
    res = SynthResult(
        path=Path(),
        bytes=len(data),
        duration_s=float(nframes / _FPS[opts.fps]),
        codec=opts.codec,
        width=opts.width,
        height=opts.height,
        video_frames=nframes,
        muxrate=muxrate,
        psip=stats,
        null_packets=stats.nulls_left if opts.null_padding else 0,
    )
    return data, res


def _preflight(path: Path) -> None:
    if path.is_dir():
        raise OutputError(f"cannot write {path}: is a directory")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".probe", dir=path.parent)
        os.close(fd)
        os.unlink(tmp)
    except OSError as e:
        raise OutputError(f"cannot write {path}: {e.strerror or e}") from None


def write_atomic(path: Path, data: bytes) -> None:
    """Create the parent directory, then write ``path`` whole (see :mod:`ec_node.atomic`)."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputError(f"cannot write {path}: {e.strerror or e}") from None
    atomic.write_atomic(path, data)


def synthesize_to(path: Path, opts: SynthOptions) -> SynthResult:
    """Generate and write; returns what was written (the CLI prints its summary)."""
    path = Path(path)
    _preflight(path)  # fail fast, before seconds of encoding
    data, res = synthesize_bytes(opts)
    write_atomic(path, data)
    return replace(res, path=path)


def synthesize_preset(
    path: Path, size: str | None, codec: Literal["mpeg2", "h264"] = "mpeg2", **overrides: Any
) -> SynthResult:
    """CLI entry: a named size (default 1080i for MPEG-2, 720p for H.264) plus overrides, written to path."""
    if size is None:
        size = "1080i" if codec == "mpeg2" else "720p"
    return synthesize_to(path, preset_options(size, codec, **overrides))


def synthesize(path: Path, opts: SynthOptions) -> Path:
    """Write a synthetic ATSC-like transport stream to ``path`` and return the path."""
    return synthesize_to(path, opts).path
