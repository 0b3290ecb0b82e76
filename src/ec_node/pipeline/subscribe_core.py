"""The subscriber's decisions, without I/O: which objects become HLS segments, and when to stop.

Feed it manifest frames and object frames as they arrive from any peer; it answers with
segments to write and events to report. With ``require_manifest`` nothing reaches the output
unless a trusted manifest vouches for it (the shared :class:`Verifier` decides); objects that
arrive before their manifest wait in the verifier's bounded buffer.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from ec_node.errors import ExitCode
from ec_node.integrity.aead import StreamCipher
from ec_node.integrity.errors import IntegrityRejection, RejectReason
from ec_node.integrity.objects import check_object_stream, open_object
from ec_node.integrity.verifier import AcceptedObject, DroppedObject, Verdict, Verifier
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
    """The result of one input: segments to write (in order) and events to report."""

    segments: list[SegmentOut] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    exit: ExitCode | None = None
    exit_reason: str = ""


@dataclass
class SubscribeOptions:
    require_manifest: bool = True
    max_invalid: int | None = None  # None = unlimited
    stop_after: int | None = None
    chunk_ms: int = 2000


class SubscribeCore:
    def __init__(self, stream_id: str, stream_key: bytes, verifier: Verifier, opts: SubscribeOptions) -> None:
        self.stream_id = stream_id
        self.verifier = verifier
        self.opts = opts
        self._cipher = StreamCipher(stream_id, stream_key)
        self.written = 0
        self.last_written: int | None = None
        self.rejected = 0
        self.manifests = 0
        self.done: ExitCode | None = None
        self._arrived: dict[int, float] = {}  # chunk index -> arrival time, until written
        self._now = 0.0

    # ------------------------------------------------------------------ inputs
    def on_manifest(self, data: bytes, peer: str = "") -> Step:
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
        self._released(d.released, step)
        self._dropped(d.dropped, step, peer)
        return self._settle(step)

    def on_object(self, data: bytes, peer: str = "", now: float = 0.0) -> Step:
        step = Step()
        self._now = now
        if not self.opts.require_manifest:
            self._unverified(data, step, peer)
            return self._settle(step)
        d = self.verifier.add_object(data)
        if d.chunk_index is not None and d.verdict in (Verdict.PENDING, Verdict.ACCEPTED):
            if len(self._arrived) > 4 * self.verifier.max_pending_objects:
                self._arrived.clear()  # bounded: figures only
            self._arrived.setdefault(d.chunk_index, now)
        if d.verdict is Verdict.REJECTED:
            assert d.reason is not None
            self._reject(d.chunk_index, d.reason, d.detail, peer, step)
        self._released(d.released, step)
        self._dropped(d.dropped, step, peer)
        return self._settle(step)

    def on_objects_ended(self) -> Step:
        """The objects peer finished its track: whatever still waits for a manifest now decides."""
        return self._settle(Step(), ended=True)

    def on_manifests_gone(self) -> Step:
        """No more manifests will come: buffered objects can never be vouched for."""
        step = Step()
        self._dropped(self.verifier.drop_pending(), step, "")
        return self._settle(step)

    # ------------------------------------------------------------------ internals
    def _unverified(self, data: bytes, step: Step, peer: str) -> None:
        """Without --require-manifest: the object need only be self-consistent (AEAD + its own hash)."""
        try:
            opened = open_object(self._cipher, data)
            check_object_stream(opened.meta, self.stream_id)
        except IntegrityRejection as e:
            self._reject(None, e.reason, e.detail, peer, step)
            return
        self._emit(opened.meta.chunk_index, opened.plaintext, step)

    def _released(self, accepted: tuple[AcceptedObject, ...], step: Step) -> None:
        for a in sorted(accepted, key=lambda a: a.chunk_index):
            assert a.plaintext is not None
            self._emit(a.chunk_index, a.plaintext, step)

    def _emit(self, index: int, plaintext: bytes, step: Step) -> None:
        if self.last_written is not None and index <= self.last_written:
            log.info("chunk %d arrived after %d was written; not rewriting the playlist", index, self.last_written)
            return
        if self.opts.stop_after is not None and self.written >= self.opts.stop_after:
            return
        dur = measure_duration_ms(plaintext, self.opts.chunk_ms) or self.opts.chunk_ms
        step.segments.append(SegmentOut(index, plaintext, dur, self._arrived.pop(index, self._now)))
        self.written += 1
        self.last_written = index
        step.events.append({"event": "segment", "chunk_index": index, "bytes": len(plaintext), "duration_ms": dur})

    def _dropped(self, dropped: tuple[DroppedObject, ...], step: Step, peer: str) -> None:
        for d in dropped:
            self._reject(d.chunk_index, d.reason, d.detail, peer, step, counted_by_verifier=True)

    def _reject(
        self,
        index: int | None,
        reason: RejectReason,
        detail: str,
        peer: str,
        step: Step,
        counted_by_verifier: bool = False,
    ) -> None:
        self.rejected += 1
        log.warning("rejected object %s from %s: %s (%s)", index, peer or "?", reason.value, detail)
        step.events.append(
            {"event": "rejected", "chunk_index": index, "reason": reason.value, "detail": detail, "peer": peer}
        )

    def _settle(self, step: Step, ended: bool = False) -> Step:
        o = self.opts
        if self.done is not None:
            step.exit = self.done
            return step
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
