"""Signed manifests (ECP-0022): the only authority for which chunk bytes belong at which index.

A manifest covers one epoch: the window ``[chunk_start_index, chunk_start_index + total_chunks)``, one
slot per index, each slot the hex BLAKE3 of that chunk or "" when the window produced no chunk. The
body is hashed in canonical JSON to ``manifest_id``; Ed25519 signatures are over the 32 raw id bytes.
Parsing here checks form only; :mod:`ec_node.integrity.verifier` applies the trust policy.
PROTOCOL.md §6-§8.

Version 2 bodies (``"version": 2``) also commit to each sealed object: ``object_hashes`` holds, per
slot, the BLAKE3 of the whole object frame, under its own Merkle root ``object_root``, so a relay
without the stream key can check every object byte for byte. They carry no ``created_unix_ms``: a
version-2 body holds nothing particular to its leader, so independent leaders that saw the same
broadcast sign byte-identical bodies (k-of-n, ECP-0022).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import blake3
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from ec_node.integrity._json import (
    I64_MIN,
    U64_MAX,
    canonical_json,
    check_hex,
    get_str,
    get_uint,
    is_hex,
    loads_strict,
)
from ec_node.integrity.errors import IntegrityFormatError, IntegrityRejection, RejectReason
from ec_node.integrity.frames import DEFAULT_LIMITS, MAX_ID_CHARS, Limits
from ec_node.integrity.keys import signer_id_of
from ec_node.integrity.merkle import merkle_root
from ec_node.integrity.stream_id import is_valid_stream_id

log = logging.getLogger("ec_node.integrity")

BODY_FIELDS = frozenset(
    {
        "stream_id",
        "epoch_id",
        "chunk_duration_ms",
        "total_chunks",
        "chunk_start_index",
        "encoder_profile_id",
        "merkle_root",
        "created_unix_ms",
        "metadata",
        "chunk_hashes",
    }
)
#: Fields of a version-2 body: no per-leader time; object commitments.
BODY_FIELDS_V2 = (BODY_FIELDS - {"created_unix_ms"}) | {"version", "object_hashes", "object_root"}
MANIFEST_VERSION = 2  # what ec-node signs; version 1 (no "version" field) is still read
ABSENT = ""  # slot value for an index whose window produced no chunk
#: Metadata key of the signed link across index jumps (PROTOCOL.md §8): the index of the chunk the leader
#: published just before this epoch's first present chunk, present only when the leader saw the stream
#: intact in between. Absent (never -1 or null) otherwise, e.g. on the first manifest of a run.
PREV_CHUNK_KEY = "prev_chunk_index"


# ---------------------------------------------------------------- epochs


def prev_chunk_index(metadata: Mapping[str, Any]) -> int | None:
    """The signed ``prev_chunk_index`` link of a manifest's metadata, if it carries a valid one."""
    prev = metadata.get(PREV_CHUNK_KEY)
    return prev if isinstance(prev, int) and not isinstance(prev, bool) and prev >= 0 else None


def epoch_of(chunk_index: int, epoch_chunks: int) -> int:
    """Epoch number of a chunk: ``chunk_index // epoch_chunks``."""
    if epoch_chunks < 1:
        raise ValueError("epoch_chunks must be >= 1")
    return chunk_index // epoch_chunks


def epoch_id_for(stream_id: str, epoch: int) -> str:
    """Deterministic epoch id: ``<stream_id>/epoch-<decimal epoch number>``."""
    return f"{stream_id}/epoch-{epoch}"


def parse_epoch_id(stream_id: str, epoch_id: str) -> int | None:
    """Inverse of :func:`epoch_id_for`; None when ``epoch_id`` is not of that form."""
    prefix = f"{stream_id}/epoch-"
    if not epoch_id.startswith(prefix):
        return None
    digits = epoch_id[len(prefix) :]
    if not digits.isascii() or not digits.isdigit() or (len(digits) > 1 and digits[0] == "0") or len(digits) > 20:
        return None
    n = int(digits)
    return n if n <= U64_MAX else None


# ---------------------------------------------------------------- data model


def _check_metadata(value: Any, what: str, depth: int = 0) -> None:
    """JSON values without floats, ints in i64/u64 range, shallow: canonical across implementations."""
    if depth > 16:
        raise IntegrityFormatError(f"{what}: nested too deeply")
    if value is None or isinstance(value, bool | str):
        return
    if type(value) is int:
        if not I64_MIN <= value <= U64_MAX:
            raise IntegrityFormatError(f"{what}: integer out of 64-bit range")
        return
    if isinstance(value, list | tuple):
        for v in value:
            _check_metadata(v, what, depth + 1)
        return
    if isinstance(value, dict):
        for k, v in value.items():
            if not isinstance(k, str):
                raise IntegrityFormatError(f"{what}: object keys must be strings")
            _check_metadata(v, what, depth + 1)
        return
    raise IntegrityFormatError(f"{what}: unsupported value type {type(value).__name__}")


@dataclass(frozen=True)
class ManifestBody:
    """The signed part of a manifest: one epoch's window of chunk slots, its Merkle root and metadata."""

    stream_id: str
    epoch_id: str
    chunk_duration_ms: int
    total_chunks: int
    chunk_start_index: int
    encoder_profile_id: str
    merkle_root: str
    created_unix_ms: int | None  # version 1 only (None in version 2)
    metadata: Mapping[str, Any] = field(default_factory=dict)
    chunk_hashes: tuple[str, ...] = ()
    version: int = 1
    object_hashes: tuple[str, ...] = ()  # version 2: BLAKE3 of each slot's object frame, "" where no chunk
    object_root: str = ""  # version 2: Merkle root over object_hashes

    def to_json(self) -> dict[str, Any]:
        """JSON object form; its canonical encoding is what ``manifest_id`` hashes."""
        out: dict[str, Any] = {
            "stream_id": self.stream_id,
            "epoch_id": self.epoch_id,
            "chunk_duration_ms": self.chunk_duration_ms,
            "total_chunks": self.total_chunks,
            "chunk_start_index": self.chunk_start_index,
            "encoder_profile_id": self.encoder_profile_id,
            "merkle_root": self.merkle_root,
            "metadata": dict(self.metadata),
            "chunk_hashes": list(self.chunk_hashes),
        }
        if self.version == 1:
            out["created_unix_ms"] = self.created_unix_ms
        else:
            out.update(version=self.version, object_hashes=list(self.object_hashes), object_root=self.object_root)
        return out

    def canonical_bytes(self) -> bytes:
        """Canonical JSON of the body: the bytes :meth:`compute_id` hashes."""
        return canonical_json(self.to_json())

    def compute_id(self) -> str:
        """``manifest_id`` = hex BLAKE3 of the canonical JSON of this body."""
        return blake3.blake3(self.canonical_bytes()).hexdigest()

    @property
    def epoch(self) -> int:
        """Epoch number (the group sequence on the ``manifests`` track)."""
        return self.chunk_start_index // self.total_chunks if self.total_chunks else 0

    @property
    def end_index(self) -> int:
        """One past the last covered index."""
        return self.chunk_start_index + self.total_chunks

    def covers(self, chunk_index: int) -> bool:
        """Whether ``chunk_index`` lies in this manifest's window."""
        return self.chunk_start_index <= chunk_index < self.end_index

    def slot(self, chunk_index: int) -> str | None:
        """Hex hash at ``chunk_index``, "" if that window produced no chunk, None if not listed."""
        if not self.covers(chunk_index) or not self.chunk_hashes:
            return None
        return self.chunk_hashes[chunk_index - self.chunk_start_index]

    def object_slot(self, chunk_index: int) -> str | None:
        """Version 2: hex BLAKE3 of the object frame committed at ``chunk_index`` ("" none); None in version 1."""
        if not self.covers(chunk_index) or not self.object_hashes:
            return None
        return self.object_hashes[chunk_index - self.chunk_start_index]

    @classmethod
    def from_json(cls, obj: Any, limits: Limits = DEFAULT_LIMITS) -> ManifestBody:
        """Parse a body with exactly the known fields, checking types, bounds and slots; raises IntegrityFormatError."""
        what = "manifest body"
        if not isinstance(obj, dict):
            raise IntegrityFormatError(f"{what}: expected a JSON object")
        keys = set(obj)
        version = obj.get("version", 1)
        if type(version) is not int or version not in (1, 2) or ("version" in obj and version == 1):
            raise IntegrityFormatError(f"{what}: version must be absent (1) or the integer 2")
        fields = BODY_FIELDS if version == 1 else BODY_FIELDS_V2
        if keys != fields:
            extra, missing = sorted(keys - fields), sorted(fields - keys)
            raise IntegrityFormatError(f"{what}: fields differ (unknown {extra}, missing {missing})")
        stream_id = get_str(obj, "stream_id", what, max_len=1024)
        if not is_valid_stream_id(stream_id):
            raise IntegrityFormatError(f"{what}: invalid stream_id")
        total = get_uint(obj, "total_chunks", what, maximum=limits.max_manifest_chunks)
        start = get_uint(obj, "chunk_start_index", what)
        if total < 1:
            raise IntegrityFormatError(f"{what}: total_chunks must be at least 1")
        if start + total - 1 > U64_MAX:
            raise IntegrityFormatError(f"{what}: window runs past the u64 index range")
        root = get_str(obj, "merkle_root", what)
        check_hex(root, 32, f"{what}: merkle_root")
        hashes = obj["chunk_hashes"]
        if not isinstance(hashes, list):
            raise IntegrityFormatError(f"{what}: field 'chunk_hashes' must be a list")
        if hashes and len(hashes) != total:
            raise IntegrityFormatError(f"{what}: chunk_hashes must list total_chunks slots (or none)")
        for h in hashes:
            if not isinstance(h, str) or not (h == ABSENT or is_hex(h, 32)):
                raise IntegrityFormatError(f"{what}: chunk_hashes entries must be 64 lowercase hex digits or ''")
        objects: list[str] = []
        object_root = ""
        if version == 2:
            objects = obj["object_hashes"]
            if not isinstance(objects, list) or len(objects) != total or len(hashes) != total:
                raise IntegrityFormatError(f"{what}: version 2 lists total_chunks chunk_hashes and object_hashes")
            for h, o in zip(hashes, objects, strict=True):
                if not isinstance(o, str) or not (o == ABSENT or is_hex(o, 32)) or (o == ABSENT) != (h == ABSENT):
                    raise IntegrityFormatError(f"{what}: object_hashes must be 64 hex digits exactly where chunks are")
            object_root = get_str(obj, "object_root", what)
            check_hex(object_root, 32, f"{what}: object_root")
        metadata = obj["metadata"]
        if not isinstance(metadata, dict):
            raise IntegrityFormatError(f"{what}: field 'metadata' must be a JSON object")
        _check_metadata(metadata, f"{what}: metadata")
        if len(canonical_json(metadata)) > limits.max_metadata_bytes:
            raise IntegrityFormatError(f"{what}: metadata exceeds {limits.max_metadata_bytes} bytes", too_large=True)
        return cls(
            stream_id=stream_id,
            epoch_id=get_str(obj, "epoch_id", what, max_len=MAX_ID_CHARS),
            chunk_duration_ms=get_uint(obj, "chunk_duration_ms", what, maximum=0xFFFFFFFF),
            total_chunks=total,
            chunk_start_index=start,
            encoder_profile_id=get_str(obj, "encoder_profile_id", what, max_len=256),
            merkle_root=root,
            created_unix_ms=get_uint(obj, "created_unix_ms", what) if version == 1 else None,
            metadata=metadata,
            chunk_hashes=tuple(hashes),
            version=version,
            object_hashes=tuple(objects),
            object_root=object_root,
        )


@dataclass(frozen=True)
class ManifestSignature:
    """One signer's Ed25519 signature over the raw ``manifest_id`` bytes."""

    signer_id: str  # hex Ed25519 public key
    signature: str  # hex Ed25519 signature over the 32 raw bytes of manifest_id

    def to_json(self) -> dict[str, Any]:
        """JSON form, one entry of the manifest's ``signatures`` list."""
        return {"signer_id": self.signer_id, "signature": self.signature}


@dataclass(frozen=True)
class Manifest:
    """A body, its claimed id and the signatures over that id, as carried on the ``manifests`` track."""

    body: ManifestBody
    manifest_id: str
    signatures: tuple[ManifestSignature, ...]

    def to_json(self) -> dict[str, Any]:
        """JSON object form; :meth:`encode` serializes it canonically."""
        return {
            "body": self.body.to_json(),
            "manifest_id": self.manifest_id,
            "signatures": [s.to_json() for s in self.signatures],
        }

    def encode(self) -> bytes:
        """The frame payload on the ``manifests`` track: canonical JSON of the whole manifest."""
        return canonical_json(self.to_json())

    def valid_signers(self) -> list[str]:
        """Signer ids whose signature verifies over ``manifest_id`` (form is trusted; math is checked)."""
        if not is_hex(self.manifest_id, 32):
            return []
        msg = bytes.fromhex(self.manifest_id)
        out: list[str] = []
        for s in self.signatures:
            try:
                Ed25519PublicKey.from_public_bytes(bytes.fromhex(s.signer_id)).verify(bytes.fromhex(s.signature), msg)
            except (InvalidSignature, ValueError):
                continue
            if s.signer_id not in out:
                out.append(s.signer_id)
        return out


def parse_manifest(data: bytes | bytearray | memoryview, limits: Limits = DEFAULT_LIMITS) -> Manifest:
    """Decode a ``manifests``-track frame; checks form only and raises only :class:`IntegrityFormatError`."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise IntegrityFormatError("manifest must be bytes")
    try:
        n = memoryview(data).nbytes
    except TypeError:
        raise IntegrityFormatError("manifest must be a byte buffer") from None
    if n > limits.max_manifest_bytes:
        raise IntegrityFormatError(f"manifest of {n} bytes exceeds limit {limits.max_manifest_bytes}", too_large=True)
    what = "manifest"
    obj = loads_strict(data, what)
    body = ManifestBody.from_json(obj.get("body"), limits)
    mid = get_str(obj, "manifest_id", what)
    check_hex(mid, 32, f"{what}: manifest_id")
    sigs = obj.get("signatures")
    if not isinstance(sigs, list):
        raise IntegrityFormatError(f"{what}: field 'signatures' must be a list")
    if len(sigs) > limits.max_signatures:
        raise IntegrityFormatError(f"{what}: more than {limits.max_signatures} signatures", too_large=True)
    parsed: list[ManifestSignature] = []
    for s in sigs:
        if not isinstance(s, dict):
            raise IntegrityFormatError(f"{what}: signatures must be JSON objects")
        sid = get_str(s, "signer_id", f"{what}: signature")
        sig = get_str(s, "signature", f"{what}: signature")
        check_hex(sid, 32, f"{what}: signer_id")
        check_hex(sig, 64, f"{what}: signature")
        parsed.append(ManifestSignature(sid, sig))
    return Manifest(body=body, manifest_id=mid, signatures=tuple(parsed))


def check_manifest_body(manifest: Manifest) -> None:
    """Self-consistency: id matches body, root matches slots, epoch id matches window. Raises a rejection."""
    body = manifest.body
    if body.compute_id() != manifest.manifest_id:
        raise IntegrityRejection(RejectReason.BAD_MANIFEST_ID, "body does not hash to manifest_id")
    if body.chunk_hashes and merkle_root(list(body.chunk_hashes)) != body.merkle_root:
        raise IntegrityRejection(RejectReason.BAD_MERKLE_ROOT, "merkle_root does not match chunk_hashes")
    if body.version >= 2 and merkle_root(list(body.object_hashes)) != body.object_root:
        raise IntegrityRejection(RejectReason.BAD_MERKLE_ROOT, "object_root does not match object_hashes")
    epoch = parse_epoch_id(body.stream_id, body.epoch_id)
    if epoch is None or body.chunk_start_index != epoch * body.total_chunks:
        raise IntegrityRejection(
            RejectReason.MALFORMED, "epoch_id must be <stream_id>/epoch-<n> with chunk_start_index = n*total_chunks"
        )


# ---------------------------------------------------------------- building and signing


def sign_manifest(body: ManifestBody, *keys: Ed25519PrivateKey) -> Manifest:
    """Compute the id and sign it with each key (several signers may vouch for one body)."""
    mid = body.compute_id()
    raw = bytes.fromhex(mid)
    sigs = tuple(ManifestSignature(signer_id_of(k), k.sign(raw).hex()) for k in keys)
    return Manifest(body=body, manifest_id=mid, signatures=sigs)


def add_signature(manifest: Manifest, key: Ed25519PrivateKey) -> Manifest:
    """Co-sign an existing manifest (after checking its id) without touching its body."""
    check_manifest_body(manifest)
    sig = ManifestSignature(signer_id_of(key), key.sign(bytes.fromhex(manifest.manifest_id)).hex())
    return Manifest(manifest.body, manifest.manifest_id, (*manifest.signatures, sig))


def build_epoch_body(
    stream_id: str,
    epoch: int,
    epoch_chunks: int,
    chunks: Mapping[int, str],
    *,
    chunk_duration_ms: int,
    encoder_profile_id: str,
    created_unix_ms: int | None = None,
    metadata: Mapping[str, Any] | None = None,
    objects: Mapping[int, str] | None = None,
) -> ManifestBody:
    """Body for ``epoch``: one slot per index of its window, "" where ``chunks`` has no entry.

    With ``objects`` (index -> hex BLAKE3 of the object frame, for the same indices as ``chunks``)
    a version-2 body; else version 1, which needs ``created_unix_ms``.
    """
    if epoch_chunks < 1:
        raise ValueError("epoch_chunks must be >= 1")
    start = epoch * epoch_chunks
    for i in chunks:
        if not start <= i < start + epoch_chunks:
            raise ValueError(f"chunk {i} is outside epoch {epoch}")
    slots = tuple(chunks.get(start + k, ABSENT) for k in range(epoch_chunks))
    for h in slots:
        if not (h == ABSENT or is_hex(h, 32)):
            raise ValueError("chunk hashes must be 64 lowercase hex digits")
    meta = dict(metadata or {})
    _check_metadata(meta, "metadata")
    body = ManifestBody(
        stream_id=stream_id,
        epoch_id=epoch_id_for(stream_id, epoch),
        chunk_duration_ms=chunk_duration_ms,
        total_chunks=epoch_chunks,
        chunk_start_index=start,
        encoder_profile_id=encoder_profile_id,
        merkle_root=merkle_root(list(slots)),
        created_unix_ms=created_unix_ms,
        metadata=meta,
        chunk_hashes=slots,
    )
    if objects is None:
        if created_unix_ms is None:
            raise ValueError("a version-1 body needs created_unix_ms")
        return body
    if set(objects) != set(chunks):
        raise ValueError("objects must list exactly the indices of chunks")
    obj_slots = tuple(objects.get(start + k, ABSENT) for k in range(epoch_chunks))
    if not all(h == ABSENT or is_hex(h, 32) for h in obj_slots):
        raise ValueError("object hashes must be 64 lowercase hex digits")
    return replace(
        body, created_unix_ms=None, version=2, object_hashes=obj_slots, object_root=merkle_root(list(obj_slots))
    )


class EpochAssembler:
    """Leader-side, sans-I/O: feed (index, hash) as chunks are cut; get bodies of finished epochs.

    Every epoch number from the first chunk's epoch on gets a body, even one whose window produced no
    chunk, so subscribers can tell "no chunk" from "not yet". An epoch closes when its last slot is
    filled or a later epoch's chunk arrives. Jumps of more than ``max_gap_epochs`` empty epochs (a
    broken clock) are not filled in.
    """

    def __init__(
        self,
        stream_id: str,
        *,
        epoch_chunks: int = 1,
        chunk_duration_ms: int,
        encoder_profile_id: str,
        metadata: Mapping[str, Any] | None = None,
        max_gap_epochs: int = 64,
        commit_objects: bool = False,
    ) -> None:
        if epoch_chunks < 1:
            raise ValueError("epoch_chunks must be >= 1")
        self.stream_id = stream_id
        self.epoch_chunks = epoch_chunks
        self.chunk_duration_ms = chunk_duration_ms
        self.encoder_profile_id = encoder_profile_id
        self.metadata = dict(metadata or {})
        self.max_gap_epochs = max_gap_epochs
        self.commit_objects = commit_objects  # True: version-2 bodies, each chunk with its object hash
        self._epoch: int | None = None
        self._slots: dict[int, str] = {}
        self._objects: dict[int, str] = {}

    def _body(self, epoch: int, slots: Mapping[int, str], now_ms: int) -> ManifestBody:
        return build_epoch_body(
            self.stream_id,
            epoch,
            self.epoch_chunks,
            slots,
            chunk_duration_ms=self.chunk_duration_ms,
            encoder_profile_id=self.encoder_profile_id,
            created_unix_ms=None if self.commit_objects else now_ms,
            metadata=self.metadata,
            objects={i: self._objects[i] for i in slots} if self.commit_objects else None,
        )

    def add_chunk(
        self, chunk_index: int, chunk_hash: str, now_ms: int, *, intact: bool = True, object_hash: str | None = None
    ) -> list[ManifestBody]:
        """Record a chunk (with its object frame's hash when committing objects); return bodies (in
        epoch order) for every epoch this closes.

        ``intact=False`` means the caller did not see the stream intact since its previous chunk
        (damage, a reconnect): epochs in between are then left unsigned rather than declared empty,
        since "no chunk here" would be a claim the leader cannot make.
        """
        if self.commit_objects != (object_hash is not None):
            raise ValueError("object_hash is required exactly when the assembler commits objects")
        ep = epoch_of(chunk_index, self.epoch_chunks)
        out: list[ManifestBody] = []
        if self._epoch is None:
            self._epoch = ep
        if ep < self._epoch:
            raise ValueError(f"chunk {chunk_index} belongs to epoch {ep}, already closed")
        if ep > self._epoch:
            if self._slots or intact:
                out.append(self._body(self._epoch, self._slots, now_ms))
            gap = ep - self._epoch - 1
            if not intact:
                log.info("stream not seen intact before chunk %d: epochs in between left unsigned", chunk_index)
            elif gap > self.max_gap_epochs:
                log.warning("chunk index jumped %d epochs; not publishing empty manifests for them", gap)
            else:
                out.extend(self._body(e, {}, now_ms) for e in range(self._epoch + 1, ep))
            self._epoch, self._slots, self._objects = ep, {}, {}
        old = self._slots.get(chunk_index)
        if old is not None and old != chunk_hash:
            raise ValueError(f"chunk {chunk_index} recorded twice with different hashes")
        self._slots[chunk_index] = chunk_hash
        if object_hash is not None:
            self._objects[chunk_index] = object_hash
        if chunk_index == (ep + 1) * self.epoch_chunks - 1:
            out.append(self._body(ep, self._slots, now_ms))
            self._epoch, self._slots, self._objects = ep + 1, {}, {}
        return out

    def finish(self, now_ms: int) -> list[ManifestBody]:
        """At end of stream: the body of the open epoch if it holds any chunk."""
        if self._epoch is None or not self._slots:
            return []
        body = self._body(self._epoch, self._slots, now_ms)
        self._epoch, self._slots, self._objects = self._epoch + 1, {}, {}
        return [body]


__all__ = [
    "ABSENT",
    "MANIFEST_VERSION",
    "EpochAssembler",
    "Manifest",
    "ManifestBody",
    "ManifestSignature",
    "add_signature",
    "build_epoch_body",
    "check_manifest_body",
    "epoch_id_for",
    "epoch_of",
    "parse_epoch_id",
    "parse_manifest",
    "sign_manifest",
]
