"""Object frames (ECP-0012): u32be length L, L bytes of compact JSON ``ObjectMeta``, then the ciphertext.

The decoder is strict and bounded: sizes are checked before anything is parsed or copied, unknown
fields are ignored, and missing or mistyped required fields raise :class:`IntegrityFormatError`.
PROTOCOL.md §5.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any

from ec_node.integrity._json import U64_MAX, canonical_json, check_hex, get_str, get_uint, loads_strict
from ec_node.integrity.aead import TAG_BYTES
from ec_node.integrity.errors import IntegrityFormatError
from ec_node.integrity.merkle import MerkleProof
from ec_node.integrity.stream_id import MAX_STREAM_ID_BYTES

CHUNKS_TRACK = "chunks"
MANIFESTS_TRACK = "manifests"
_LEN = struct.Struct(">I")
MAX_ID_CHARS = 1024  # stream_id / epoch_id / key_id / alg string bound inside meta


@dataclass(frozen=True)
class Limits:
    """Decoder bounds; anything larger is refused (``too_large``) before it is parsed."""

    max_frame_bytes: int = 64 * 1024 * 1024
    max_meta_bytes: int = 64 * 1024
    max_manifest_bytes: int = 1024 * 1024
    max_manifest_chunks: int = 8192
    max_signatures: int = 16
    max_metadata_bytes: int = 16 * 1024


DEFAULT_LIMITS = Limits()


@dataclass(frozen=True)
class Encryption:
    """``ObjectMeta.encryption``: algorithm, key id (= stream id) and the hex synthetic nonce."""

    alg: str
    key_id: str
    nonce: str

    def to_json(self) -> dict[str, Any]:
        """JSON object form, nested under ``encryption`` in the meta."""
        return {"alg": self.alg, "key_id": self.key_id, "nonce": self.nonce}


@dataclass(frozen=True)
class ObjectMeta:
    """The JSON header of an object frame: the stream, epoch and index the ciphertext claims, and its plaintext hash."""

    stream_id: str
    epoch_id: str
    chunk_index: int
    chunk_duration_ms: int
    chunk_hash: str
    encryption: Encryption
    chunk_proof: MerkleProof | None = None

    def to_json(self) -> dict[str, Any]:
        """JSON object form for :func:`encode_meta`; ``chunk_proof`` is left out when there is none."""
        out: dict[str, Any] = {
            "stream_id": self.stream_id,
            "epoch_id": self.epoch_id,
            "chunk_index": self.chunk_index,
            "chunk_duration_ms": self.chunk_duration_ms,
            "chunk_hash": self.chunk_hash,
            "encryption": self.encryption.to_json(),
        }
        if self.chunk_proof is not None:
            out["chunk_proof"] = self.chunk_proof.to_json()
        return out

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> ObjectMeta:
        """Build a meta from decoded JSON, checking types and bounds; raises :class:`IntegrityFormatError`."""
        what = "object meta"
        enc = obj.get("encryption")
        if not isinstance(enc, dict):
            raise IntegrityFormatError(f"{what}: field 'encryption' must be a JSON object")
        if "chunk_proof" in obj and obj["chunk_proof"] is None:
            # absent and null would be two spellings of one meta (and two object hashes, §7.2)
            raise IntegrityFormatError(f"{what}: chunk_proof must be an object when present (null is refused)")
        proof_obj = obj.get("chunk_proof")
        chunk_hash = get_str(obj, "chunk_hash", what)
        check_hex(chunk_hash, 32, f"{what}: chunk_hash")
        nonce = get_str(enc, "nonce", f"{what}: encryption", max_len=256)
        if len(nonce) % 2:
            raise IntegrityFormatError(f"{what}: encryption nonce must be hex")
        check_hex(nonce, len(nonce) // 2, f"{what}: encryption nonce")
        return cls(
            stream_id=get_str(obj, "stream_id", what, max_len=MAX_STREAM_ID_BYTES),
            epoch_id=get_str(obj, "epoch_id", what, max_len=MAX_ID_CHARS),
            chunk_index=get_uint(obj, "chunk_index", what),
            chunk_duration_ms=get_uint(obj, "chunk_duration_ms", what, maximum=0xFFFFFFFF),
            chunk_hash=chunk_hash,
            encryption=Encryption(
                alg=get_str(enc, "alg", f"{what}: encryption", max_len=64),
                key_id=get_str(enc, "key_id", f"{what}: encryption", max_len=MAX_ID_CHARS),
                nonce=nonce,
            ),
            chunk_proof=None if proof_obj is None else MerkleProof.from_json(proof_obj),
        )


@dataclass(frozen=True)
class ObjectFrame:
    """A decoded frame: meta plus a zero-copy view of the payload (ciphertext)."""

    meta: ObjectMeta
    payload: memoryview


def encode_meta(meta: ObjectMeta) -> bytes:
    """Canonical JSON of ``meta``, so equal metas always frame to identical bytes."""
    return canonical_json(meta.to_json())


def encode_frame(meta: ObjectMeta, payload: bytes) -> bytes:
    """u32be(len(meta_json)) || meta_json || payload."""
    if not 0 <= meta.chunk_index <= U64_MAX:
        raise ValueError("chunk_index out of u64 range")
    m = encode_meta(meta)
    return b"".join((_LEN.pack(len(m)), m, payload))


def check_frame_size(n: int, limits: Limits = DEFAULT_LIMITS) -> None:
    """Call before reading/allocating a frame whose size the transport announces."""
    if n > limits.max_frame_bytes:
        raise IntegrityFormatError(f"frame of {n} bytes exceeds limit {limits.max_frame_bytes}", too_large=True)


def decode_frame(data: bytes | bytearray | memoryview, limits: Limits = DEFAULT_LIMITS) -> ObjectFrame:
    """Split and validate a frame; raises only :class:`IntegrityFormatError`."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise IntegrityFormatError("frame must be bytes")
    try:
        view = memoryview(data).cast("B")
    except TypeError:
        raise IntegrityFormatError("frame must be a contiguous byte buffer") from None
    check_frame_size(len(view), limits)
    if len(view) < 4:
        raise IntegrityFormatError("frame shorter than its 4-byte length prefix")
    (meta_len,) = _LEN.unpack_from(view, 0)
    if meta_len > limits.max_meta_bytes:
        raise IntegrityFormatError(f"meta of {meta_len} bytes exceeds limit {limits.max_meta_bytes}", too_large=True)
    if meta_len > len(view) - 4:
        raise IntegrityFormatError("meta length runs past the end of the frame")
    if len(view) - 4 - meta_len < TAG_BYTES:
        # visible in the frame itself, without the key: a sender fault (malformed), never bad_aead
        raise IntegrityFormatError(f"object shorter than its {TAG_BYTES}-byte tag")
    meta = ObjectMeta.from_json(loads_strict(view[4 : 4 + meta_len], "object meta"))
    return ObjectFrame(meta=meta, payload=view[4 + meta_len :])


__all__ = [
    "CHUNKS_TRACK",
    "DEFAULT_LIMITS",
    "Encryption",
    "Limits",
    "MANIFESTS_TRACK",
    "ObjectFrame",
    "ObjectMeta",
    "check_frame_size",
    "decode_frame",
    "encode_frame",
    "encode_meta",
]
