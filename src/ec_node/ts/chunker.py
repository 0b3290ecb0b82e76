"""The deterministic chunk rule: every node cuts the same broadcast into the same bytes.

A chunk starts at a video PES that begins a random-access picture whose PTS lies in a
different ``chunk_ms`` window (``floor(PTS_ms / chunk_ms)``) than the previous random-access
picture. The decision depends only on the stream, never on when a node joined or how its
reads were sized, so two nodes produce byte-identical chunks for every chunk both see whole.
A chunk is the latest PAT packet, the latest PMT packets, then every packet from its cut
point up to the next one, unchanged. See docs/PROTOCOL.md section 1.

Pure: feed bytes, get :class:`Chunk` objects. No I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import numpy as np

from ec_node.ts.packets import NULL_PID, PACKET_SIZE, PacketFramer, pid_of
from ec_node.ts.pes import PTS_WRAP, is_random_access, pes_pts
from ec_node.ts.psi import (
    PAT_PID,
    PSIP_PID,
    VIDEO_STREAM_TYPES,
    Pat,
    Pmt,
    PsiError,
    SectionCollector,
    parse_pat,
    parse_pmt,
)

DEFAULT_CHUNK_MS = 2000
MIN_CHUNK_MS = 100
MAX_CHUNK_MS = 60_000


def windows_per_timeline(chunk_ms: int) -> int:
    """How many chunk windows one 33-bit PTS cycle spans (the index stride per timeline epoch)."""
    ticks = 90 * chunk_ms
    return -(-PTS_WRAP // ticks)


@dataclass(frozen=True)
class Chunk:
    index: int  # timeline_epoch * windows_per_timeline + floor(PTS_ms / chunk_ms)
    data: bytes  # PAT + PMT + packets from the cut point, a multiple of 188 bytes
    start_pts: int  # raw 33-bit PTS of the first picture (90 kHz)
    duration_ms: int
    damaged: bool = False  # sync loss, continuity error or transport error inside this chunk


@dataclass
class StreamInfo:
    """What the chunker learned about the stream; used to derive stream ids."""

    pat: Pat | None = None
    pmt: Pmt | None = None
    program_number: int | None = None
    video_pid: int | None = None
    video_codec: str | None = None
    psip_sections: list[bytes] = field(default_factory=list)  # first few complete PSIP sections


@dataclass
class _Open:
    index: int
    start_pts: int
    parts: list[bytes]
    damaged: bool = False
    max_rel_pts: int = 0


class Chunker:
    """Feed MPEG-TS bytes of any read size; receive whole chunks as their end is seen."""

    def __init__(self, chunk_ms: int = DEFAULT_CHUNK_MS, *, max_chunk_bytes: int = 64 * 1024 * 1024) -> None:
        if not MIN_CHUNK_MS <= chunk_ms <= MAX_CHUNK_MS:
            raise ValueError(f"chunk_ms must be between {MIN_CHUNK_MS} and {MAX_CHUNK_MS}")
        self.chunk_ms = chunk_ms
        self._ticks = 90 * chunk_ms
        self._stride = windows_per_timeline(chunk_ms)
        self._max_bytes = max_chunk_bytes
        self.info = StreamInfo()
        self._framer = PacketFramer()
        self._pat_packets: tuple[bytes, ...] = ()
        self._pmt_packets: tuple[bytes, ...] = ()
        self._pat_col = SectionCollector()
        self._pmt_col = SectionCollector()
        self._pmt_pid: int | None = None
        self._psip_col = SectionCollector()
        self._last_rap_window: int | None = None
        self._timeline = 0
        self._open: _Open | None = None
        self._cc: dict[int, int] = {}
        self._frame_ticks = 0  # smallest positive PTS step between video PES seen
        self._last_video_pts: int | None = None
        self.packets_seen = 0
        self.chunks_emitted = 0

    # -- public ---------------------------------------------------------------
    def feed(self, data: bytes | bytearray | memoryview) -> list[Chunk]:
        out: list[Chunk] = []
        for run in self._framer.feed(data):
            if run.resyncs and self._open is not None:
                self._open.damaged = True
            if run.data:
                self._run(run.data, out)
        return out

    def flush(self) -> list[Chunk]:
        """End of input: emit the chunk in progress (its end is the end of the stream)."""
        out: list[Chunk] = []
        for run in self._framer.flush():
            if run.resyncs and self._open is not None:
                self._open.damaged = True
            if run.data:
                self._run(run.data, out)
        if self._open is not None and self._open.parts:
            self._emit(out, None)
        self._open = None
        return out

    # -- internals --------------------------------------------------------------
    def _run(self, data: bytes, out: list[Chunk]) -> None:
        n = len(data) // PACKET_SIZE
        self.packets_seen += n
        arr = np.frombuffer(data, dtype=np.uint8).reshape(n, PACKET_SIZE)
        b1 = arr[:, 1]
        pids = ((b1 & 0x1F).astype(np.uint16) << 8) | arr[:, 2]
        bad = self._damaged_rows(arr, pids)
        starts = np.flatnonzero(b1 & 0x40)  # PUSI
        psi_rows = np.flatnonzero(pids == PAT_PID) if self._pmt_pid is None else np.flatnonzero(
            (pids == PAT_PID) | (pids == self._pmt_pid)
        )
        rows = np.union1d(starts, psi_rows) if psi_rows.size else starts
        seg_start = 0  # row where the current part of `data` begins
        video = self.info.video_pid
        for r in rows.tolist():
            pid = int(pids[r])
            off = r * PACKET_SIZE
            if pid == PAT_PID or pid == self._pmt_pid:
                self._psi(pid, data[off : off + PACKET_SIZE])
                video = self.info.video_pid
                continue
            if pid == PSIP_PID:
                if len(self.info.psip_sections) < 16:
                    got = self._psip_col.feed(data[off : off + PACKET_SIZE])
                    if got is not None:
                        self.info.psip_sections.append(got[0])
                continue
            if pid != video or video is None:
                continue
            pts, es = pes_pts(data, off)
            if pts is None:
                continue
            self._track_video_pts(pts)
            codec = self.info.video_codec or "mpeg2"
            if not is_random_access(data, codec, es, off):
                continue
            window = pts // self._ticks
            prev = self._last_rap_window
            self._last_rap_window = window
            if prev is None or window == prev:
                continue
            if window < prev:  # PTS went back: a 33-bit wrap or a source discontinuity
                self._timeline += 1
            if not self._pat_packets or not self._pmt_packets:
                continue
            # cut before row r
            if self._open is not None:
                self._open.parts.append(data[seg_start * PACKET_SIZE : off])
                self._open.damaged |= _any_between(bad, seg_start, r)
                self._emit(out, pts)
            self._open = _Open(
                index=self._timeline * self._stride + window,
                start_pts=pts,
                parts=[b"".join(self._pat_packets), b"".join(self._pmt_packets)],
            )
            seg_start = r
        if self._open is not None:
            self._open.parts.append(data[seg_start * PACKET_SIZE :])
            self._open.damaged |= _any_between(bad, seg_start, n)
            if sum(len(p) for p in self._open.parts) > self._max_bytes:
                # a runaway chunk (no random access for a long time): drop it rather than grow forever
                self._open = None

    def _track_video_pts(self, pts: int) -> None:
        last = self._last_video_pts
        if last is not None:
            step = (pts - last) % PTS_WRAP
            if 0 < step < 90_000 and (self._frame_ticks == 0 or step < self._frame_ticks):
                self._frame_ticks = step
        self._last_video_pts = pts
        if self._open is not None:
            rel = (pts - self._open.start_pts) % PTS_WRAP
            if rel < PTS_WRAP // 2 and rel > self._open.max_rel_pts:
                self._open.max_rel_pts = rel

    def _emit(self, out: list[Chunk], next_pts: int | None) -> None:
        c = self._open
        if c is not None and sum(len(p) for p in c.parts) <= self._max_bytes:
            out.append(self._close(next_pts))

    def _close(self, next_pts: int | None) -> Chunk:
        c = self._open
        assert c is not None
        span = None
        if next_pts is not None:
            d = (next_pts - c.start_pts) % PTS_WRAP
            if 0 < d <= 10 * self._ticks:
                span = d
        if span is None:  # end of stream or a discontinuity: last picture + one frame
            span = c.max_rel_pts + self._frame_ticks
        self.chunks_emitted += 1
        return Chunk(
            index=c.index,
            data=b"".join(c.parts),
            start_pts=c.start_pts,
            duration_ms=round(span / 90),
            damaged=c.damaged,
        )

    def _psi(self, pid: int, pkt: bytes) -> None:
        if pid == PAT_PID:
            got = self._pat_col.feed(pkt)
            if got is None:
                return
            try:
                pat = parse_pat(got[0])
            except PsiError:
                return
            if not pat.programs:
                return
            self._pat_packets = got[1]
            self.info.pat = pat
            number = min(pat.programs)
            if self.info.program_number != number or self._pmt_pid != pat.programs[number]:
                self.info.program_number = number
                self._pmt_pid = pat.programs[number]
                self._pmt_col = SectionCollector()
            return
        got = self._pmt_col.feed(pkt)
        if got is None:
            return
        try:
            pmt = parse_pmt(got[0])
        except PsiError:
            return
        es = pmt.video()
        if es is None:
            return
        self._pmt_packets = got[1]
        self.info.pmt = pmt
        self.info.video_pid = es.pid
        self.info.video_codec = VIDEO_STREAM_TYPES[es.stream_type]

    def _damaged_rows(self, arr: np.ndarray, pids: np.ndarray) -> np.ndarray:
        """Rows (sorted) that show a continuity-counter gap or a transport error."""
        has_payload = (arr[:, 3] & 0x10) != 0
        cc = (arr[:, 3] & 0x0F).astype(np.int16)
        disc = ((arr[:, 3] & 0x20) != 0) & (arr[:, 4] > 0) & ((arr[:, 5] & 0x80) != 0)
        bad = [np.flatnonzero(arr[:, 1] & 0x80)]
        for pid in np.unique(pids).tolist():
            if pid == NULL_PID:
                continue
            sel = np.flatnonzero((pids == pid) & has_payload)
            if sel.size == 0:
                continue
            seq = cc[sel]
            prev = self._cc.get(pid)
            self._cc[pid] = int(seq[-1])
            if prev is None:
                step = np.diff(seq) % 16
                rows = sel[1:]
            else:
                step = np.diff(np.concatenate(([prev], seq))) % 16
                rows = sel
            wrong = (step != 1) & (step != 0) & ~disc[rows]
            if np.any(wrong):
                bad.append(rows[wrong])
        return np.sort(np.concatenate(bad))


def _any_between(rows: np.ndarray, lo: int, hi: int) -> bool:
    if rows.size == 0:
        return False
    i = int(np.searchsorted(rows, lo))
    return i < rows.size and int(rows[i]) < hi


def chunk_stream(reads: Iterable[bytes], chunk_ms: int = DEFAULT_CHUNK_MS) -> Iterator[Chunk]:
    """Chunk a whole stream given as successive reads."""
    ch = Chunker(chunk_ms)
    for data in reads:
        yield from ch.feed(data)
    yield from ch.flush()


__all__ = ["Chunk", "Chunker", "StreamInfo", "chunk_stream", "windows_per_timeline", "pid_of"]


def measure_duration_ms(data: bytes, frame_ms_hint: int = 0) -> int | None:
    """A chunk's duration from its own video PTS: last picture - first picture + one frame.

    Lets a subscriber label HLS segments from verified bytes instead of trusting object metadata.
    """
    ch = Chunker()
    ch.feed(data)
    info = ch.info
    if info.video_pid is None:
        return None
    pts: list[int] = []
    vp = info.video_pid
    for off in range(0, len(data) - PACKET_SIZE + 1, PACKET_SIZE):
        if pid_of(data, off) == vp and data[off + 1] & 0x40:
            p, _ = pes_pts(data, off)
            if p is not None:
                pts.append(p)
    if not pts:
        return None
    first = pts[0]
    rel = sorted((p - first) % PTS_WRAP for p in pts)
    rel = [r for r in rel if r < PTS_WRAP // 2]
    steps = [b - a for a, b in zip(rel, rel[1:], strict=False) if b > a]
    frame = min(steps) if steps else frame_ms_hint * 90
    return round((rel[-1] + frame) / 90)
