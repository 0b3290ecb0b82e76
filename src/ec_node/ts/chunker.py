"""The deterministic chunk rule: every node cuts the same broadcast into the same bytes.

A chunk starts at a video PES that begins a random-access picture lying in a different
``chunk_ms`` window than the previous random-access picture. Where the stream carries an ATSC
System Time Table, windows are broadcast UTC (``floor(UTC_ms / chunk_ms)``, the picture's PTS
placed on UTC by the last STT_SAMPLES STTs and the PCR at each); otherwise they are PTS
(``floor(PTS_ms / chunk_ms)``). The decision depends only on the stream, never on when a node
joined or how its reads were sized, so two nodes produce byte-identical chunks for every chunk
both see whole, and in UTC mode number them alike across PTS wraps and discontinuities.
A chunk is the latest PAT packet, the latest PMT packets, then every packet from its cut
point up to the next one, unchanged. See docs/PROTOCOL.md section 1.

Pure: feed bytes, get :class:`Chunk` objects. No I/O.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace

import numpy as np

from ec_node.ts.errors import SectionError
from ec_node.ts.packets import NULL_PID, PACKET_SIZE, PacketFramer, pid_of, read_pcr
from ec_node.ts.pcr import has_pcr, pcr_step
from ec_node.ts.pes import PTS_WRAP, is_random_access, pes_pts
from ec_node.ts.psi import PAT_PID, VIDEO_STREAM_TYPES, Pat, Pmt, parse_pat, parse_pmt
from ec_node.ts.psip import PSIP_BASE_PID, TID_STT, parse_stt
from ec_node.ts.section import Section, SectionReassembler

DEFAULT_CHUNK_MS = 2000
MAX_PSIP_SECTIONS = 16  # StreamInfo keeps this many PSIP sections: enough to find the TVCT
MIN_CHUNK_MS = 100
MAX_CHUNK_MS = 60_000
# Broadcast-time (UTC) windows, docs/PROTOCOL.md section 1: a picture is placed on UTC by the latest
# STT_SAMPLES System Time Tables, each paired with the PCR before it; the latest of their estimates
# wins (an STT carries whole seconds, so each estimate is at most its truncation early).
STT_SAMPLES = 4
STT_AGREE_TICKS = 2 * 90_000  # an STT more than 2 s off the previous one's clock: the time base changed
PTS_STEP_MIN, PTS_STEP_MAX = -90_000, 5 * 90_000  # a video PTS step outside (-1 s, 5 s): a discontinuity


def windows_per_timeline(chunk_ms: int) -> int:
    """How many chunk windows one 33-bit PTS cycle spans (the index stride per timeline epoch)."""
    ticks = 90 * chunk_ms
    return -(-PTS_WRAP // ticks)


@dataclass(frozen=True)
class Chunk:
    """One cut of the stream, byte-identical on every node that saw it whole."""

    index: int  # UTC mode: floor(UTC_ms / chunk_ms); PTS mode: timeline * windows_per_timeline + window
    data: bytes  # PAT + PMT + packets from the cut point, a multiple of 188 bytes
    start_pts: int  # raw 33-bit PTS of the first picture (90 kHz)
    duration_ms: int
    damaged: bool = False  # sync loss, continuity error or transport error inside this chunk
    complete: bool = True  # False for the tail flushed at end of input: no cut point ended it


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
    start_row: int  # global packet number of the cut point
    parts: list[bytes]
    damaged: bool = False
    max_rel_pts: int = 0
    size: int = 0
    pids: set[int] = field(default_factory=set)


@dataclass
class _Closing:
    """A chunk whose end is known but whose last packets' continuity is not yet confirmed."""

    chunk: Chunk
    start_row: int
    end_row: int
    unverified: set[int]  # PIDs in the chunk not yet seen again after its end


class Chunker:
    """Feed MPEG-TS bytes of any read size; receive whole chunks as their end is seen.

    A closed chunk is held back until every PID it contains has shown one more packet after
    its end (typically well under 200 ms), so a packet lost just before a cut point is caught by
    the continuity counters and the chunk is marked damaged rather than passed on as clean.
    """

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
        self._pat_col = SectionReassembler(PAT_PID)
        self._pmt_col = SectionReassembler()
        self._pmt_pid: int | None = None
        self._psip_col = SectionReassembler(PSIP_BASE_PID)
        self._last_rap_window: int | None = None  # forgotten after damage: cut decisions restart
        # UTC mode (from the first STT on): (STT UTC, PCR base before it) pairs, both in 90 kHz ticks
        self.utc_mode = False
        self._samples: deque[tuple[int, int]] = deque(maxlen=STT_SAMPLES)
        self._last_pcr: int | None = None  # 27 MHz, on the program's PCR PID
        self._pcr_pid: int | None = None
        self._last_rap_number: int | None = None  # UTC window of the last random-access picture, or None
        self._timeline = 0
        self._timeline_window: int | None = None  # window of the last random-access picture, ever
        self._open: _Open | None = None
        self._closing: list[_Closing] = []
        self._cc: dict[int, int] = {}
        self._last_row: dict[int, int] = {}  # global packet number of each PID's last payload packet
        self._frame_ticks = 0  # smallest positive PTS step between video PES seen
        self._last_video_pts: int | None = None
        self.packets_seen = 0
        self.chunks_emitted = 0
        # True when PAT/PMT packets may have been lost since the ones we hold were seen
        self._psi_stale = False
        self._pat_fresh = False  # a PAT arrived after the PSI went stale

    # -- public ---------------------------------------------------------------
    def feed(self, data: bytes | bytearray | memoryview) -> list[Chunk]:
        """Consume bytes of any read size; return the chunks released so far (ended and confirmed, or damaged)."""
        out: list[Chunk] = []
        for run in self._framer.feed(data):
            self._resynced(run.resyncs, out)
            if run.data:
                self._run(run.data, out)
        return out

    def flush(self) -> list[Chunk]:
        """End of input: release held chunks, then the tail in progress (marked incomplete)."""
        out: list[Chunk] = []
        for run in self._framer.flush():
            self._resynced(run.resyncs, out)
            if run.data:
                self._run(run.data, out)
        self._release(out, force=True)
        c = self._open
        if c is not None and c.parts and c.size <= self._max_bytes:
            out.append(replace(self._chunk(c, None), complete=False))
            self.chunks_emitted += 1
        self._open = None
        return out

    # -- damage bookkeeping -------------------------------------------------------
    def _resynced(self, resyncs: int, out: list[Chunk]) -> None:
        """Bytes were lost to a sync loss at a known point: everything unconfirmed before it is suspect."""
        if not resyncs:
            return
        if self._open is not None:
            self._open.damaged = True
        for h in self._closing:
            if h.unverified:  # a loss just before its end could no longer be detected
                h.chunk = replace(h.chunk, damaged=True)
        self._release(out, force=True)
        self._mark_psi_stale()
        for col in (self._pat_col, self._pmt_col, self._psip_col):
            col.reset()  # a section cannot continue across lost bytes
        self._last_rap_window = None  # a random-access picture may have been lost with the bytes
        self._unanchor()  # an STT or PCR may have been lost with them
        self._cc.clear()  # counters across the gap mean nothing
        self._last_row.clear()

    def _unanchor(self) -> None:
        """Forget the UTC anchor: pictures are unnumbered until STT_SAMPLES new STTs are seen."""
        self._samples.clear()
        self._last_pcr = None
        self._last_rap_number = None

    def _mark_psi_stale(self) -> None:
        self._psi_stale = True
        self._pat_fresh = False

    def _release(self, out: list[Chunk], force: bool = False) -> None:
        keep: list[_Closing] = []
        for h in self._closing:
            if h.unverified and not force:
                keep.append(h)
            else:
                out.append(h.chunk)
                self.chunks_emitted += 1
        self._closing = keep

    # -- the per-run work ---------------------------------------------------------------
    def _run(self, data: bytes, out: list[Chunk]) -> None:
        n = len(data) // PACKET_SIZE
        g0 = self.packets_seen
        self.packets_seen += n
        arr = np.frombuffer(data, dtype=np.uint8).reshape(n, PACKET_SIZE)
        b1 = arr[:, 1]
        pids = ((b1 & 0x1F).astype(np.uint16) << 8) | arr[:, 2]
        lo, hi, gaps = self._damage(arr, pids, g0)
        # chunks waiting for confirmation: damage reaching into them, PIDs seen again after them
        for h in self._closing:
            if _overlaps(lo, hi, h.start_row, h.end_row):
                h.chunk = replace(h.chunk, damaged=True)
            h.unverified -= set(np.unique(pids).tolist())
        self._release(out)

        starts = np.flatnonzero(b1 & 0x40)  # PUSI
        pcr_rows = has_pcr(arr)
        psi_mask = (pids == PAT_PID) | (pids == PSIP_BASE_PID) | pcr_rows  # PCRs of any PID: the PCR PID may change
        if self._pmt_pid is not None:
            psi_mask |= pids == self._pmt_pid
        psi_rows = np.flatnonzero(psi_mask)
        rows = (np.union1d(starts, psi_rows) if psi_rows.size else starts).tolist()
        seg_start = 0  # row where the open chunk's part of `data` begins
        video = self.info.video_pid
        # Every decision below uses the PMT and video PIDs as they stand at that row, never as they stood
        # when this run began: otherwise the chunks would depend on how the input was split into reads.
        # So a PMT PID named by a PAT in this run has its later packets visited too (``extra``, merged in).
        by_pid = _RowsByPid(pids)
        extra = by_pid.after(None, 0)
        i = j = k = 0
        while i < len(rows) or j < len(extra):
            if j >= len(extra) or (i < len(rows) and rows[i] <= extra[j]):
                r = rows[i]
                i += 1
                if j < len(extra) and extra[j] == r:
                    j += 1
            else:
                r = int(extra[j])
                j += 1
            while k < len(gaps) and gaps[k][0] <= r:
                self._gap(gaps[k][1])
                k += 1
            pid = int(pids[r])
            off = r * PACKET_SIZE
            if pcr_rows[r] and pid == self._pcr_pid:
                self._take_pcr(data, off)
            if pid == PAT_PID or pid == self._pmt_pid:
                pmt_pid = self._pmt_pid
                self._psi(pid, data[off : off + PACKET_SIZE])
                video = self.info.video_pid
                if self._pmt_pid != pmt_pid:
                    extra, j = by_pid.after(self._pmt_pid, r + 1), 0
                continue
            if pid == PSIP_BASE_PID:
                for sec in self._psip_col.feed(data[off : off + PACKET_SIZE]):
                    if len(self.info.psip_sections) < MAX_PSIP_SECTIONS:
                        self.info.psip_sections.append(sec.data)
                    if sec.data[:1] == bytes([TID_STT]):
                        self._take_stt(sec.data)
                continue
            if pid != video or video is None or not b1[r] & 0x40:  # only a PES start begins a picture
                continue
            pts, es = pes_pts(data, off)
            if pts is None:
                continue
            self._track_video_pts(pts)
            codec = self.info.video_codec or "mpeg2"
            if not is_random_access(data, codec, es, off):
                continue
            if self.utc_mode:
                number = self._utc_window(pts)
                prev_number = self._last_rap_number
                self._last_rap_number = number
                if number is None:  # the anchor is gone (a discontinuity, damage): the open chunk ends here
                    if self._open is not None:
                        self._append(data, pids, seg_start, r, lo, hi, g0)
                        self._close_open(pts, g0 + r, out)
                    continue
                if prev_number is None or number <= prev_number or not self._pat_packets or not self._pmt_packets:
                    continue
                if self._open is not None and number <= self._open.index:
                    continue  # the estimate stepped back across a window: never reuse an index
                index = number
            else:
                cut = self._pts_cut(pts)
                if cut is None:
                    continue
                index = cut
            # cut before row r
            if self._open is not None:
                self._append(data, pids, seg_start, r, lo, hi, g0)
                self._close_open(pts, g0 + r, out)
            head = [b"".join(self._pat_packets), b"".join(self._pmt_packets)]
            self._open = _Open(
                index=index,
                start_pts=pts,
                start_row=g0 + r,
                parts=head,
                damaged=self._psi_stale,  # its PAT/PMT prefix may not be the latest one
                size=sum(len(x) for x in head),
            )
            seg_start = r
        for _, gap_pid in gaps[k:]:  # damage after the last row the loop looked at
            self._gap(gap_pid)
        if self._open is not None:
            self._append(data, pids, seg_start, n, lo, hi, g0)
            if self._open.size > self._max_bytes:
                # a runaway chunk (no random access for a long time): drop it rather than grow forever
                self._open = None
        for h in self._closing:  # chunks closed in this run: PIDs seen after their end
            after = h.end_row - g0
            if after < n:
                h.unverified -= set(np.unique(pids[max(after, 0) :]).tolist())
        self._release(out)

    def _pts_cut(self, pts: int) -> int | None:
        """PTS mode: the index of a chunk cut at this random-access picture, or None when it is no cut."""
        window = pts // self._ticks
        if self._timeline_window is not None and window < self._timeline_window:
            self._timeline += 1  # PTS went back: a 33-bit wrap or a source discontinuity
        self._timeline_window = window
        prev = self._last_rap_window
        self._last_rap_window = window
        if prev is None or window == prev or not self._pat_packets or not self._pmt_packets:
            return None
        return self._timeline * self._stride + window

    # -- broadcast time ------------------------------------------------------------------------
    def _take_pcr(self, data: bytes, off: int) -> None:
        pcr = read_pcr(data, off)
        if pcr is None:
            return
        if self._last_pcr is not None and pcr_step(self._last_pcr, pcr) is None:
            self._unanchor()  # the program clock jumped: STTs before it say nothing about pictures after
        self._last_pcr = pcr

    def _take_stt(self, section: bytes) -> None:
        """An STT: the stream is in UTC mode from now on; pair its time with the PCR before it."""
        try:
            stt = parse_stt(section)
        except SectionError:
            return
        if not self.utc_mode:
            self.utc_mode = True
            self._open = None  # a chunk opened by the PTS rule would not match UTC-mode nodes' chunks
            self._last_rap_window = None
        if self._last_pcr is None:
            return
        sample = (stt.unix_seconds * 90_000, self._last_pcr // 300)
        if self._samples:
            utc, pcr = self._samples[-1]
            if abs(utc + _signed_pts(sample[1] - pcr) - sample[0]) > STT_AGREE_TICKS:
                self._samples.clear()  # the time base changed under the STTs: start over
        self._samples.append(sample)

    def _utc_window(self, pts: int) -> int | None:
        """The UTC window of a picture's PTS, or None until STT_SAMPLES STTs anchor it."""
        if len(self._samples) < STT_SAMPLES:
            return None
        utc = max(u + _signed_pts(pts - p) for u, p in self._samples)
        return utc // self._ticks

    def _append(self, data: bytes, pids: np.ndarray, a: int, b: int, lo: np.ndarray, hi: np.ndarray, g0: int) -> None:
        c = self._open
        assert c is not None
        if b > a:
            c.parts.append(data[a * PACKET_SIZE : b * PACKET_SIZE])
            c.size += (b - a) * PACKET_SIZE
            c.pids.update(np.unique(pids[a:b]).tolist())
        c.damaged |= _overlaps(lo, hi, max(c.start_row, g0 + a), g0 + b)

    def _close_open(self, next_pts: int, end_row: int, out: list[Chunk]) -> None:
        c = self._open
        assert c is not None
        if c.size <= self._max_bytes:
            self._closing.append(_Closing(self._chunk(c, next_pts), c.start_row, end_row, set(c.pids)))
        self._open = None
        if len(self._closing) > 1:  # never hold more than one: the older is as confirmed as it gets
            out.append(self._closing.pop(0).chunk)
            self.chunks_emitted += 1

    def _track_video_pts(self, pts: int) -> None:
        last = self._last_video_pts
        if last is not None:
            step = (pts - last) % PTS_WRAP
            if 0 < step < 90_000 and (self._frame_ticks == 0 or step < self._frame_ticks):
                self._frame_ticks = step
            if not PTS_STEP_MIN < _signed_pts(step) < PTS_STEP_MAX:
                self._unanchor()  # a PTS discontinuity: the STTs before it no longer place pictures
                self._last_video_pts = pts
                return  # and the open chunk's span ends before it
        self._last_video_pts = pts
        if self._open is not None:
            rel = (pts - self._open.start_pts) % PTS_WRAP
            if rel < PTS_WRAP // 2 and rel > self._open.max_rel_pts:
                self._open.max_rel_pts = rel

    def _chunk(self, c: _Open, next_pts: int | None) -> Chunk:
        span = None
        if next_pts is not None:
            d = (next_pts - c.start_pts) % PTS_WRAP
            if 0 < d <= 10 * self._ticks:
                span = d
        if span is None:  # end of stream or a discontinuity: last picture + one frame
            span = c.max_rel_pts + self._frame_ticks
        return Chunk(
            index=c.index,
            data=b"".join(c.parts),
            start_pts=c.start_pts,
            duration_ms=round(span / 90),
            damaged=c.damaged,
        )

    def _psi(self, pid: int, pkt: bytes) -> None:
        if pid == PAT_PID:
            for sec in self._pat_col.feed(pkt):
                self._take_pat(sec)
            return
        for sec in self._pmt_col.feed(pkt):
            self._take_pmt(sec)

    def _take_pat(self, sec: Section) -> None:
        try:
            pat = parse_pat(sec.data)
        except SectionError:
            return
        if not pat.programs:
            return
        self._pat_packets = sec.packets
        self._pat_fresh = self._psi_stale
        self.info.pat = pat
        number = min(pat.programs)
        if self.info.program_number != number or self._pmt_pid != pat.programs[number]:
            self.info.program_number = number
            self._pmt_pid = pat.programs[number]
            self._pmt_col = SectionReassembler(self._pmt_pid)

    def _take_pmt(self, sec: Section) -> None:
        try:
            pmt = parse_pmt(sec.data)
        except SectionError:
            return
        es = pmt.video()
        if es is None:
            return
        self._pmt_packets = sec.packets
        if self._pat_fresh:
            self._psi_stale = False  # both tables seen again since the damage
        self.info.pmt = pmt
        if self._pcr_pid != pmt.pcr_pid:
            self._pcr_pid = pmt.pcr_pid
            self._last_pcr = None
        self.info.video_pid = es.pid
        self.info.video_codec = VIDEO_STREAM_TYPES[es.stream_type]

    def _gap(self, pid: int) -> None:
        """Packets of ``pid`` were lost here: held PAT/PMT may be stale, or a random-access picture lost."""
        if pid == PAT_PID or pid == self._pmt_pid:
            self._mark_psi_stale()
        if pid == PSIP_BASE_PID or pid == self._pcr_pid:
            self._unanchor()  # an STT or PCR may be lost: this node's anchor could differ from others'
        if pid == self.info.video_pid:
            # video packets were lost: the next random-access picture may not be its window's first
            self._last_rap_window = None
            self._last_rap_number = None

    def _damage(
        self, arr: np.ndarray, pids: np.ndarray, g0: int
    ) -> tuple[np.ndarray, np.ndarray, list[tuple[int, int]]]:
        """Where packets were lost or corrupted, as global packet-number intervals [lo, hi].

        A continuity gap at packet x on a PID means packets went missing somewhere after that
        PID's previous packet, so that whole span is suspect (it may straddle a cut point).
        Also returns every gap as (row local to this run, PID), in row order: what a gap means
        (stale PSI, a lost picture) depends on the PMT and video PIDs at that row, which the caller
        knows only as it walks the run.
        """
        has_payload = (arr[:, 3] & 0x10) != 0
        cc = (arr[:, 3] & 0x0F).astype(np.int16)
        disc = ((arr[:, 3] & 0x20) != 0) & (arr[:, 4] > 0) & ((arr[:, 5] & 0x80) != 0)
        tei = np.flatnonzero(arr[:, 1] & 0x80) + g0
        los, his = [tei], [tei]
        gaps: list[tuple[int, int]] = []
        for pid in np.unique(pids).tolist():
            if pid == NULL_PID:
                continue
            sel = np.flatnonzero((pids == pid) & has_payload)
            if sel.size == 0:
                continue
            seq = cc[sel]
            prev = self._cc.get(pid)
            prev_row = self._last_row.get(pid)
            self._cc[pid] = int(seq[-1])
            self._last_row[pid] = g0 + int(sel[-1])
            if prev is None or prev_row is None:
                step = np.diff(seq) % 16
                at, before = sel[1:], sel[:-1] + g0
            else:
                step = np.diff(np.concatenate(([prev], seq))) % 16
                at, before = sel, np.concatenate(([prev_row], sel[:-1] + g0))
            wrong = (step != 1) & (step != 0) & ~disc[at]
            if np.any(wrong):
                los.append(before[wrong] + 1)
                his.append(at[wrong] + g0)
                gaps += [(row, pid) for row in at[wrong].tolist()]
        return np.concatenate(los), np.concatenate(his), sorted(gaps)


class _RowsByPid:
    """The rows of each PID in one run, grouped once on first use (a PAT may name a new PMT PID per packet)."""

    def __init__(self, pids: np.ndarray) -> None:
        self._pids = pids
        self._order: np.ndarray | None = None
        self._sorted: np.ndarray | None = None

    def after(self, pid: int | None, start: int) -> np.ndarray:
        """Rows >= ``start`` holding ``pid``, ascending (none for None)."""
        if pid is None:
            return np.empty(0, dtype=np.intp)
        if self._order is None or self._sorted is None:
            self._order = np.argsort(self._pids, kind="stable")
            self._sorted = self._pids[self._order]
        lo, hi = np.searchsorted(self._sorted, pid, "left"), np.searchsorted(self._sorted, pid, "right")
        rows = self._order[lo:hi]  # ascending: the sort is stable
        return rows[np.searchsorted(rows, start) :]


def _signed_pts(delta: int) -> int:
    """A 33-bit PTS/PCR-base difference as a signed number of ticks (wrap-safe)."""
    delta %= PTS_WRAP
    return delta - PTS_WRAP if delta >= PTS_WRAP // 2 else delta


def _overlaps(lo: np.ndarray, hi: np.ndarray, a: int, b: int) -> bool:
    """Does any damage interval [lo, hi] touch rows [a, b)?"""
    return bool(lo.size) and bool(np.any((lo < b) & (hi >= a)))


def chunk_stream(reads: Iterable[bytes], chunk_ms: int = DEFAULT_CHUNK_MS) -> Iterator[Chunk]:
    """Chunk a whole stream given as successive reads."""
    ch = Chunker(chunk_ms)
    for data in reads:
        yield from ch.feed(data)
    yield from ch.flush()


__all__ = ["Chunk", "Chunker", "StreamInfo", "chunk_stream", "windows_per_timeline", "pid_of", "measure_duration_ms"]


def measure_duration_ms(data: bytes, frame_ms_hint: int = 0) -> int | None:
    """A chunk's duration from its own video PTS: last picture - first picture + one frame.

    Lets a subscriber label HLS segments from verified bytes instead of trusting object metadata.
    Vectorised: only the PAT/PMT at the chunk's head and the video PES starts are parsed.
    """
    n = len(data) // PACKET_SIZE
    if n == 0:
        return None
    head = Chunker()
    head.feed(data[: min(n, 64) * PACKET_SIZE])  # a chunk starts with PAT + PMT
    vp = head.info.video_pid
    if vp is None:
        return None
    arr = np.frombuffer(data, dtype=np.uint8, count=n * PACKET_SIZE).reshape(n, PACKET_SIZE)
    pids = ((arr[:, 1] & 0x1F).astype(np.uint16) << 8) | arr[:, 2]
    rows = np.flatnonzero((pids == vp) & ((arr[:, 1] & 0x40) != 0))
    pts = [p for p in (pes_pts(data, int(r) * PACKET_SIZE)[0] for r in rows) if p is not None]
    if not pts:
        return None
    first = pts[0]
    rel = sorted((p - first) % PTS_WRAP for p in pts)
    rel = [r for r in rel if r < PTS_WRAP // 2]
    steps = [b - a for a, b in zip(rel, rel[1:], strict=False) if b > a]
    frame = min(steps) if steps else frame_ms_hint * 90
    return round((rel[-1] + frame) / 90)
