"""The subscriber's decisions, without I/O: which objects become HLS segments, and when to stop.

Feed it manifest frames and object frames as they arrive from any peer; it answers with segments
to write (in chunk-index order), peers to drop, and events to report. With ``require_manifest``
nothing reaches the output unless a trusted manifest vouches for it (the shared
:class:`Verifier` decides); objects that arrive before their manifest wait in the verifier's
bounded buffer. Accepted chunks wait in a small reorder buffer until every earlier index is
written, known absent (a manifest says the window produced no chunk), or given up on after
``reorder_s``, so that several peers at different positions never cause a lost or repeated
segment.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from ec_node.errors import ExitCode
from ec_node.integrity.aead import StreamCipher
from ec_node.integrity.errors import PEER_FAULTS, IntegrityRejection, RejectReason
from ec_node.integrity.objects import check_object_stream, open_object
from ec_node.integrity.verifier import AcceptedObject, DroppedObject, SlotState, Verdict, Verifier
from ec_node.pipeline.publish_core import PREV_CHUNK_KEY
from ec_node.ts.chunker import measure_duration_ms

log = logging.getLogger(__name__)



@dataclass(frozen=True)
class SegmentOut:
    chunk_index: int
    data: bytes
    duration_ms: int
    received_at: float = 0.0  # caller's clock when the object arrived (for latency figures)


@dataclass
class Step:
    """The result of one input: segments to write (in order), peers to drop, events to report."""

    segments: list[SegmentOut] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    drop_peers: list[str] = field(default_factory=list)
    exit: ExitCode | None = None
    exit_reason: str = ""


@dataclass
class SubscribeOptions:
    require_manifest: bool = True
    max_invalid: int | None = None  # None = unlimited
    stop_after: int | None = None
    chunk_ms: int = 2000
    reorder_s: float = 4.0  # how long a missing earlier index may hold back later ones
    max_peer_rejections: int = 3  # a peer serving more invalid objects than this is dropped
    max_ready: int = 64  # accepted chunks held for reordering (bounded memory)


@dataclass
class _Ready:
    data: bytes
    received_at: float


class SubscribeCore:
    def __init__(self, stream_id: str, stream_key: bytes, verifier: Verifier, opts: SubscribeOptions) -> None:
        self.stream_id = stream_id
        self.verifier = verifier
        self.opts = opts
        self._cipher = StreamCipher(stream_id, stream_key)
        self.written = 0
        self.last_written: int | None = None
        self.rejected = 0  # invalid objects (what --max-invalid-chunks limits)
        self.dropped = 0  # objects given up for timing reasons (no manifest in time, buffer full)
        self.manifests = 0
        self.done: ExitCode | None = None
        self.peer_rejections: Counter[str] = Counter()
        self.dropped_peers: set[str] = set()
        self._arrived: dict[int, float] = {}  # chunk index -> arrival time, until written
        self._ready: dict[int, _Ready] = {}
        self._next: int | None = None  # the index the output waits for
        self._hole_since: float | None = None
        self._now = 0.0

    # ------------------------------------------------------------------ inputs
    def on_manifest(self, data: bytes, peer: str = "", now: float = 0.0) -> Step:
        self._now = now
        step = Step()
        d = self.verifier.add_manifest(data)
        if d.verdict is Verdict.ACCEPTED:
            self.manifests += 1
            ev: dict[str, Any] = {"event": "manifest", "epoch": d.epoch, "peer": peer}
            if d.manifest is not None:
                ev["manifest_id"] = d.manifest.manifest_id
            if d.pinned_signer:
                ev["trusted_on_first_use"] = d.pinned_signer
            step.events.append(ev)
        elif d.verdict is Verdict.REJECTED:
            assert d.reason is not None
            step.events.append(
                {"event": "manifest_rejected", "reason": d.reason.value, "detail": d.detail, "peer": peer}
            )
        self._accepted(d.released)
        self._dropped(d.dropped, step, peer)
        if d.verdict is Verdict.ACCEPTED and d.manifest is not None:
            body = d.manifest.body
            # objects far below what the leader now vouches for will never be covered: free their room
            self._dropped(self.verifier.drop_pending(body.chunk_start_index - 8 * body.total_chunks), step, "")
        return self._settle(step)

    def on_object(self, data: bytes, peer: str = "", now: float = 0.0) -> Step:
        self._now = now
        step = Step()
        if not self.opts.require_manifest:
            self._unverified(data, step, peer)
            return self._settle(step)
        d = self.verifier.add_object(data, source=peer)
        if d.chunk_index is not None and d.verdict in (Verdict.PENDING, Verdict.ACCEPTED):
            if len(self._arrived) > 4 * self.verifier.max_pending_objects + self.opts.max_ready:
                self._arrived.clear()  # bounded: figures only
            self._arrived.setdefault(d.chunk_index, now)
        if d.verdict is Verdict.REJECTED:
            assert d.reason is not None
            self._reject(d.chunk_index, d.reason, d.detail, peer, step)
        self._accepted(d.released)
        self._dropped(d.dropped, step, peer)
        return self._settle(step)

    def on_oversized(self, sequence: int, peer: str = "", now: float = 0.0) -> Step:
        """The transport refused a group over the size limit without reading it."""
        self._now = now
        step = Step()
        self._reject(sequence, RejectReason.TOO_LARGE, "object over the size limit, refused", peer, step)
        return self._settle(step)

    def tick(self, now: float) -> Step:
        """Time passes: a hole held open too long is given up."""
        self._now = now
        return self._settle(Step())

    def on_objects_ended(self) -> Step:
        """No more objects will come: flush what is ready, then decide how the run ended."""
        step = Step()
        self._flush(step, final=True)
        return self._settle(step, ended=True)

    def on_manifests_gone(self) -> Step:
        """No more manifests will come: buffered objects can never be vouched for."""
        step = Step()
        self._dropped(self.verifier.drop_pending(), step, "")
        return self._settle(step)

    @property
    def holding(self) -> bool:
        """Chunks are accepted but held back waiting for an earlier index."""
        return bool(self._ready)

    def penalty(self, peer: str) -> int:
        return self.peer_rejections[peer]

    # ------------------------------------------------------------------ internals
    def _unverified(self, data: bytes, step: Step, peer: str) -> None:
        """Without --require-manifest: the object need only be self-consistent (AEAD + its own hash)."""
        try:
            opened = open_object(self._cipher, data)
            check_object_stream(opened.meta, self.stream_id)
        except IntegrityRejection as e:
            self._reject(None, e.reason, e.detail, peer, step)
            return
        i = opened.meta.chunk_index
        if i in self._ready or (self.last_written is not None and i <= self.last_written):
            return  # a copy from another peer: already have it
        self._arrived.setdefault(i, self._now)
        self._ready[i] = _Ready(opened.plaintext, self._arrived.pop(i, self._now))

    def _accepted(self, accepted: tuple[AcceptedObject, ...]) -> None:
        for a in accepted:
            assert a.plaintext is not None
            i = a.chunk_index
            if self.last_written is not None and i <= self.last_written:
                continue
            self._ready[i] = _Ready(a.plaintext, self._arrived.pop(i, self._now))

    def _flush(self, step: Step, final: bool = False) -> None:
        """Write ready chunks in index order, waiting (up to reorder_s) for missing earlier ones."""
        while self._ready:
            if self.opts.stop_after is not None and self.written >= self.opts.stop_after:
                self._ready.clear()
                return
            lo = min(self._ready)
            if self._next is None or lo <= self._next - 1:
                if self._next is not None:  # older than what was written: a late copy
                    del self._ready[lo]
                    continue
                self._next = lo
            if lo > self._next and not final and not self._known_absent(self._next, lo):
                if self._hole_since is None:
                    self._hole_since = self._now
                held_too_long = self._now - self._hole_since >= self.opts.reorder_s
                if not held_too_long and len(self._ready) < self.opts.max_ready:
                    return
                step.events.append({"event": "gap", "chunks": f"{self._next}..{lo - 1}", "reason": "not received"})
                log.warning("chunks %d..%d never arrived; moving on", self._next, lo - 1)
            self._hole_since = None
            r = self._ready.pop(lo)
            self._write(lo, r, step)
            self._next = lo + 1
            # anything still waiting for a manifest below what was written can never be used
            self._dropped(self.verifier.drop_pending(lo + 1), step, "")

    def _known_absent(self, a: int, b: int) -> bool:
        """Do trusted manifests say indices a..b-1 produced no chunk (so nothing is missing)?

        Either every slot is listed empty, or the manifest of chunk b links it to a previous chunk
        (``prev_chunk_index`` in its signed metadata) below a, and its own earlier slots are empty.
        """
        m = self.verifier.manifest_for(b)
        start = b if m is None else m.body.chunk_start_index
        prev = None if m is None else m.body.metadata.get(PREV_CHUNK_KEY)
        if isinstance(prev, int) and not isinstance(prev, bool) and prev < a:
            lo = max(a, start)
            return all(self.verifier.slot_state(i) is SlotState.ABSENT for i in range(lo, b))
        if b - a > 4096:
            return False
        return all(self.verifier.slot_state(i) is SlotState.ABSENT for i in range(a, b))

    def _write(self, index: int, r: _Ready, step: Step) -> None:
        dur = measure_duration_ms(r.data, self.opts.chunk_ms) or self.opts.chunk_ms
        step.segments.append(SegmentOut(index, r.data, dur, r.received_at))
        self.written += 1
        self.last_written = index
        step.events.append({"event": "segment", "chunk_index": index, "bytes": len(r.data), "duration_ms": dur})

    def _dropped(self, dropped: tuple[DroppedObject, ...], step: Step, peer: str) -> None:
        for d in dropped:
            self._reject(d.chunk_index, d.reason, d.detail, d.source or peer, step)

    def _reject(self, index: int | None, reason: RejectReason, detail: str, peer: str, step: Step) -> None:
        invalid = reason in PEER_FAULTS
        if invalid:
            self.rejected += 1
        else:
            self.dropped += 1
        log.warning("rejected object %s from %s: %s (%s)", index, peer or "?", reason.value, detail)
        step.events.append(
            {"event": "rejected", "chunk_index": index, "reason": reason.value, "detail": detail, "peer": peer}
        )
        if invalid and peer:
            self.peer_rejections[peer] += 1
            if self.peer_rejections[peer] > self.opts.max_peer_rejections and peer not in self.dropped_peers:
                self.dropped_peers.add(peer)
                step.drop_peers.append(peer)
                step.events.append(
                    {"event": "peer_dropped", "peer": peer, "rejections": self.peer_rejections[peer]}
                )

    def _settle(self, step: Step, ended: bool = False) -> Step:
        o = self.opts
        if self.done is not None:
            step.exit = self.done
            return step
        self._flush(step)
        if o.max_invalid is not None and self.rejected > o.max_invalid:
            self.done = step.exit = ExitCode.INTEGRITY
            step.exit_reason = f"{self.rejected} objects rejected (more than --max-invalid-chunks {o.max_invalid})"
        elif o.stop_after is not None and self.written >= o.stop_after:
            self.done = step.exit = ExitCode.OK
            step.exit_reason = f"--stop-after {o.stop_after} reached"
        elif ended:
            if o.stop_after is None:
                self.done = step.exit = ExitCode.OK
                step.exit_reason = "stream ended"
            else:
                self.done = step.exit = ExitCode.ENDED_EARLY
                step.exit_reason = f"stream ended after {self.written} of {o.stop_after} segments"
        return step
