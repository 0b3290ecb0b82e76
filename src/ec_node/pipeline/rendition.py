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
  AAC frames that are not complete at the end of a chunk (under 1024 samples, plus the one packet the
  encoder holds back) come out with the next chunk and go into the next segment with their own,
  correct PTS; a segment's audio therefore starts up to ~43 ms before its video. A non-contiguous index
  (a gap, a skip, a source discontinuity), a failed chunk or a big PTS jump resets this state: that
  run's last ~43 ms of audio are dropped and the next segment starts with fresh priming.
* **Deinterlace 1080i, output 720p.** ``bwdif`` in send-frame mode (one picture per frame, 29.97 fps)
  applied to frames flagged interlaced, then a bilinear scale to 1280x720 (height capped at 720, width
  from the display aspect); progressive and SD sources are only deinterlaced when flagged. Interlaced
  H.264 is a poor fit for browsers, and field-rate (59.94 fps) output would double the encoding cost.
  ``bwdif`` measured 2.2-2.6 ms per 1080i frame against 4.1-4.8 ms for ``yadif``.
* **x264 ``veryfast``, CRF 23, VBV cap 4.5 Mb/s, no tune, threads auto.** Flat out, with AAC, on the
  synthetic 1080i channel (easy to compress, 0.5 Mb/s at 720p) and on a harder textured, grainy 1080i
  clip (3.6 Mb/s at 720p):

  ==========================  ===========  ==============  =========================
  output, preset              synthetic    textured+grain  note
  ==========================  ===========  ==============  =========================
  720p veryfast (chosen)      3.2-4.1x RT  2.0-2.5x RT     p99 chunk latency ~1.1 s
  720p superfast              3.0-3.6x     3.2-3.5x        ~15 % more bits, worse
  720p faster                 2.3x         1.5-1.6x        too close to 1.5x
  1080p superfast             2.0-2.8x     2.0-2.1x        14.6 Mb/s on the hard clip
  1080p ultrafast             3.6-4.2x     2.5-2.7x        26.5 Mb/s on the hard clip
  ==========================  ===========  ==============  =========================

  1080 output meets 1.5x only with presets whose bit rate is unusable for a local web rendition, so
  the output is 720p. ``tune`` zerolatency/film and x264 thread counts 2-4 changed little (within the
  box's noise); ``zerolatency`` would cost compression for a per-frame latency the per-segment design
  does not need. Where the decode, the filters and x264 spend the time (ms per frame, hard clip):
  decode 2.5, bwdif + scale 2.3, x264 10.

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
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from typing import Protocol

import av
import numpy as np

from ec_node.ts.inspect import codecs, inspect_ts
from ec_node.ts.packets import PACKET_SIZE
from ec_node.ts.pes import PTS_WRAP
from ec_node.ts.psi import Pmt

log = logging.getLogger(__name__)

RENDITION_MODES = ("auto", "always", "off")
MAX_CHUNK_BYTES = 64 * 1024 * 1024  # the chunker's own cap on one chunk
MAX_FRAMES = 1200  # pictures per chunk (20 s at 59.94): beyond that the input is not a chunk
PSI_PROBE_BYTES = 64 * PACKET_SIZE  # a chunk starts with PAT + PMT
TB = Fraction(1, 90_000)  # MPEG-TS time base; all timestamps here are in it
AUDIO_RATE = 48_000
AAC_FRAME = 1024  # samples per AAC-LC frame
AAC_TICKS = AAC_FRAME * 90_000 // AUDIO_RATE  # 1920: exact at 48 kHz
AUDIO_TOLERANCE = 90  # ticks (1 ms): timestamp jitter below this is ignored
AUDIO_MAX_REPAIR = 90_000  # ticks (1 s): gaps/overlaps up to this are filled/trimmed, beyond it audio restarts


class RenditionError(Exception):
    """A chunk could not be made into a rendition segment; the caller skips that segment."""


# --- which chunks need one ------------------------------------------------------------------------------


def _pmt(chunk: bytes) -> Pmt | None:
    """The PMT at the head of a chunk (the first program's, once both PAT and PMT were read)."""
    report = inspect_ts(chunk, max_bytes=PSI_PROBE_BYTES, until=lambda r: bool(r.programs) and bool(r.pmts))
    if not report.programs:
        return None
    return report.pmt_of(min(report.programs))


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
    audio_bitrate: int = 128_000


