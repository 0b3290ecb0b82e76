"""The availability relay's decisions, without I/O: what to re-serve, and which upstream to stop trusting.

Feed it every frame the upstream links deliver (objects from any number of peers, manifests from
one); it answers with group writes for the relay's own tracks and the peers to drop.

* ``require_manifest``: an object is re-served only once the shared :class:`Verifier` accepts it
  (at once, or later when a manifest releases it from the bounded pre-manifest buffer), and a
  manifest only when it is usable. Junk therefore never travels past a verifying relay.
* otherwise a dumb but bounded relay: an object frame is re-served unchanged if it decodes within
  the limits and names this stream; a manifest if it parses within the limits and names this stream.

Either way each chunk index (and each manifest sequence) is written at most once, taken from
whichever peer delivered an acceptable copy first, and peers are charged for objects that are
their fault (malformed, forged, wrong stream -- not "no manifest yet" or "buffer full").
"""

from __future__ import annotations

import hashlib
import logging
from collections import Counter, deque
from dataclasses import dataclass, field

from ec_node.integrity.errors import PEER_FAULTS, IntegrityRejection, RejectReason
from ec_node.integrity.frames import CHUNKS_TRACK, DEFAULT_LIMITS, MANIFESTS_TRACK, Limits, decode_frame
from ec_node.integrity.manifest import parse_manifest
from ec_node.integrity.objects import check_object_stream
from ec_node.integrity.verifier import AcceptedObject, DroppedObject, Verdict, Verifier
from ec_node.pipeline.publish_core import GroupWrite

log = logging.getLogger(__name__)


#: How many written sequences per track are remembered to refuse a second write.
WRITTEN_WINDOW = 65536


@dataclass(frozen=True)
class PeerDropped:
    peer: str
    rejections: int
    last_reason: str


@dataclass
class RelayStep:
    """The result of one input: writes to apply in order, and upstreams to disconnect."""

    writes: list[GroupWrite] = field(default_factory=list)
    dropped_peers: list[PeerDropped] = field(default_factory=list)


class _Written:
    """Sequences already written to one track (with a digest of what), remembered in a bounded window."""

    def __init__(self, window: int = WRITTEN_WINDOW) -> None:
        self._seen: dict[int, bytes] = {}
        self._order: deque[int] = deque()
        self._window = window
        self._floor = -1  # forgotten sequences are all <= this: treat them as written

    def __contains__(self, seq: int) -> bool:
        return seq <= self._floor or seq in self._seen

    def digest(self, seq: int) -> bytes | None:
        return self._seen.get(seq)

    def add(self, seq: int, digest: bytes = b"") -> None:
        self._seen[seq] = digest
        self._order.append(seq)
        if len(self._order) > self._window:
            old = self._order.popleft()
            self._seen.pop(old, None)
            self._floor = max(self._floor, old)


def _digest(data: bytes | memoryview) -> bytes:
    return hashlib.blake2b(data, digest_size=16).digest()


@dataclass
class RelayStats:
    objects_in: int = 0
    objects_out: int = 0
    duplicates: int = 0
    manifests_in: int = 0
    manifests_out: int = 0
    manifests_rejected: int = 0
    rejected_by_reason: Counter[str] = field(default_factory=Counter)


class RelayCore:
    def __init__(
        self,
        stream_id: str,
        verifier: Verifier | None,
        *,
        max_peer_rejections: int | None = None,
        limits: Limits = DEFAULT_LIMITS,
    ) -> None:
        """``verifier`` None makes the dumb relay; otherwise nothing unverified is re-served."""
        if verifier is not None and verifier.stream_id != stream_id:
            raise ValueError("verifier is for another stream")
        self.stream_id = stream_id
        self.verifier = verifier
        self.max_peer_rejections = max_peer_rejections
        self.limits = limits
        self.stats = RelayStats()
        self.peer_rejections: Counter[str] = Counter()
        self.dropped: set[str] = set()
        self.served_by: Counter[str] = Counter()  # peer -> objects re-served from its copy
        self._chunks = _Written()
        self._manifests = _Written()

    @property
    def require_manifest(self) -> bool:
        return self.verifier is not None

    # ------------------------------------------------------------------ inputs
    def on_oversized(self, sequence: int, peer: str) -> RelayStep:
        """The transport refused a group over the size limit: the sender is charged."""
        step = RelayStep()
        self._charge(peer, RejectReason.TOO_LARGE, f"group {sequence} over the size limit", step)
        return step

    def on_object(self, data: bytes, peer: str) -> RelayStep:
        """One group of the ``chunks`` track from ``peer``."""
        step = RelayStep()
        if peer in self.dropped:
            return step
        self.stats.objects_in += 1
        if self.verifier is None:
            self._dumb_object(data, peer, step)
            return step
        d = self.verifier.add_object(data, source=peer)
        self._charge_dropped(d.dropped, step)
        if d.verdict is Verdict.REJECTED:
            assert d.reason is not None
            self._charge(peer, d.reason, f"object {d.chunk_index}: {d.detail}", step)
        elif d.verdict is Verdict.DUPLICATE:
            self.stats.duplicates += 1
            self._check_duplicate(data, peer, step)
        for a in d.released:
            self._forward(a, step)
        return step

    def on_manifest(self, data: bytes, peer: str, sequence: int) -> RelayStep:
        """One group of the ``manifests`` track, re-served at the ``sequence`` it arrived with."""
        step = RelayStep()
        self.stats.manifests_in += 1
        if self.verifier is None:
            try:
                m = parse_manifest(data, self.limits)
            except IntegrityRejection as e:
                self._manifest_rejected(peer, e.reason, e.detail)
                return step
            if m.body.stream_id != self.stream_id:
                self._manifest_rejected(peer, RejectReason.WRONG_STREAM, f"manifest is for {m.body.stream_id!r}")
                return step
            self._write_manifest(sequence, data, step)
            return step
        d = self.verifier.add_manifest(data)
        if d.verdict is Verdict.REJECTED:
            assert d.reason is not None
            self._manifest_rejected(peer, d.reason, d.detail)
        elif d.verdict is Verdict.ACCEPTED:
            if d.epoch is not None and d.epoch != sequence:
                log.info("manifest for epoch %s arrived as group %d from %s", d.epoch, sequence, peer)
            self._write_manifest(sequence, data, step)  # before the objects it releases
            self._charge_dropped(d.dropped, step)
            for a in d.released:
                self._forward(a, step)
        return step

    def on_manifests_gone(self) -> RelayStep:
        """No more manifests will come: buffered objects can never be vouched for."""
        step = RelayStep()
        if self.verifier is not None:
            self._charge_dropped(self.verifier.drop_pending(), step)
        return step

    @property
    def pending_count(self) -> int:
        return 0 if self.verifier is None else self.verifier.pending_count

    # ------------------------------------------------------------------ internals
    def _dumb_object(self, data: bytes, peer: str, step: RelayStep) -> None:
        try:
            meta = decode_frame(data, self.limits).meta
            check_object_stream(meta, self.stream_id)
        except IntegrityRejection as e:
            self._charge(peer, e.reason, e.detail, step)
            return
        if meta.chunk_index in self._chunks:
            self.stats.duplicates += 1
            return
        self._write_object(meta.chunk_index, data, peer, step)

    def _check_duplicate(self, data: bytes, peer: str, step: RelayStep) -> None:
        """The verifier does not re-judge an index it already accepted; a late forgery is still a lie.

        A copy that names another hash than the manifest is refuted outright. With the stream key,
        sealing is deterministic (the nonce derives from index and plaintext hash), so a copy with
        the accepted hash but other ciphertext cannot be genuine either.
        """
        assert self.verifier is not None
        frame = decode_frame(data, self.limits)  # already decoded once by the verifier: cannot fail
        idx = frame.meta.chunk_index
        expected = self.verifier.expected_hash(idx)
        if expected is not None and frame.meta.chunk_hash != expected:
            self._charge(peer, RejectReason.HASH_MISMATCH, f"object {idx}: hash differs from the manifest", step)
            return
        accepted = self._chunks.digest(idx)
        if not self.verifier.keyless and accepted and _digest(frame.payload) != accepted:
            self._charge(peer, RejectReason.BAD_AEAD, f"object {idx}: ciphertext differs from the accepted copy", step)

    def _forward(self, a: AcceptedObject, step: RelayStep) -> None:
        if a.chunk_index in self._chunks:
            self.stats.duplicates += 1
            return
        self._write_object(a.chunk_index, a.frame, a.source or "?", step)

    def _write_object(self, index: int, frame: bytes, peer: str, step: RelayStep) -> None:
        self._chunks.add(index, _digest(decode_frame(frame, self.limits).payload) if self.verifier else b"")
        self.stats.objects_out += 1
        self.served_by[peer] += 1
        step.writes.append(GroupWrite(CHUNKS_TRACK, index, frame))

    def _write_manifest(self, sequence: int, data: bytes, step: RelayStep) -> None:
        if sequence < 0 or sequence in self._manifests:
            return
        self._manifests.add(sequence)
        self.stats.manifests_out += 1
        step.writes.append(GroupWrite(MANIFESTS_TRACK, sequence, bytes(data)))

    def _manifest_rejected(self, peer: str, reason: RejectReason, detail: str) -> None:
        # the manifests source is a single link: it is logged, never dropped (nothing would replace it)
        self.stats.manifests_rejected += 1
        log.warning("manifest from %s not re-served: %s (%s)", peer, reason.value, detail)

    def _charge_dropped(self, dropped: tuple[DroppedObject, ...], step: RelayStep) -> None:
        """Buffered objects the verifier gave up on (evicted, stale, no manifest, refuted): charge their sender."""
        for x in dropped:
            self._charge(x.source or "?", x.reason, x.detail, step)

    def _charge(self, peer: str, reason: RejectReason, detail: str, step: RelayStep) -> None:
        self.stats.rejected_by_reason[reason.value] += 1
        if reason not in PEER_FAULTS:
            log.info("object from %s not re-served: %s (%s)", peer, reason.value, detail)
            return
        self.peer_rejections[peer] += 1
        n = self.peer_rejections[peer]
        log.warning("invalid object from %s (%d so far): %s (%s)", peer, n, reason.value, detail)
        limit = self.max_peer_rejections
        if limit is not None and n > limit and peer not in self.dropped and peer != "?":
            self.dropped.add(peer)
            # copies of it still buffered stay there: if a manifest vouches for one, it is fine to serve
            step.dropped_peers.append(PeerDropped(peer, n, reason.value))


__all__ = ["PeerDropped", "RelayCore", "RelayStats", "RelayStep"]
