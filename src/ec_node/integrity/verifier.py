"""The acceptance policy, as one sans-I/O state machine shared by subscribers and relays.

"No manifests, no data": feed it manifest frames and object frames in any order; it answers each with
a typed decision. An object is accepted only when it opens under the stream key, its plaintext hashes
to its ``chunk_hash``, and a *usable* manifest (id matches body, enough trusted signatures verify,
right stream) lists that hash at its index (or its Merkle proof reaches that manifest's root) and,
in version 2, commits to exactly that object frame. Without the key, the version-2 commitment is
what checks the ciphertext. Objects that arrive before their manifest wait in a buffer bounded by
count and bytes. PROTOCOL.md §9.
"""

from __future__ import annotations

import heapq
import logging
from collections import Counter, OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

import blake3

from ec_node.integrity.aead import StreamCipher
from ec_node.integrity.errors import IntegrityRejection, RejectReason
from ec_node.integrity.frames import DEFAULT_LIMITS, Limits, ObjectMeta, decode_frame
from ec_node.integrity.keys import parse_signer_id
from ec_node.integrity.manifest import Manifest, check_manifest_body, parse_epoch_id, parse_manifest
from ec_node.integrity.merkle import verify_proof
from ec_node.integrity.objects import check_object_stream, open_frame

log = logging.getLogger("ec_node.integrity")


class Verdict(StrEnum):
    """Outcome of feeding one manifest or object to a :class:`Verifier`."""

    ACCEPTED = "accepted"
    PENDING = "pending"  # valid by itself; waiting for a manifest that covers its index
    DUPLICATE = "duplicate"  # already accepted (or already waiting); nothing to do
    REJECTED = "rejected"


class SlotState(StrEnum):
    """What the usable manifests say about one chunk index."""

    PRESENT = "present"  # a usable manifest lists a chunk at this index
    ABSENT = "absent"  # a usable manifest says this index produced no chunk
    UNKNOWN = "unknown"  # no usable manifest covers this index (yet, or any more)


@dataclass(frozen=True)
class AcceptedObject:
    """An object the policy accepted: the frame to forward or cache and, with the key, its plaintext."""

    chunk_index: int
    meta: ObjectMeta
    frame: bytes  # the original frame, to forward or cache as is
    plaintext: bytes | None  # None only for a keyless (relay) verifier
    manifest_id: str
    source: str = ""  # the caller's tag from add_object: who delivered the copy that was accepted


@dataclass(frozen=True)
class DroppedObject:
    """A buffered object removed without acceptance (reason is also counted in ``object_rejections``)."""

    chunk_index: int
    reason: RejectReason
    detail: str
    source: str = ""  # who sent it (the caller's tag from add_object), so the right peer is blamed


@dataclass(frozen=True)
class ObjectDecision:
    """The answer to :meth:`Verifier.add_object`, with any objects released or evicted along the way."""

    verdict: Verdict
    chunk_index: int | None
    reason: RejectReason | None = None
    detail: str = ""
    released: tuple[AcceptedObject, ...] = ()  # (itself) when ACCEPTED
    dropped: tuple[DroppedObject, ...] = ()  # buffered objects evicted to make room


@dataclass(frozen=True)
class ManifestDecision:
    """The answer to one manifest, with the buffered objects it released or refuted."""

    verdict: Verdict
    manifest: Manifest | None
    epoch: int | None = None
    reason: RejectReason | None = None
    detail: str = ""
    released: tuple[AcceptedObject, ...] = ()  # buffered objects this manifest authorized, by index
    dropped: tuple[DroppedObject, ...] = ()  # buffered objects this manifest refuted
    pinned_signer: str | None = None  # set when this manifest's signer was trusted on first use


@dataclass
class _Pending:
    index: int
    meta: ObjectMeta
    frame: bytes
    plaintext: bytes | None
    size: int
    source: str
    digest: bytes  # fingerprint of the ciphertext, computed once on arrival


class Verifier:
    """Acceptance policy for one subscribed stream.

    ``stream_key=None`` makes a keyless verifier for relays without the network secret: it checks
    manifests and each object's meta against them, but cannot check the ciphertext itself.
    ``trusted_signers`` (``--trust-signer``) pins signer ids; with none and ``trust_on_first_use``,
    the first signer of a self-consistent manifest is pinned and logged.

    ``require_manifest=False`` is the unverified mode (no ``--require-manifest``): an object that is
    self-consistent (decodes, names the stream, and with a key opens and hashes right) is accepted at
    once unless a usable manifest says otherwise. In both modes this is the one place that judges
    duplicates: a second copy of an accepted index is a duplicate if its ciphertext is the same, and
    a proven lie if it names another hash than the manifest or (with the key: sealing is
    deterministic) carries other ciphertext.
    """

    def __init__(
        self,
        stream_id: str,
        stream_key: bytes | None,
        *,
        trusted_signers: Iterable[str] = (),
        trust_on_first_use: bool = True,
        max_pending_objects: int = 32,
        max_pending_bytes: int = 128 * 1024 * 1024,
        max_pending_per_source: int | None = None,
        max_retained_slots: int = 65536,
        limits: Limits = DEFAULT_LIMITS,
        require_manifest: bool = True,
        keep_plaintext: bool = True,
        min_signers: int = 1,
    ) -> None:
        if max_retained_slots < limits.max_manifest_chunks:
            raise ValueError("max_retained_slots must be >= limits.max_manifest_chunks")
        if min_signers < 1:
            raise ValueError("min_signers must be >= 1")
        self.stream_id = stream_id
        self._cipher = StreamCipher(stream_id, stream_key) if stream_key is not None else None
        self._trusted: set[str] = {parse_signer_id(s) for s in trusted_signers}
        self._tofu = trust_on_first_use and not self._trusted and min_signers == 1
        if min_signers > 1 and min_signers > len(self._trusted):
            raise ValueError(f"min_signers {min_signers} needs at least that many trusted signers")
        self.min_signers = min_signers
        self.max_pending_objects = max_pending_objects
        self.max_pending_bytes = max_pending_bytes
        self.max_pending_per_source = max_pending_per_source  # None: no per-source share
        self.max_retained_slots = max_retained_slots
        self.limits = limits
        self.require_manifest = require_manifest  # False: a self-consistent object needs no manifest
        self.keep_plaintext = keep_plaintext  # False (relays): check plaintext, then let it go
        self._cover: dict[int, Manifest] = {}
        self._heap: list[int] = []
        self._floor = 0  # indices below this were forgotten: objects for them are stale
        self._accepted: dict[int, bytes] = {}  # index -> digest of the accepted copy's ciphertext
        self._pending: dict[int, list[_Pending]] = {}
        self._pending_count = 0
        self._pending_bytes = 0
        self._usable_ids: OrderedDict[str, None] = OrderedDict()
        self._obj_rej: Counter[RejectReason] = Counter()
        self._man_rej: Counter[RejectReason] = Counter()
        self.accepted_objects = 0
        self.accepted_manifests = 0

    # ------------------------------------------------------------ introspection

    @property
    def keyless(self) -> bool:
        """True without the stream key (a relay): ciphertext cannot be checked."""
        return self._cipher is None

    @property
    def trusted_signers(self) -> frozenset[str]:
        """Signer ids trusted now, including one pinned on first use."""
        return frozenset(self._trusted)

    @property
    def pending_count(self) -> int:
        """Objects waiting in the pre-manifest buffer."""
        return self._pending_count

    @property
    def pending_bytes(self) -> int:
        """Bytes held by the pre-manifest buffer (frames plus any kept plaintext)."""
        return self._pending_bytes

    def pending_indices(self) -> list[int]:
        """Sorted chunk indices that have objects waiting for a manifest."""
        return sorted(self._pending)

    @property
    def object_rejections(self) -> dict[RejectReason, int]:
        """Object rejections and drops, counted by reason."""
        return dict(self._obj_rej)

    @property
    def manifest_rejections(self) -> dict[RejectReason, int]:
        """Manifest rejections, counted by reason."""
        return dict(self._man_rej)

    @property
    def rejected_objects(self) -> int:
        """Total object rejections (what ``--max-invalid-chunks`` is compared against)."""
        return sum(self._obj_rej.values())

    def manifest_for(self, chunk_index: int) -> Manifest | None:
        """The retained usable manifest covering ``chunk_index``, if any."""
        return self._cover.get(chunk_index)

    def slot_state(self, chunk_index: int) -> SlotState:
        """Whether usable manifests list a chunk, list none, or say nothing at ``chunk_index``."""
        m = self._cover.get(chunk_index)
        if m is None:
            return SlotState.UNKNOWN
        return SlotState.ABSENT if m.body.slot(chunk_index) == "" else SlotState.PRESENT

    def expected_hash(self, chunk_index: int) -> str | None:
        """Hex hash a usable manifest lists at ``chunk_index``; None if it lists none or none covers it."""
        m = self._cover.get(chunk_index)
        return None if m is None else m.body.slot(chunk_index) or None

    # ------------------------------------------------------------ manifests

    def add_manifest(self, data: bytes | bytearray | memoryview) -> ManifestDecision:
        """Feed one frame of the ``manifests`` track."""
        try:
            manifest = parse_manifest(data, self.limits)
        except IntegrityRejection as e:
            return self._reject_manifest(None, e.reason, e.detail)
        return self.add_parsed_manifest(manifest)

    def add_parsed_manifest(self, manifest: Manifest) -> ManifestDecision:
        """Judge an already parsed manifest; if usable, record its window and settle the buffered objects it covers."""
        body = manifest.body
        if manifest.manifest_id in self._usable_ids:
            return ManifestDecision(Verdict.DUPLICATE, manifest, parse_epoch_id(body.stream_id, body.epoch_id))
        if body.stream_id != self.stream_id:
            return self._reject_manifest(manifest, RejectReason.WRONG_STREAM, f"manifest is for {body.stream_id!r}")
        try:
            check_manifest_body(manifest)
        except IntegrityRejection as e:
            return self._reject_manifest(manifest, e.reason, e.detail)
        epoch = parse_epoch_id(body.stream_id, body.epoch_id)
        valid = manifest.valid_signers()
        if not valid:
            return self._reject_manifest(manifest, RejectReason.BAD_SIGNATURE, "no signature verifies")
        pinned: str | None = None
        trusted = [s for s in valid if s in self._trusted]
        if not self._tofu and not trusted:
            return self._reject_manifest(
                manifest, RejectReason.UNTRUSTED_SIGNER, f"signed only by untrusted {', '.join(valid)}"
            )
        if not self._tofu and len(trusted) < self.min_signers:
            return self._reject_manifest(
                manifest,
                RejectReason.TOO_FEW_SIGNERS,
                f"{len(trusted)} trusted signer(s) of the {self.min_signers} required: {', '.join(trusted)}",
            )
        if body.end_index <= self._floor:
            return self._reject_manifest(manifest, RejectReason.STALE, "manifest window already forgotten")
        for i in range(max(body.chunk_start_index, self._floor), body.end_index):
            old = self._cover.get(i)
            if old is not None and not _consistent(old, manifest, i):
                return self._reject_manifest(
                    manifest, RejectReason.CONFLICT, f"contradicts usable manifest {old.manifest_id} at index {i}"
                )
        if self._tofu:
            pinned = valid[0]
            self._trusted.add(pinned)
            self._tofu = False
            log.warning(
                "trusting manifest signer %s on first use for %s (pin it with --trust-signer)", pinned, self.stream_id
            )
        # usable: record coverage (a manifest listing hashes replaces a root-only one)
        for i in range(max(body.chunk_start_index, self._floor), body.end_index):
            old = self._cover.get(i)
            if old is None:
                heapq.heappush(self._heap, i)
                self._cover[i] = manifest
            elif not old.body.chunk_hashes and body.chunk_hashes:
                self._cover[i] = manifest
        self._usable_ids[manifest.manifest_id] = None
        while len(self._usable_ids) > 4096:
            self._usable_ids.popitem(last=False)
        self.accepted_manifests += 1
        released: list[AcceptedObject] = []
        dropped: list[DroppedObject] = []
        for i in sorted(k for k in self._pending if body.covers(k)):
            entries = self._pending.pop(i)
            for p in entries:
                self._pending_count -= 1
                self._pending_bytes -= p.size
                if i in self._accepted:
                    # another copy at this index was just accepted: judge this one as a later copy
                    later = self._judge_duplicate(i, p.meta, p.digest)
                    if later.verdict is Verdict.REJECTED and later.reason is not None:
                        dropped.append(DroppedObject(i, later.reason, later.detail, p.source))
                    continue
                outcome = self._judge(i, p.meta, p.frame, p.plaintext, self._cover[i], p.source, p.digest)
                if isinstance(outcome, AcceptedObject):
                    released.append(outcome)
                else:
                    dropped.append(outcome)
        dropped.extend(self._evict())
        return ManifestDecision(
            Verdict.ACCEPTED, manifest, epoch, released=tuple(released), dropped=tuple(dropped), pinned_signer=pinned
        )

    def _reject_manifest(self, manifest: Manifest | None, reason: RejectReason, detail: str) -> ManifestDecision:
        self._man_rej[reason] += 1
        log.debug("manifest rejected (%s): %s", reason.value, detail)
        return ManifestDecision(Verdict.REJECTED, manifest, None, reason, detail)

    def _evict(self) -> list[DroppedObject]:
        dropped: list[DroppedObject] = []
        while len(self._cover) > self.max_retained_slots and self._heap:
            i = heapq.heappop(self._heap)
            if self._cover.pop(i, None) is not None:
                self._accepted.pop(i, None)
                self._floor = max(self._floor, i + 1)
        for i in [k for k in self._pending if k < self._floor]:
            for p in self._pending.pop(i):
                self._pending_count -= 1
                self._pending_bytes -= p.size
                dropped.append(self._drop(i, RejectReason.STALE, "its manifest window was forgotten", p.source))
        return dropped

    # ------------------------------------------------------------ objects

    def add_object(self, data: bytes | bytearray | memoryview, source: str = "") -> ObjectDecision:
        """Feed one frame of the ``chunks`` track; ``source`` tags it (a peer) in later drops."""
        try:
            frame = decode_frame(data, self.limits)
            meta = frame.meta
            check_object_stream(meta, self.stream_id)
        except IntegrityRejection as e:
            return self._reject_object(None, e.reason, e.detail)
        idx = meta.chunk_index
        if idx < self._floor:
            return self._reject_object(idx, RejectReason.STALE, "older than the retained manifest window")
        digest = _digest(frame.payload)
        if idx in self._accepted:
            return self._judge_duplicate(idx, meta, digest)
        plaintext: bytes | None = None
        if self._cipher is not None:
            try:
                plaintext = open_frame(self._cipher, frame).plaintext
            except IntegrityRejection as e:
                return self._reject_object(idx, e.reason, e.detail)
        raw = data if isinstance(data, bytes) else bytes(data)
        manifest = self._cover.get(idx)
        if manifest is None and not self.require_manifest:
            accepted = self._accept(idx, meta, raw, plaintext, "", source, digest)
            return ObjectDecision(Verdict.ACCEPTED, idx, released=(accepted,))
        if manifest is not None:
            outcome = self._judge(idx, meta, raw, plaintext, manifest, source, digest)
            if isinstance(outcome, AcceptedObject):
                return ObjectDecision(Verdict.ACCEPTED, idx, released=(outcome,))
            return ObjectDecision(Verdict.REJECTED, idx, outcome.reason, outcome.detail)
        return self._buffer(idx, meta, raw, plaintext if self.keep_plaintext else None, source, digest)

    def _buffer(
        self,
        idx: int,
        meta: ObjectMeta,
        raw: bytes,
        plaintext: bytes | None,
        source: str,
        digest: bytes,
    ) -> ObjectDecision:
        for p in self._pending.get(idx, ()):
            # by the whole frame, not the claimed hash or the ciphertext alone: a forgery may copy
            # the honest metadata or the honest ciphertext, and must not make the honest copy that
            # follows it look like a duplicate
            if p.frame == raw:
                return ObjectDecision(Verdict.DUPLICATE, idx)
        size = len(raw) + (len(plaintext) if plaintext is not None else 0)
        if self.max_pending_objects < 1 or size > self.max_pending_bytes:
            return self._reject_object(idx, RejectReason.NO_MANIFEST, "no usable manifest and too big to buffer")
        dropped: list[DroppedObject] = []
        # a source may hold at most its share of the buffer, so nobody can starve the others by filling it
        share = self.max_pending_per_source
        while share is not None and self._source_count(source) + 1 > share:
            top = max(i for i, ps in self._pending.items() if any(p.source == source for p in ps))
            if top <= idx:
                return self._reject_object(
                    idx, RejectReason.BUFFER_FULL, "this source's share of the buffer is full", dropped=tuple(dropped)
                )
            dropped.append(self._evict_pending(top, source))
        while self._pending and (
            self._pending_count + 1 > self.max_pending_objects or self._pending_bytes + size > self.max_pending_bytes
        ):
            top = max(self._pending)  # keep the lowest indices: they are needed first
            if top <= idx:
                return self._reject_object(
                    idx, RejectReason.BUFFER_FULL, "pre-manifest buffer full", dropped=tuple(dropped)
                )
            dropped.append(self._evict_pending(top, None))
        self._pending.setdefault(idx, []).append(_Pending(idx, meta, raw, plaintext, size, source, digest))
        self._pending_count += 1
        self._pending_bytes += size
        return ObjectDecision(Verdict.PENDING, idx, dropped=tuple(dropped))

    def _source_count(self, source: str) -> int:
        return sum(1 for ps in self._pending.values() for p in ps if p.source == source)

    def _evict_pending(self, index: int, source: str | None) -> DroppedObject:
        """Remove one buffered object at ``index`` (from ``source`` if given)."""
        entries = self._pending[index]
        pos = max(k for k, p in enumerate(entries) if source is None or p.source == source)
        victim = entries.pop(pos)
        if not entries:
            del self._pending[index]
        self._pending_count -= 1
        self._pending_bytes -= victim.size
        return self._drop(index, RejectReason.BUFFER_FULL, "evicted from the pre-manifest buffer", victim.source)

    def drop_pending(
        self,
        below_index: int | None = None,
        reason: RejectReason = RejectReason.NO_MANIFEST,
        detail: str = "no manifest arrived",
    ) -> tuple[DroppedObject, ...]:
        """Give up on buffered objects (all, or those below an index), e.g. when manifests time out (or, with
        ``STALE``, when the output has passed their place)."""
        dropped: list[DroppedObject] = []
        for i in sorted(self._pending):
            if below_index is not None and i >= below_index:
                break
            for p in self._pending.pop(i):
                self._pending_count -= 1
                self._pending_bytes -= p.size
                dropped.append(self._drop(i, reason, detail, p.source))
        return tuple(dropped)

    def _judge(
        self,
        idx: int,
        meta: ObjectMeta,
        raw: bytes,
        plaintext: bytes | None,
        manifest: Manifest,
        source: str,
        digest: bytes,
    ) -> AcceptedObject | DroppedObject:
        body = manifest.body
        reason: RejectReason | None = None
        detail = ""
        committed = body.object_slot(idx)
        if meta.epoch_id != body.epoch_id or meta.chunk_duration_ms != body.chunk_duration_ms:
            reason, detail = RejectReason.META_MISMATCH, "epoch_id / chunk_duration_ms differ from the manifest"
        elif committed and blake3.blake3(raw).hexdigest() != committed:
            reason, detail = RejectReason.OBJECT_MISMATCH, "the frame is not the object the manifest commits to"
        elif committed is None and self._cipher is None and body.slot(idx) != "":
            # version 1 commits to the plaintext only (or only to a root): without the key nothing
            # checks these bytes
            reason, detail = RejectReason.UNVERIFIABLE, "a version-1 manifest cannot vouch for ciphertext keylessly"
        elif meta.chunk_proof is not None and not (
            meta.chunk_proof.leaf_index == idx - body.chunk_start_index
            and meta.chunk_proof.leaf_count == body.total_chunks
            and verify_proof(meta.chunk_hash, meta.chunk_proof, body.merkle_root)
        ):
            reason, detail = RejectReason.BAD_PROOF, "chunk_proof does not reach the manifest root"
        elif body.chunk_hashes:
            expected = body.slot(idx)
            if expected == "":
                # not proof of a lie: the leader may simply not have seen this window intact
                reason, detail = RejectReason.NOT_LISTED, "manifest lists no chunk at this index"
            elif expected != meta.chunk_hash:
                reason, detail = RejectReason.HASH_MISMATCH, "hash differs from manifest"
        elif meta.chunk_proof is None:
            reason, detail = RejectReason.BAD_PROOF, "root-only manifest and the object carries no chunk_proof"
        if reason is not None:
            return self._drop(idx, reason, f"object {idx}: {detail}", source)
        return self._accept(idx, meta, raw, plaintext, manifest.manifest_id, source, digest)

    def _accept(
        self,
        idx: int,
        meta: ObjectMeta,
        raw: bytes,
        plaintext: bytes | None,
        manifest_id: str,
        source: str,
        digest: bytes,
    ) -> AcceptedObject:
        self._accepted[idx] = digest
        while len(self._accepted) > self.max_retained_slots:  # bounded (unverified mode): forget the oldest
            old = next(iter(self._accepted))
            del self._accepted[old]
            self._floor = max(self._floor, old + 1)
        self.accepted_objects += 1
        return AcceptedObject(idx, meta, raw, plaintext if self.keep_plaintext else None, manifest_id, source)

    def _judge_duplicate(self, idx: int, meta: ObjectMeta, digest: bytes) -> ObjectDecision:
        """A copy of an index already accepted: the same ciphertext is a duplicate; anything else may be a lie."""
        if digest == self._accepted[idx]:
            return ObjectDecision(Verdict.DUPLICATE, idx)
        expected = self.expected_hash(idx)
        if expected is not None and meta.chunk_hash != expected:
            return self._reject_object(idx, RejectReason.HASH_MISMATCH, f"object {idx}: hash differs from the manifest")
        manifest = self._cover.get(idx)
        if manifest is not None and manifest.body.object_slot(idx):
            # the accepted copy matched the commitment, so this other ciphertext cannot (keyless too)
            detail = f"object {idx}: not the object the manifest commits to"
            return self._reject_object(idx, RejectReason.OBJECT_MISMATCH, detail)
        if self._cipher is not None:
            # sealing is deterministic (the nonce derives from index and plaintext hash): other
            # ciphertext for an accepted chunk cannot be genuine
            detail = f"object {idx}: ciphertext differs from the accepted copy"
            return self._reject_object(idx, RejectReason.BAD_AEAD, detail)
        return ObjectDecision(Verdict.DUPLICATE, idx)  # keyless: cannot tell, so no blame

    def _drop(self, idx: int, reason: RejectReason, detail: str, source: str = "") -> DroppedObject:
        self._obj_rej[reason] += 1
        log.debug("object %d rejected (%s): %s", idx, reason.value, detail)
        return DroppedObject(idx, reason, detail, source)

    def _reject_object(
        self, idx: int | None, reason: RejectReason, detail: str, dropped: tuple[DroppedObject, ...] = ()
    ) -> ObjectDecision:
        self._obj_rej[reason] += 1
        log.debug("object %s rejected (%s): %s", idx, reason.value, detail)
        return ObjectDecision(Verdict.REJECTED, idx, reason, detail, dropped=dropped)


def _digest(data: bytes | memoryview) -> bytes:
    """A short fingerprint of a copy's ciphertext, to tell a true duplicate from other bytes (not a MAC)."""
    return blake3.blake3(data).digest(length=16)


def _consistent(old: Manifest, new: Manifest, i: int) -> bool:
    """Two usable manifests agree about index ``i``."""
    a, b = old.body, new.body
    if a.epoch_id != b.epoch_id or a.chunk_duration_ms != b.chunk_duration_ms:
        return False
    if a.object_hashes and b.object_hashes and a.object_slot(i) != b.object_slot(i):
        return False
    if a.chunk_hashes and b.chunk_hashes:
        return a.slot(i) == b.slot(i)
    return (a.chunk_start_index, a.total_chunks, a.merkle_root) == (b.chunk_start_index, b.total_chunks, b.merkle_root)


__all__ = [
    "AcceptedObject",
    "DroppedObject",
    "ManifestDecision",
    "ObjectDecision",
    "SlotState",
    "Verdict",
    "Verifier",
]
