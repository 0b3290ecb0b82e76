"""A browser rendition of verified chunks: each MPEG-2/AC-3 chunk becomes an H.264 + AAC HLS segment.

Why: ATSC 1.0 broadcasts MPEG-2 video and AC-3 audio, which no browser plays (hls.js: "Found no media";
MSE rejects ``ac-3``). A node that serves browsers therefore writes a second, local HLS rendition next
to the byte-exact source one. Segment N of the rendition is made from source chunk N alone and keeps
the source timestamps, so both renditions cover the same media time, segment for segment, and the
source's duration label is right for both. The rendition never reaches the network.

Design (all measured on the 2-core build box, see ``bench/bench_rendition.py``):

* **One segment per chunk, video independent.** Each chunk is demuxed and decoded on its own (it starts
  with PAT+PMT at a random-access picture), and a fresh libx264 encoder makes the segment, flushed at its
  end: the segment starts with an IDR carrying SPS/PPS in band and ends with the chunk's last picture, so
  latency is one chunk's transcode time, never a wait for the next chunk. Source PTS are kept, frame for
  frame (open-GOP leading B pictures that reference the previous chunk are dropped by the decoder, as
  any player of the source chunk drops them).
* **Audio continuous across contiguous chunks.** The audio decoder, the resampler (to 48 kHz stereo
  float) and one AAC-LC encoder live across chunks whose indices follow each other, so AAC priming
  happens once per run, not every 2 s (a fresh encoder per segment would start every segment with 1024
  samples of priming and an audible click). Samples are laid on a timeline taken from the source PTS:
  a small gap between chunks is filled with silence and an overlap is trimmed, so PTS never drift. The
  sound a chunk ends with but the encoder has not finished (under 1024 samples not yet a frame, plus
  the two frames the AAC encoder holds back) comes out with the next chunk and goes into the next
  segment with its own, correct PTS: a segment's audio starts up to 64 ms (3 AAC frames) before the
  chunk's own sound, and nothing plays twice or goes missing between contiguous segments. A
  non-contiguous index (a gap, a skip, a source discontinuity), a failed chunk or a chunk without audio
  resets this state: that run's last <= 64 ms of sound are dropped and the next segment starts with
  fresh priming. A PTS jump over 1 s inside a run restarts the encoder at the jump.
* **Deinterlace 1080i, output 720p.** ``bwdif`` in send-frame mode (one picture per frame, 29.97 fps)
  applied to frames flagged interlaced, then a bilinear scale to 1280x720 (height capped at 720, width
  from the display aspect); progressive and SD sources are only deinterlaced when flagged. Interlaced
  H.264 is a poor fit for browsers, and field-rate (59.94 fps) output would double the encoding cost.
  ``bwdif`` costs 2.2-2.6 ms per 1080i frame here, ``yadif`` 4.1-4.8 ms.
* **x264 ``veryfast``, CRF 23, VBV cap 4.5 Mb/s, High@4.0, no tune, threads auto.** Measured with
  ``bench/bench_rendition.py --mode flat`` (the whole path: demux, decode, filters, x264, AAC, mux,
  through the worker) on 30 s of the synthetic 1080i channel (a flat gradient and a bar: easy) and of
  ``--content textured`` (a panning texture with per-frame grain: harder than most broadcasts).
  Speed is media seconds per wall second; "chunk" is the slowest 2.1 s chunk's transcode time:

  ===========================  ==========================  ==========================
  output, preset (tune)        synthetic                   textured + grain
  ===========================  ==========================  ==========================
  720p veryfast (chosen)       3.3x, 0.7 s, 0.5 Mb/s       1.8-1.9x, 1.2-1.3 s, 2.9 Mb/s
  720p veryfast, yadif         3.1x                        1.7x
  720p veryfast (film)         3.2x                        1.8x
  720p veryfast (zerolatency)  3.3x, 1.0 Mb/s              2.2x, 3.7 Mb/s
  720p superfast               3.7x, 1.3 Mb/s              2.6x, 4.0 Mb/s
  720p faster                  2.5x                        1.3x
  1080p veryfast               2.1x                        0.7x
  1080p superfast              2.1x, 3.3 Mb/s              1.6x, 1.7 s, 7.8 Mb/s
  1080p ultrafast              3.7x, 2.5 Mb/s              2.8x, 8.2 Mb/s
  ===========================  ==========================  ==========================

  1080 output holds 1.5x on hard content only with superfast/ultrafast, at two to three times the bits
  and with chunks close to their own duration, so the output is 720p. ``veryfast`` keeps >= 1.5x with
  room on hard content (superfast is the knob for a busier box: :attr:`RenditionSettings.preset`).
  ``zerolatency`` drops B-frames and lookahead for a per-frame latency the per-segment design does not
  need; x264 thread counts 2-6 (or ``lookahead-threads``) made no measurable difference. Decode,
  deinterlace and scale (about 5 ms per 1080i frame) run in a helper thread, up to 8 pictures ahead of x264
  (``pipelined``): +10 % on the synthetic channel, none on the textured one, where x264 is the limit.

Errors are typed: a chunk that is not TS, has no decodable video, or fails in any codec raises
:class:`RenditionError` (and resets the cross-chunk state); isolated packets a decoder rejects are
concealed, as a player would, and counted in :attr:`Transcoder.concealed_packets`.

:class:`RenditionWorker` runs one :class:`Transcoder` in one thread, in order, so the event loop is
never blocked: PyAV releases the GIL in demux, decode, filter, encode and mux calls, and the per-frame
Python around them is small. Under pressure the oldest waiting chunk is skipped: the rendition may skip,
the source output never does.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import queue
import threading
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from typing import Protocol

import av
import numpy as np

from ec_node.ts.inspect import TsReport, codecs, inspect_ts
from ec_node.ts.packets import PACKET_SIZE
from ec_node.ts.pes import PTS_WRAP
from ec_node.ts.psi import Pmt

log = logging.getLogger(__name__)

RENDITION_MODES = ("auto", "always", "off")
MAX_CHUNK_BYTES = 64 * 1024 * 1024  # the chunker's own cap on one chunk
MAX_FRAMES = 1200  # pictures per chunk (20 s at 59.94): beyond that the input is not a chunk
PSI_PROBE_BYTES = 64 * PACKET_SIZE  # a chunk starts with PAT + PMT
SDT_PID = 0x0011
PTS_MARGIN = 10 * 90_000  # a segment starting closer than this to PTS 0 is timed one 2^33 cycle up
TB = Fraction(1, 90_000)  # MPEG-TS time base; all timestamps here are in it
AUDIO_RATE = 48_000
AAC_FRAME = 1024  # samples per AAC-LC frame
AAC_TICKS = AAC_FRAME * 90_000 // AUDIO_RATE  # 1920: exact at 48 kHz
AUDIO_TOLERANCE = 90  # ticks (1 ms): timestamp jitter below this is ignored
PREFETCH_FRAMES = 8  # pictures the decode thread may run ahead of x264
AUDIO_MAX_REPAIR = 90_000  # ticks (1 s): gaps/overlaps up to this are filled/trimmed, beyond it audio restarts


#: RFC 6381 codecs of every rendition segment, for a master playlist: H.264 High at level 4.0 (set
#: explicitly, so it holds for 720p59.94 sources too), AAC-LC
CODECS = "avc1.640028,mp4a.40.2"
X264_PROFILE = "high"
X264_LEVEL = "4.0"


class RenditionError(Exception):
    """A chunk could not be made into a rendition segment; the caller skips that segment."""


# --- which chunks need one ------------------------------------------------------------------------------


def _pmt(chunk: bytes) -> Pmt | None:
    """The PMT at the head of a chunk (the first program's, once both PAT and PMT were read)."""

    def first_program(r: TsReport) -> Pmt | None:  # the chunker follows the lowest program number
        return r.pmt_of(min(r.programs)) if r.programs else None

    return first_program(inspect_ts(chunk, max_bytes=PSI_PROBE_BYTES, until=lambda r: first_program(r) is not None))


def browser_playable(chunk: bytes) -> bool:
    """True when the chunk's PMT says H.264 video and AAC (ADTS or LATM) or no audio: browsers play it as is."""
    pmt = _pmt(chunk)
    if pmt is None:
        return False
    video, audio = codecs(pmt)
    return video == "H264" and audio in (None, "AAC")


def wants_rendition(mode: str, chunk: bytes) -> bool:
    """Whether to make a browser rendition of this chunk: ``auto`` (when not playable), ``always`` or ``off``."""
    if mode == "off":
        return False
    if mode == "always":
        return True
    if mode == "auto":
        return not browser_playable(chunk)
    raise ValueError(f"rendition mode must be one of {', '.join(RENDITION_MODES)}, got {mode!r}")


# --- the transcoder --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RenditionSettings:
    """Output choices; the defaults are the measured ones (see the module docstring)."""

    max_height: int = 720
    deinterlace: str | None = "bwdif"  # or "yadif"; None keeps interlaced frames as they are
    scale_flags: str = "bilinear"
    preset: str = "veryfast"
    tune: str | None = None
    crf: int = 23
    maxrate_kbps: int = 4500  # VBV cap: bounded segment sizes on hard content
    x264_threads: int = 0  # 0 = x264's choice (1.5 x cores)
    x264_params: str = ""  # extra x264 options, "key=value:key=value"
    pipelined: bool = True  # decode + filter in a helper thread while x264 encodes
    audio_bitrate: int = 128_000


def _signed(ticks: float) -> float:
    """A 33-bit timestamp difference as the nearest signed value."""
    return (ticks + PTS_WRAP // 2) % PTS_WRAP - PTS_WRAP // 2


def _ticks(value: int, time_base: Fraction | None) -> int:
    """A timestamp in 90 kHz ticks."""
    return value if time_base is None or time_base == TB else round(value * time_base / TB)


class _AacEncoder:
    """An AAC-LC encoder whose parameters (AudioSpecificConfig included) segment containers can copy.

    It is the codec context of a stream in a container that is never written to, because
    ``add_stream_from_template`` copies a stream, and the TS muxer needs the config to write ADTS.
    """

    def __init__(self, bitrate: int) -> None:
        self._holder = av.open(io.BytesIO(), "w", format="mpegts")
        stream = self._holder.add_stream("aac", rate=AUDIO_RATE, layout="stereo")
        assert isinstance(stream, av.AudioStream)
        stream.bit_rate = bitrate
        stream.codec_context.time_base = TB
        self._holder.start_encoding()
        self.stream = stream

    def encode(self, frame: av.AudioFrame | None) -> list[av.Packet]:
        return list(self.stream.encode(frame))

    def close(self) -> None:
        with contextlib.suppress(av.error.FFmpegError, OSError):
            self._holder.close()


class _AudioRun:
    """One continuous audio run: decoder, resampler, a sample timeline on source PTS and one AAC encoder.

    Timeline: ``pts`` is the (unwrapped) 90 kHz time of the first sample in ``pending``. A decoded frame
    whose PTS is within 1 ms of where the timeline has got to is appended; a later one is preceded by
    silence, an earlier one trims what is not encoded yet; a jump over 1 s ends the encoder there and
    starts a new one at the frame (priming again).
    """

    def __init__(self, codec_name: str, bitrate: int) -> None:
        self.codec_name = codec_name
        self.bitrate = bitrate
        decoder = av.CodecContext.create(codec_name, "r")
        if not isinstance(decoder, av.AudioCodecContext):
            raise RenditionError(f"{codec_name} is not an audio codec")
        self.decoder = decoder
        self.resampler = av.AudioResampler(format="fltp", layout="stereo", rate=AUDIO_RATE)
        self.encoder = _AacEncoder(bitrate)
        self.pts: int | None = None
        self.pending = np.zeros((2, 0), dtype=np.float32)
        self.concealed = 0
        self.restarts = 0

    def close(self) -> None:
        self.encoder.close()

    def feed(self, packets: list[av.Packet], shift: int) -> list[av.Packet]:
        """Decode one chunk's audio packets; return the AAC packets that are complete now."""
        out: list[av.Packet] = []
        for pkt in packets:
            try:
                frames = self.decoder.decode(pkt)
            except av.error.InvalidDataError:
                self.concealed += 1  # the timeline fills what it lost with silence
                continue
            for frame in frames:
                if frame.pts is not None:
                    out += self._place(_ticks(frame.pts, frame.time_base) + shift)
                for resampled in self._resample(frame):
                    self.pending = np.concatenate((self.pending, resampled.to_ndarray()), axis=1)
                out += self._encode_full_frames()
        return out

    def _resample(self, frame: av.AudioFrame) -> list[av.AudioFrame]:
        try:
            return self.resampler.resample(frame)
        except ValueError:  # the source changed layout or rate (5.1 <-> stereo at a programme change)
            self.resampler = av.AudioResampler(format="fltp", layout="stereo", rate=AUDIO_RATE)
            return self.resampler.resample(frame)

    def _place(self, pts: int) -> list[av.Packet]:
        """Line the timeline up with a decoded frame at ``pts``; packets a restart flushed, if any."""
        if self.pts is None:
            self.pts = pts % PTS_WRAP
            return []
        d = _signed(pts - (self.pts + self.pending.shape[1] * 90_000 / AUDIO_RATE))
        if abs(d) <= AUDIO_TOLERANCE:
            return []
        if abs(d) > AUDIO_MAX_REPAIR:  # not a glitch: the source's clock moved; start again there
            flushed = self.encoder.encode(None)
            self.encoder.close()
            self.encoder = _AacEncoder(self.bitrate)
            self.pts, self.pending = pts % PTS_WRAP, self.pending[:, :0]
            self.restarts += 1
            return flushed
        n = round(abs(d) * AUDIO_RATE / 90_000)
        if d > 0:
            self.pending = np.concatenate((self.pending, np.zeros((2, n), dtype=np.float32)), axis=1)
        else:  # already-encoded samples stay; trim the rest
            self.pending = self.pending[:, : max(0, self.pending.shape[1] - n)]
        return []

    def _encode_full_frames(self) -> list[av.Packet]:
        out: list[av.Packet] = []
        while self.pending.shape[1] >= AAC_FRAME and self.pts is not None:
            frame = av.AudioFrame.from_ndarray(
                np.ascontiguousarray(self.pending[:, :AAC_FRAME]), format="fltp", layout="stereo"
            )
            self.pending = self.pending[:, AAC_FRAME:]
            frame.sample_rate = AUDIO_RATE
            frame.pts = self.pts
            frame.time_base = TB
            out += self.encoder.encode(frame)
            self.pts += AAC_TICKS
        return out


class Transcoder:
    """Makes one H.264 + AAC MPEG-TS segment per chunk with PyAV: bytes in, bytes out, no file I/O.

    One caller at a time (the worker thread). See the module docstring for the design.
    """

    def __init__(self, settings: RenditionSettings | None = None) -> None:
        self.settings = settings or RenditionSettings()
        self._audio: _AudioRun | None = None
        self._last_index: int | None = None
        self.concealed_packets = 0  # source packets a decoder rejected; picture or sound was concealed
        self.audio_restarts = 0  # audio runs ended (gap, failure, no audio, codec change, PTS jump)

    def reset(self) -> None:
        """Forget cross-chunk state (the audio run): the next segment starts afresh, as after a gap."""
        self._end_audio()
        self._last_index = None

    def segment(self, index: int, chunk: bytes) -> bytes:
        """The rendition segment of chunk ``index``; RenditionError when the chunk cannot be transcoded."""
        if self._last_index is None or index != self._last_index + 1:
            self._end_audio()  # a gap or a repeat: continuing the audio would put it at the wrong time
        self._last_index = None
        try:
            out = self._segment(chunk)
        except RenditionError:
            self._end_audio()
            raise
        except (av.error.FFmpegError, ValueError, TypeError, IndexError, OverflowError, MemoryError) as e:
            self._end_audio()
            raise RenditionError(f"transcode failed: {type(e).__name__}: {e}") from e
        self._last_index = index
        return out

    def _end_audio(self) -> None:
        if self._audio is not None:
            self.concealed_packets += self._audio.concealed
            self.audio_restarts += 1 + self._audio.restarts
            self._audio.close()
            self._audio = None

    # -- one chunk -----------------------------------------------------------------------------------------

    def _segment(self, chunk: bytes) -> bytes:
        if not chunk or len(chunk) % PACKET_SIZE or len(chunk) > MAX_CHUNK_BYTES:
            raise RenditionError(f"not a chunk: {len(chunk)} bytes")
        with av.open(io.BytesIO(chunk), "r", format="mpegts") as ic:
            if not ic.streams.video:
                raise RenditionError("no video stream in the chunk")
            vin = ic.streams.video[0]
            ain = ic.streams.audio[0] if ic.streams.audio else None
            vin.thread_type = "AUTO"
            vpkts: list[av.Packet] = []
            apkts: list[av.Packet] = []
            for pkt in ic.demux(*([vin] if ain is None else [vin, ain])):
                if pkt.size:  # size 0: the demuxer's end-of-stream marker
                    (vpkts if pkt.stream is vin else apkts).append(pkt)
            first = next((_ticks(p.pts, p.time_base) for p in vpkts if p.pts is not None), None)
            if first is None:
                raise RenditionError("no timed video in the chunk")
            # libavformat may unwrap PTS across the 33-bit wrap either way: put the chunk's first picture
            # back in [0, 2^33) and keep everything else relative to it. Close to 0, add 2^33, so audio
            # carried over from before the wrap, B-frame DTS and the PCR stay positive (libavformat would
            # otherwise shift the whole segment); the muxer writes timestamps mod 2^33 either way.
            base = first % PTS_WRAP
            if base < PTS_MARGIN:
                base += PTS_WRAP
            shift = base - first
            audio = self._audio_packets(ain, apkts, shift)
            return self._video(vin, vpkts, shift, base, audio)

    def _audio_packets(
        self, ain: av.AudioStream | None, packets: list[av.Packet], shift: int
    ) -> tuple[_AacEncoder, list[av.Packet]] | None:
        if ain is None:
            self._end_audio()
            return None
        name = ain.codec_context.name
        if self._audio is not None and self._audio.codec_name != name:
            self._end_audio()
        if self._audio is None:
            self._audio = _AudioRun(name, self.settings.audio_bitrate)
        out = self._audio.feed(packets, shift)
        return self._audio.encoder, out

    def _video(
        self,
        vin: av.VideoStream,
        packets: list[av.Packet],
        shift: int,
        ref: int,
        audio: tuple[_AacEncoder, list[av.Packet]] | None,
    ) -> bytes:
        buf = io.BytesIO()
        seg: _SegmentWriter | None = None
        pictures = self._pictures(vin, packets, shift)
        try:
            # decode + deinterlace + scale run in a helper thread, one frame ahead of x264 (measured: +25 %)
            for frame in _prefetch(pictures, PREFETCH_FRAMES) if self.settings.pipelined else pictures:
                if seg is None:  # the first filtered picture gives the output size
                    seg = _SegmentWriter(buf, frame, vin, self.settings, ref, audio)
                seg.encode(frame)
            if seg is None:
                raise RenditionError("no picture left after filtering")
            seg.finish()
            seg = None
        finally:
            if seg is not None:
                seg.abort()
        return _without_sdt(buf.getvalue())

    def _pictures(self, vin: av.VideoStream, packets: list[av.Packet], shift: int) -> Iterator[av.VideoFrame]:
        """Decoded, deinterlaced, scaled pictures of one chunk, in order, on the segment's time line."""
        sar = vin.codec_context.sample_aspect_ratio or Fraction(1, 1)
        graph: av.filter.Graph | None = None
        decoded = 0
        for pkt in [*packets, None]:  # None flushes the decoder
            try:
                frames = vin.decode(pkt)
            except av.error.InvalidDataError:
                self.concealed_packets += 1
                continue
            for frame in frames:
                if frame.pts is None:
                    continue
                decoded += 1
                if decoded > MAX_FRAMES:
                    raise RenditionError(f"more than {MAX_FRAMES} pictures in one chunk")
                frame.pts = _ticks(frame.pts, frame.time_base) + shift
                frame.time_base = TB
                if graph is None:
                    graph = _filter_graph(frame, sar, self.settings)
                graph.push(frame)
                yield from _pull(graph)
        if graph is None:
            raise RenditionError("no picture decoded")
        graph.push(None)
        yield from _pull(graph)


_DONE = object()


def _prefetch(items: Iterator[av.VideoFrame], depth: int) -> Iterator[av.VideoFrame]:
    """Run ``items`` in a helper thread, at most ``depth`` ahead; its exceptions re-raised here, in order."""
    q: queue.Queue[object] = queue.Queue(depth)
    stop = threading.Event()

    def put(x: object) -> bool:
        while not stop.is_set():
            try:
                q.put(x, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for x in items:
                if not put(x):
                    return
            put(_DONE)
        except BaseException as e:  # handed to the consumer
            put(e)

    t = threading.Thread(target=produce, name="rendition-decode", daemon=True)
    t.start()
    try:
        while True:
            x = q.get()
            if x is _DONE:
                return
            if isinstance(x, BaseException):
                raise x
            assert isinstance(x, av.VideoFrame)
            yield x
    finally:
        stop.set()
        t.join()


class _SegmentWriter:
    """One output segment: a TS muxer, a fresh x264 encoder, and the audio packets of this chunk."""

    def __init__(
        self,
        buf: io.BytesIO,
        first: av.VideoFrame,
        vin: av.VideoStream,
        s: RenditionSettings,
        ref: int,
        audio: tuple[_AacEncoder, list[av.Packet]] | None,
    ) -> None:
        self.out = av.open(buf, "w", format="mpegts", container_options={"sdt_period": "3600"})  # one SDT: dropped
        try:
            opts = {"preset": s.preset, "crf": str(s.crf), "profile": X264_PROFILE, "level": X264_LEVEL}
            if s.tune:
                opts["tune"] = s.tune
            params = f"threads={s.x264_threads or 'auto'}:vbv-maxrate={s.maxrate_kbps}:vbv-bufsize={2 * s.maxrate_kbps}"
            opts["x264-params"] = f"{params}:{s.x264_params}" if s.x264_params else params
            v = self.out.add_stream("libx264", rate=vin.average_rate or Fraction(30000, 1001), options=opts)
            assert isinstance(v, av.VideoStream)
            v.width, v.height, v.pix_fmt = first.width, first.height, "yuv420p"
            ctx = v.codec_context
            ctx.time_base = TB
            ctx.sample_aspect_ratio = vin.codec_context.sample_aspect_ratio or Fraction(1, 1)
            ctx.color_range = first.color_range
            ctx.colorspace = first.colorspace
            ctx.color_primaries = first.color_primaries
            ctx.color_trc = first.color_trc
            self.video = v
            self.last_pts: int | None = None
            if audio is not None:
                encoder, packets = audio
                aout = self.out.add_stream_from_template(encoder.stream)
                for p in packets:
                    p.stream = aout
                    _near(p, ref)
                    self.out.mux(p)
        except BaseException:
            self.abort()
            raise

    def encode(self, frame: av.VideoFrame) -> None:
        if frame.pts is None or (self.last_pts is not None and frame.pts <= self.last_pts):
            return  # x264 needs strictly increasing PTS
        self.last_pts = frame.pts
        frame.pict_type = av.video.frame.PictureType.NONE  # let x264 choose; an I here would force a keyframe
        self.out.mux(self.video.encode(frame))

    def finish(self) -> None:
        self.out.mux(self.video.encode(None))
        self.out.close()

    def abort(self) -> None:
        with contextlib.suppress(av.error.FFmpegError, OSError, ValueError):
            self.out.close()


def _filter_graph(frame: av.VideoFrame, sar: Fraction, s: RenditionSettings) -> av.filter.Graph:
    """buffer -> deinterlace (frames flagged interlaced) -> scale to the output size -> yuv420p -> sink."""
    g = av.filter.Graph()
    chain = [
        g.add(
            "buffer",
            video_size=f"{frame.width}x{frame.height}",
            pix_fmt=str(frame.format.name),
            time_base=str(TB),
            pixel_aspect=f"{sar.numerator}/{sar.denominator}",
        )
    ]
    if s.deinterlace:
        chain.append(g.add(s.deinterlace, mode="send_frame", parity="auto", deint="interlaced"))
    w, h = output_size(frame.width, frame.height, s.max_height)
    if (w, h) != (frame.width, frame.height):
        chain.append(g.add("scale", width=str(w), height=str(h), flags=s.scale_flags))
    chain.append(g.add("format", pix_fmts="yuv420p"))
    chain.append(g.add("buffersink"))
    for a, b in zip(chain, chain[1:], strict=False):
        a.link_to(b)
    g.configure()
    return g


def output_size(width: int, height: int, max_height: int = 720) -> tuple[int, int]:
    """The rendition's picture size: height capped at ``max_height``, width following (even), aspect kept."""
    if height <= max_height:
        return width & ~1, height & ~1
    return max(2, round(width * max_height / height / 2) * 2), max_height & ~1


def _without_sdt(data: bytes) -> bytes:
    """Drop the DVB SDT libavformat writes before the PAT: ATSC has none, players ignore it, and a
    segment that starts PAT, PMT is what the chunk rule promises for the source too."""
    n = len(data) // PACKET_SIZE
    arr = np.frombuffer(data, dtype=np.uint8, count=n * PACKET_SIZE).reshape(n, PACKET_SIZE)
    pids = ((arr[:, 1] & 0x1F).astype(np.uint16) << 8) | arr[:, 2]
    keep = pids != SDT_PID
    return data if keep.all() else arr[keep].tobytes()


def _pull(graph: av.filter.Graph) -> list[av.VideoFrame]:
    out: list[av.VideoFrame] = []
    while True:
        try:
            f = graph.pull()
        except (av.error.BlockingIOError, av.error.EOFError):
            return out
        assert isinstance(f, av.VideoFrame)
        out.append(f)


def _near(pkt: av.Packet, ref: int) -> None:
    """Put an audio packet's timestamps (on the unwrapped audio timeline) next to the segment's video."""
    tb = pkt.time_base
    for attr in ("pts", "dts"):
        v = getattr(pkt, attr)
        if v is not None:
            setattr(pkt, attr, ref + int(_signed(_ticks(v, tb) - ref)))
    pkt.time_base = TB


# --- the asyncio shell -----------------------------------------------------------------------------------


class SegmentMaker(Protocol):
    """What the worker drives: a :class:`Transcoder`, or a stand-in in tests."""

    def segment(self, index: int, chunk: bytes) -> bytes:
        """The rendition segment of one chunk; RenditionError when it cannot be made."""
        ...


WriteSegment = Callable[[int, bytes, int, float], None]  # (index, segment, duration_ms, received_at)
OnSkip = Callable[[int, str], None]  # (index, reason)


@dataclass
class _Job:
    index: int
    chunk: bytes
    duration_ms: int
    received_at: float


class RenditionWorker:
    """Runs a transcoder in one worker thread, in chunk order, and hands segments back on the event loop.

    Why a thread: a 2 s chunk takes most of a second to transcode, and PyAV releases the GIL while it
    works, so the loop (verification, the source HLS, the network) stays responsive. Bounded: at most
    ``max_pending`` chunks wait; when another arrives the oldest waiting one is skipped (counted in
    :attr:`skipped`, reported to ``on_skip``). The rendition may fall behind and skip; the source never
    waits for it. A chunk the transcoder rejects is logged in one line, counted in :attr:`errors` and
    reported to ``on_skip``; the worker goes on with the next.
    """

    def __init__(
        self,
        transcoder: SegmentMaker,
        write: WriteSegment,
        *,
        max_pending: int = 3,
        on_skip: OnSkip | None = None,
    ) -> None:
        if max_pending < 1:
            raise ValueError("max_pending must be at least 1")
        self._transcoder = transcoder
        self._write = write
        self._on_skip = on_skip
        self.max_pending = max_pending
        self.skipped = 0  # chunks dropped unmade because the worker was behind
        self.errors = 0  # chunks the transcoder rejected (or whose write failed)
        self.written = 0  # segments handed to ``write``
        self._cond = threading.Condition()
        self._pending: deque[_Job] = deque()
        self._closing = False
        self._closed = False
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._done: asyncio.Future[None] | None = None

    @property
    def pending(self) -> int:
        """Chunks waiting (not counting the one being transcoded)."""
        with self._cond:
            return len(self._pending)

    def submit(self, index: int, chunk: bytes, duration_ms: int, received_at: float) -> None:
        """Queue a chunk for its rendition; never blocks. Call on the event loop's thread."""
        if self._closing:
            raise RuntimeError("RenditionWorker is closed")
        self._start()
        dropped: _Job | None = None
        with self._cond:
            self._pending.append(_Job(index, chunk, duration_ms, received_at))
            if len(self._pending) > self.max_pending:
                dropped = self._pending.popleft()
            self._cond.notify()
        if dropped is not None:
            self.skipped += 1
            self._skip(dropped.index, "behind")

    async def close(self) -> None:
        """Finish every waiting chunk, deliver its segment, then stop the thread."""
        if self._closed:
            return
        self._closing = True
        if self._thread is None or self._done is None:
            self._closed = True
            return
        with self._cond:
            self._cond.notify()
        await self._done  # resolved by the thread after its last delivery was scheduled
        await asyncio.to_thread(self._thread.join)
        self._closed = True

    # -- loop side ----------------------------------------------------------------------------------------

    def _start(self) -> None:
        if self._thread is not None:
            return
        self._loop = asyncio.get_running_loop()
        self._done = self._loop.create_future()
        self._thread = threading.Thread(target=self._run, name="rendition", daemon=True)
        self._thread.start()

    def _skip(self, index: int, reason: str) -> None:
        if self._on_skip is not None:
            try:
                self._on_skip(index, reason)
            except Exception:
                log.exception("rendition on_skip callback failed")

    def _deliver(self, job: _Job, segment: bytes) -> None:
        try:
            self._write(job.index, segment, job.duration_ms, job.received_at)
        except Exception as e:
            self.errors += 1
            log.warning("rendition segment %d not written: %s: %s", job.index, type(e).__name__, e)
            self._skip(job.index, f"write failed: {e}")
            return
        self.written += 1

    def _failed(self, index: int, reason: str) -> None:
        self.errors += 1
        log.warning("rendition of chunk %d skipped: %s", index, reason)
        self._skip(index, f"error: {reason}")

    def _finished(self) -> None:
        if self._done is not None and not self._done.done():
            self._done.set_result(None)

    # -- worker thread ------------------------------------------------------------------------------------

    def _run(self) -> None:
        try:
            while True:
                with self._cond:
                    while not self._pending and not self._closing:
                        self._cond.wait()
                    if not self._pending:
                        return
                    job = self._pending.popleft()
                try:
                    segment = self._transcoder.segment(job.index, job.chunk)
                except RenditionError as e:
                    posted = self._post(self._failed, job.index, str(e))
                except Exception as e:  # a bug, not bad input: keep going, but say what it was
                    log.exception("rendition of chunk %d crashed", job.index)
                    posted = self._post(self._failed, job.index, f"{type(e).__name__}: {e}")
                else:
                    posted = self._post(self._deliver, job, segment)
                if not posted:
                    return  # the event loop is gone: nobody can take segments any more
        finally:
            self._post(self._finished)

    def _post(self, callback: Callable[..., None], *args: object) -> bool:
        """Run ``callback`` on the event loop's thread; False when that loop has been closed."""
        assert self._loop is not None
        try:
            self._loop.call_soon_threadsafe(callback, *args)
        except RuntimeError:
            return False
        return True
