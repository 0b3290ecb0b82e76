"""The browser rendition: which chunks need one, the PyAV transcoder on real media, and the worker shell.

Media is real (synthetic ATSC-like streams made with PyAV, chunked with the node's own chunker, the
segments decoded again with PyAV). The worker's pressure tests use a stand-in transcoder that blocks on a
threading.Event, so who waits for whom is decided by the test, never by timing.
"""

from __future__ import annotations

import asyncio
import io
import logging
import struct
import threading
from pathlib import Path

import av
import pytest

from ec_node.devkit.decode import decode
from ec_node.devkit.media_cache import cached_media
from ec_node.devkit.synth import preset_options
from ec_node.pipeline.rendition import (
    CODECS,
    RenditionError,
    RenditionSettings,
    RenditionWorker,
    Transcoder,
    browser_playable,
    output_size,
    wants_rendition,
)
from ec_node.ts.chunker import Chunk, Chunker
from ec_node.ts.packets import PACKET_SIZE, pid_of
from ec_node.ts.section import build_section, packetize_section

from support.tsbuild import pat

WRAP = 1 << 33
FRAME = 3003  # 29.97 fps in 90 kHz ticks
AAC_TICKS = 1920  # 1024 samples at 48 kHz
# small, interlaced-flagged MPEG-2 + AC-3 (exercises the deinterlacer without 1080i's cost)
INTERLACED_OPTS = preset_options("small", "mpeg2", duration_s=5.0, interlaced=True)


def _chunks(path: Path) -> list[Chunk]:
    ch = Chunker()
    return ch.feed(path.read_bytes()) + ch.flush()


def _frames(data: bytes, kind: str) -> list[av.frame.Frame]:
    with av.open(io.BytesIO(data)) as c:
        if kind == "video":
            return list(c.decode(video=0))
        return list(c.decode(audio=0)) if c.streams.audio else []


def _pts(data: bytes, kind: str) -> list[int]:
    return [f.pts for f in _frames(data, kind)]


def _transcode_all(chunks: list[Chunk], t: Transcoder | None = None) -> list[bytes]:
    t = t or Transcoder()
    return [t.segment(c.index, c.data) for c in chunks]


@pytest.fixture(scope="module")
def mpeg2_chunks(media_mpeg2: Path) -> list[Chunk]:
    return _chunks(media_mpeg2)


@pytest.fixture(scope="module")
def mpeg2_segments(mpeg2_chunks: list[Chunk]) -> list[bytes]:
    return _transcode_all(mpeg2_chunks)


# --- which chunks need a rendition -------------------------------------------------------------------------


def _pmt_chunk(*stream_types: int) -> bytes:
    """PAT + a PMT (program 1 on PID 0x100) listing ``stream_types`` on PIDs 0x101, 0x102, ..."""
    body = struct.pack(">HH", 0xE101, 0xF000)
    for i, st in enumerate(stream_types):
        body += bytes([st]) + struct.pack(">HH", 0xE000 | (0x101 + i), 0xF000)
    (pmt,) = packetize_section(0x100, build_section(0x02, 1, body, private_indicator=False), 0)
    return pat() + pmt


def test_browser_playable_from_real_media(mpeg2_chunks, media_h264):
    h264 = _chunks(media_h264)
    assert not browser_playable(mpeg2_chunks[0].data)
    assert all(browser_playable(c.data) for c in h264)
    assert wants_rendition("auto", mpeg2_chunks[0].data) and not wants_rendition("auto", h264[0].data)
    assert wants_rendition("always", h264[0].data) and not wants_rendition("off", mpeg2_chunks[0].data)
    with pytest.raises(ValueError):
        wants_rendition("sometimes", h264[0].data)


@pytest.mark.parametrize(
    ("types", "playable"),
    [
        ((0x1B, 0x0F), True),  # H.264 + AAC (ADTS)
        ((0x1B, 0x11), True),  # H.264 + AAC (LATM)
        ((0x1B,), True),  # H.264, no audio
        ((0x1B, 0x81), False),  # H.264 + AC-3
        ((0x1B, 0x87), False),  # H.264 + E-AC-3
        ((0x02, 0x0F), False),  # MPEG-2 + AAC
        ((0x02, 0x81), False),  # ATSC 1.0
        ((0x24, 0x0F), False),  # HEVC
        ((0x0F,), False),  # no video
    ],
)
def test_browser_playable_from_pmt_stream_types(types, playable):
    assert browser_playable(_pmt_chunk(*types)) is playable


def test_browser_playable_of_garbage_is_false():
    assert not browser_playable(b"")
    assert not browser_playable(bytes(range(256)) * 10)


# --- the transcoder on real media ------------------------------------------------------------------------


def test_every_chunk_becomes_an_h264_aac_segment_aligned_with_its_chunk(mpeg2_chunks, mpeg2_segments):
    assert len(mpeg2_chunks) >= 5
    for chunk, seg in zip(mpeg2_chunks, mpeg2_segments, strict=True):
        assert len(seg) % PACKET_SIZE == 0
        assert [pid_of(seg, 0), pid_of(seg, PACKET_SIZE)] == [0x0000, 0x1000]  # PAT, then PMT (at 0x1000)
        assert browser_playable(seg)
        rep = decode(seg)
        assert rep.ok, rep.errors
        assert (rep.video_codec, rep.audio_codec, rep.first_video_keyframe) == ("h264", "aac", True)
        assert rep.audio_frames > 0
        src, out = _pts(chunk.data, "video"), _pts(seg, "video")
        assert len(out) == len(src)
        assert abs(out[0] - src[0]) <= FRAME and abs(out[-1] - src[-1]) <= FRAME
        assert out[0] % WRAP == chunk.start_pts
        # same media time as the source segment's duration label
        assert abs((out[-1] - out[0] + FRAME) / 90 - chunk.duration_ms) <= FRAME / 90


def test_segments_start_with_an_idr_carrying_sps_pps(mpeg2_segments):
    for seg in mpeg2_segments:
        with av.open(io.BytesIO(seg)) as c:
            first = next(p for p in c.demux(video=0) if p.size)
            nal_types = {n[0] & 0x1F for n in bytes(first).split(b"\x00\x00\x01")[1:] if n}
            assert first.is_keyframe
            assert {5, 7, 8} <= nal_types  # IDR slice, SPS, PPS in band
            cc = c.streams.video[0].codec_context
            assert (cc.profile, cc.width, cc.height) == ("High", 320, 180)
    assert CODECS.startswith("avc1.6400") and CODECS.endswith("mp4a.40.2")


def test_concatenated_segments_decode_continuously(mpeg2_chunks, mpeg2_segments):
    whole = b"".join(mpeg2_segments)
    rep = decode(whole)
    assert rep.ok, rep.errors
    video = _pts(whole, "video")
    assert len(video) == sum(len(_pts(c.data, "video")) for c in mpeg2_chunks)
    assert all(b - a == FRAME for a, b in zip(video, video[1:], strict=False))
    # one AAC encoder across contiguous chunks: a single run of back-to-back frames, priming once
    audio = _pts(whole, "audio")
    assert all(abs(b - a - AAC_TICKS) <= 1 for a, b in zip(audio, audio[1:], strict=False))
    source_audio = [p for c in mpeg2_chunks for p in _pts(c.data, "audio")]
    assert abs(audio[0] - (source_audio[0] - AAC_TICKS)) <= 1  # priming frame just before the source's sound


def test_segments_hold_audio_of_their_own_time(mpeg2_chunks, mpeg2_segments):
    for chunk, seg in zip(mpeg2_chunks, mpeg2_segments, strict=True):
        src, out = _pts(chunk.data, "audio"), _pts(seg, "audio")
        # what the encoder still held at the previous chunk's end (or the priming frame) comes first:
        # under three AAC frames earlier than the chunk's own sound; nothing later than the chunk's sound
        assert src[0] - 3 * AAC_TICKS < out[0] <= src[0]
        assert out[-1] <= src[-1]


def test_a_gap_in_indices_restarts_audio_and_still_decodes(mpeg2_chunks):
    t = Transcoder()
    picked = [mpeg2_chunks[0], mpeg2_chunks[1], mpeg2_chunks[3], mpeg2_chunks[4]]
    segs = [t.segment(c.index, c.data) for c in picked]
    assert t.audio_restarts == 1  # the run ended at the gap; the new one is still open
    for c, seg in zip(picked, segs, strict=True):
        assert decode(seg).ok
        assert _pts(seg, "video")[0] == c.start_pts
    # after the gap the audio starts afresh at the chunk's own sound (priming frame first)
    src_audio = _pts(picked[2].data, "audio")
    assert abs(_pts(segs[2], "audio")[0] - (src_audio[0] - AAC_TICKS)) <= 1
    # a repeated index is not continuous either
    t.segment(picked[3].index, picked[3].data)
    assert t.audio_restarts == 2


@pytest.mark.parametrize(
    "garbage",
    [b"", b"\x00" * 1000, bytes(range(188)) * 40, b"\x47" + bytes(187), _pmt_chunk(0x02, 0x81)],
    ids=["empty", "unaligned", "noise", "one-packet", "psi-only"],
)
def test_garbage_raises_rendition_error_and_the_next_chunk_still_works(mpeg2_chunks, garbage):
    t = Transcoder()
    t.segment(mpeg2_chunks[0].index, mpeg2_chunks[0].data)
    with pytest.raises(RenditionError):
        t.segment(mpeg2_chunks[1].index, garbage)
    seg = t.segment(mpeg2_chunks[2].index, mpeg2_chunks[2].data)
    assert decode(seg).ok


def test_a_damaged_chunk_is_concealed_or_rejected_never_crashes(mpeg2_chunks):
    t = Transcoder()
    data = bytearray(mpeg2_chunks[1].data)
    for off in range(20 * PACKET_SIZE, len(data), 37 * PACKET_SIZE):
        data[off + 4 : off + PACKET_SIZE] = bytes(PACKET_SIZE - 4)  # zero payloads, headers kept
    try:
        seg = t.segment(mpeg2_chunks[1].index, bytes(data))
    except RenditionError:
        return
    assert _pts(seg, "video")


def test_open_gop_chunks_keep_every_picture_that_decodes(media_mpeg2_open_gop):
    chunks = _chunks(media_mpeg2_open_gop)[:3]
    for c, seg in zip(chunks, _transcode_all(chunks), strict=True):
        assert _pts(seg, "video") == _pts(c.data, "video")


def test_interlaced_source_is_deinterlaced_frame_for_frame():
    chunks = _chunks(cached_media(INTERLACED_OPTS))[:2]
    assert all(f.interlaced_frame for f in _frames(chunks[0].data, "video"))
    for c, seg in zip(chunks, _transcode_all(chunks), strict=True):
        frames = _frames(seg, "video")
        assert [f.pts for f in frames] == _pts(c.data, "video")  # send_frame mode: one picture per frame
        assert not any(f.interlaced_frame for f in frames)


def test_output_is_scaled_to_the_height_cap(mpeg2_chunks):
    assert output_size(1920, 1080) == (1280, 720)
    assert output_size(1280, 720) == (1280, 720)
    assert output_size(704, 480) == (704, 480)
    seg = Transcoder(RenditionSettings(max_height=90)).segment(mpeg2_chunks[0].index, mpeg2_chunks[0].data)
    with av.open(io.BytesIO(seg)) as c:
        assert (c.streams.video[0].codec_context.width, c.streams.video[0].codec_context.height) == (160, 90)


def test_an_h264_source_is_transcoded_when_asked(media_h264):
    chunks = _chunks(media_h264)[:2]
    for c, seg in zip(chunks, _transcode_all(chunks), strict=True):
        assert decode(seg).ok
        assert _pts(seg, "video") == _pts(c.data, "video")


def _shifted(data: bytes, offset: int) -> bytes:
    """The same stream remuxed with every timestamp moved by ``offset`` (the muxer writes them mod 2^33)."""
    buf = io.BytesIO()
    with av.open(io.BytesIO(data)) as ic, av.open(buf, "w", format="mpegts") as oc:
        streams = (ic.streams.video[0], ic.streams.audio[0])
        out = {s.index: oc.add_stream_from_template(s) for s in streams}
        for p in ic.demux(*streams):
            if p.dts is None:
                continue
            p.pts, p.dts = p.pts + offset, p.dts + offset
            p.stream = out[p.stream.index]
            oc.mux(p)
    return buf.getvalue()


def test_a_chunk_across_the_33_bit_pts_wrap(media_mpeg2, mpeg2_chunks):
    # move the stream so its PTS wrap falls inside the second chunk
    offset = WRAP - mpeg2_chunks[1].start_pts - 90_000
    ch = Chunker()
    chunks = ch.feed(_shifted(media_mpeg2.read_bytes(), offset)) + ch.flush()
    assert [c.index for c in chunks] == list(range(chunks[0].index, chunks[0].index + len(chunks)))
    t = Transcoder()
    segs = [t.segment(c.index, c.data) for c in chunks]
    assert t.audio_restarts == 0  # contiguous across the wrap: one audio run
    for c, seg in zip(chunks, segs, strict=True):
        assert decode(seg).ok
        assert [p % WRAP for p in _pts(seg, "video")] == [p % WRAP for p in _pts(c.data, "video")]
    audio = [p % WRAP for seg in segs for p in _pts(seg, "audio")]
    assert all((b - a) % WRAP in range(AAC_TICKS - 1, AAC_TICKS + 2) for a, b in zip(audio, audio[1:], strict=False))


# --- the worker ------------------------------------------------------------------------------------------


class _Gate:
    """A stand-in transcoder: returns b"seg<index>", fails on chosen indices, and can hold a chosen index."""

    def __init__(self, hold: int | None = None, fail: frozenset[int] = frozenset()) -> None:
        self.hold = hold
        self.fail = fail
        self.entered = threading.Event()  # the held index has started
        self.release = threading.Event()
        self.seen: list[int] = []
        self.threads: set[int] = set()

    def segment(self, index: int, chunk: bytes) -> bytes:
        self.seen.append(index)
        self.threads.add(threading.get_ident())
        if index == self.hold:
            self.entered.set()
            assert self.release.wait(30)
        if index in self.fail:
            raise RenditionError(f"bad chunk {index}")
        return b"seg%d" % index


class _Sink:
    def __init__(self) -> None:
        self.writes: list[tuple[int, bytes, int, float]] = []
        self.threads: set[int] = set()
        self.skips: list[tuple[int, str]] = []

    def write(self, index: int, data: bytes, duration_ms: int, received_at: float) -> None:
        self.writes.append((index, data, duration_ms, received_at))
        self.threads.add(threading.get_ident())

    def skip(self, index: int, reason: str) -> None:
        self.skips.append((index, reason))


def test_worker_keeps_order_runs_off_the_loop_and_close_drains():
    gate, sink = _Gate(), _Sink()

    async def main() -> RenditionWorker:
        w = RenditionWorker(gate, sink.write, on_skip=sink.skip, max_pending=100)
        for i in range(10):
            w.submit(i, b"chunk", 2000 + i, 100.0 + i)
        await w.close()
        return w

    loop_thread = threading.get_ident()
    w = asyncio.run(main())
    assert [x[0] for x in sink.writes] == list(range(10))
    assert sink.writes[3] == (3, b"seg3", 2003, 103.0)
    assert sink.threads == {loop_thread}  # write runs on the event loop's thread
    assert loop_thread not in gate.threads and len(gate.threads) == 1  # one worker thread
    assert (w.written, w.skipped, w.errors, sink.skips) == (10, 0, 0, [])


def test_worker_skips_the_oldest_waiting_chunk_under_pressure():
    gate, sink = _Gate(hold=0), _Sink()

    async def main() -> RenditionWorker:
        w = RenditionWorker(gate, sink.write, on_skip=sink.skip, max_pending=3)
        w.submit(0, b"c", 2000, 0.0)
        assert await asyncio.to_thread(gate.entered.wait, 30)  # chunk 0 is being transcoded, not waiting
        for i in range(1, 7):
            w.submit(i, b"c", 2000, 0.0)  # never blocks, however far behind the worker is
        assert w.pending == 3
        gate.release.set()
        await w.close()
        return w

    w = asyncio.run(main())
    assert [x[0] for x in sink.writes] == [0, 4, 5, 6]
    assert gate.seen == [0, 4, 5, 6]
    assert w.skipped == 3 and sink.skips == [(1, "behind"), (2, "behind"), (3, "behind")]


def test_worker_counts_a_typed_error_logs_one_line_and_goes_on(caplog):
    gate, sink = _Gate(fail=frozenset({2})), _Sink()

    async def main() -> RenditionWorker:
        w = RenditionWorker(gate, sink.write, on_skip=sink.skip, max_pending=10)
        for i in range(4):
            w.submit(i, b"c", 2000, 0.0)
        await w.close()
        return w

    with caplog.at_level(logging.WARNING, logger="ec_node.pipeline.rendition"):
        w = asyncio.run(main())
    assert [x[0] for x in sink.writes] == [0, 1, 3]
    assert (w.errors, w.skipped, w.written) == (1, 0, 3)
    assert sink.skips == [(2, "error: bad chunk 2")]
    lines = [r for r in caplog.records if r.name == "ec_node.pipeline.rendition"]
    assert len(lines) == 1 and "bad chunk 2" in lines[0].getMessage() and lines[0].exc_info is None


def test_worker_close_without_work_and_submit_after_close():
    async def main() -> None:
        w = RenditionWorker(_Gate(), _Sink().write)
        await w.close()
        await w.close()
        with pytest.raises(RuntimeError):
            w.submit(0, b"c", 2000, 0.0)

    asyncio.run(main())


def test_worker_with_the_real_transcoder(mpeg2_chunks):
    sink = _Sink()

    async def main() -> RenditionWorker:
        w = RenditionWorker(Transcoder(), sink.write, max_pending=len(mpeg2_chunks) + 1)
        for c in mpeg2_chunks:
            w.submit(c.index, c.data, c.duration_ms, 0.0)
        w.submit(mpeg2_chunks[-1].index + 1, b"\x47" * PACKET_SIZE, 2000, 0.0)  # garbage: counted, not raised
        await w.close()
        return w

    w = asyncio.run(main())
    assert [x[0] for x in sink.writes] == [c.index for c in mpeg2_chunks]
    assert [x[2] for x in sink.writes] == [c.duration_ms for c in mpeg2_chunks]
    assert w.errors == 1 and w.written == len(mpeg2_chunks)
    assert decode(b"".join(x[1] for x in sink.writes)).ok
