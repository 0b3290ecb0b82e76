"""Seal a chunk into an object frame, and open a frame back into a checked plaintext.

Sealing = hash + encrypt + frame; opening = decode + decrypt + verify. Opening checks everything the
object can prove about itself (stream, key id, algorithm, canonical nonce, AEAD, ``chunk_hash``);
whether a manifest vouches for it is the verifier's job.
"""

from __future__ import annotations

from dataclasses import dataclass

from ec_node.integrity._json import U64_MAX
from ec_node.integrity.aead import ALG, NONCE_BYTES, TAG_BYTES, StreamCipher, chunk_hash
from ec_node.integrity.errors import IntegrityRejection, RejectReason
from ec_node.integrity.frames import (
    DEFAULT_LIMITS,
    Encryption,
    Limits,
    ObjectFrame,
    ObjectMeta,
    decode_frame,
    encode_meta,
)
from ec_node.integrity.merkle import MerkleProof


@dataclass(frozen=True)
class SealedObject:
    """A sealed chunk: its meta and the frame bytes to publish."""

    meta: ObjectMeta
    frame: bytes  # the bytes to publish as the one frame of group ``chunk_index`` on track ``chunks``


@dataclass(frozen=True)
class OpenedObject:
    """An opened frame: its meta and the plaintext that was checked against it."""

    meta: ObjectMeta
    plaintext: bytes


def seal_object(
    cipher: StreamCipher,
    chunk_index: int,
    plaintext: bytes,
    *,
    epoch_id: str,
    chunk_duration_ms: int,
    chunk_proof: MerkleProof | None = None,
) -> SealedObject:
    """Deterministic: the same (stream, key, index, plaintext, meta inputs) give byte-identical frames."""
    h = chunk_hash(plaintext)
    nonce = cipher.nonce(chunk_index, h)
    meta = ObjectMeta(
        stream_id=cipher.stream_id,
        epoch_id=epoch_id,
        chunk_index=chunk_index,
        chunk_duration_ms=chunk_duration_ms,
        chunk_hash=h.hex(),
        encryption=Encryption(alg=ALG, key_id=cipher.stream_id, nonce=nonce.hex()),
        chunk_proof=chunk_proof,
    )
    if not 0 <= chunk_index <= U64_MAX:
        raise ValueError("chunk_index out of u64 range")
    m = encode_meta(meta)
    head = 4 + len(m)
    buf = bytearray(head + len(plaintext) + TAG_BYTES)
    buf[:head] = len(m).to_bytes(4, "big") + m
    cipher.seal_into(chunk_index, plaintext, nonce, memoryview(buf)[head:])
    return SealedObject(meta=meta, frame=bytes(buf))


def check_object_stream(meta: ObjectMeta, stream_id: str) -> None:
    """The object names the subscribed stream (``stream_id`` and ``encryption.key_id``) and our algorithm."""
    if meta.stream_id != stream_id or meta.encryption.key_id != stream_id:
        raise IntegrityRejection(RejectReason.WRONG_STREAM, f"object {meta.chunk_index} is not for {stream_id!r}")
    if meta.encryption.alg != ALG:
        raise IntegrityRejection(RejectReason.MALFORMED, f"unsupported encryption alg {meta.encryption.alg!r}")
    if len(meta.encryption.nonce) != 2 * NONCE_BYTES:
        raise IntegrityRejection(RejectReason.MALFORMED, "nonce must be 12 bytes")


def open_frame(cipher: StreamCipher, frame: ObjectFrame) -> OpenedObject:
    """Decrypt an already decoded frame and check its self-consistency; raises :class:`IntegrityRejection`."""
    meta = frame.meta
    check_object_stream(meta, cipher.stream_id)
    nonce = bytes.fromhex(meta.encryption.nonce)
    plaintext = cipher.open(meta.chunk_index, nonce, frame.payload)
    h = chunk_hash(plaintext)
    if h.hex() != meta.chunk_hash:
        raise IntegrityRejection(RejectReason.HASH_MISMATCH, f"object {meta.chunk_index}: plaintext != chunk_hash")
    if cipher.nonce(meta.chunk_index, h) != nonce:
        # only a key holder can get here; refusing keeps every accepted object byte-canonical
        raise IntegrityRejection(RejectReason.BAD_AEAD, f"object {meta.chunk_index}: non-canonical nonce")
    return OpenedObject(meta=meta, plaintext=plaintext)


def open_object(cipher: StreamCipher, data: bytes | memoryview, limits: Limits = DEFAULT_LIMITS) -> OpenedObject:
    """Decode + decrypt + verify one frame; raises only :class:`IntegrityRejection`."""
    return open_frame(cipher, decode_frame(data, limits))


__all__ = ["OpenedObject", "SealedObject", "check_object_stream", "open_frame", "open_object", "seal_object"]
