"""The integrity layer's own exceptions and its typed rejection reasons.

Everything a hostile peer can send ends, at worst, in an :class:`IntegrityRejection` carrying a
:class:`RejectReason`, so callers can count rejections by reason and never see a stray exception.
What a local user gets wrong (a malformed id or secret, a stream that yields no id, an unusable key
file) has its own subclass of :class:`IntegrityError`. The layer names no exit code: the CLI's table
(``ec_node.cli.exits``) decides what each class means for the process.
"""

from __future__ import annotations

from enum import StrEnum


class IntegrityError(Exception):
    """Base of everything the integrity layer raises on purpose (so callers can catch the layer as one)."""


class InvalidValueError(IntegrityError):
    """A signer id, network secret or stream id is malformed: the caller passed a bad value."""


class StreamIdError(IntegrityError):
    """No canonical stream id can be built from what the source says (the user can pass one explicitly)."""


class KeyFileError(IntegrityError):
    """A signing key file is missing, unreadable or does not hold an Ed25519 private key."""


class KeyFileWriteError(IntegrityError):
    """A signing key file cannot be written (exists without ``force``, or the directory refuses it)."""


class RejectReason(StrEnum):
    """Why an object or a manifest was not accepted (stable strings: they appear in logs and counters)."""

    MALFORMED = "malformed"  # not decodable, wrong types, missing required fields, bad hex
    TOO_LARGE = "too_large"  # frame, meta or manifest over the configured limit
    BAD_AEAD = "bad_aead"  # ciphertext does not open under the stream key, or non-canonical nonce
    HASH_MISMATCH = "hash_mismatch"  # plaintext hash differs from meta / manifest hash
    BAD_PROOF = "bad_proof"  # Merkle proof does not lead to the manifest root
    NO_MANIFEST = "no_manifest"  # no usable manifest covers the chunk (and buffering is not possible)
    NOT_LISTED = "not_listed"  # the covering manifest lists no chunk at this index (slot "")
    BAD_MANIFEST_ID = "bad_manifest_id"  # body does not hash to manifest_id
    BAD_MERKLE_ROOT = "bad_merkle_root"  # merkle_root does not match chunk_hashes
    BAD_SIGNATURE = "bad_signature"  # no signature verifies
    UNTRUSTED_SIGNER = "untrusted_signer"  # signatures verify, but no signer is trusted
    WRONG_STREAM = "wrong_stream"  # stream_id / key_id is not the subscribed stream
    META_MISMATCH = "meta_mismatch"  # epoch_id / chunk_duration_ms disagree with the manifest
    CONFLICT = "conflict"  # a usable manifest contradicts an earlier usable manifest
    STALE = "stale"  # older than anything the verifier still remembers
    BUFFER_FULL = "buffer_full"  # dropped from the bounded pre-manifest buffer
    OBJECT_MISMATCH = "object_mismatch"  # the frame is not the object a version-2 manifest commits to
    UNVERIFIABLE = "unverifiable"  # a keyless verifier holds only a version-1 manifest: ciphertext uncheckable
    TOO_FEW_SIGNERS = "too_few_signers"  # fewer distinct trusted signers than --min-signers


#: Reasons that prove an object false. The others (no manifest yet, buffer full, stale, unverifiable)
#: are circumstance: they neither count against ``--max-invalid-chunks`` nor penalize a peer.
PEER_FAULTS = frozenset(
    {
        RejectReason.MALFORMED,
        RejectReason.TOO_LARGE,
        RejectReason.BAD_AEAD,
        RejectReason.HASH_MISMATCH,
        RejectReason.BAD_PROOF,
        RejectReason.WRONG_STREAM,
        RejectReason.META_MISMATCH,
        RejectReason.OBJECT_MISMATCH,
    }
)
#: The faults the sender itself could see in the frame, with no manifest and no key: charged to it.
#: The rest of PEER_FAULTS are refuted only by a manifest or the key, which a carrier (a relay that
#: forwards without verifying, or verifies without the key) may not have had: *upstream faults*,
#: counted against the path they came by, never a reason to drop the peer (PROTOCOL.md §9).
SENDER_FAULTS = frozenset({RejectReason.MALFORMED, RejectReason.TOO_LARGE, RejectReason.WRONG_STREAM})
UPSTREAM_FAULTS = PEER_FAULTS - SENDER_FAULTS


class IntegrityRejection(IntegrityError):
    """An object or manifest failed the acceptance policy; ``reason`` says which rule."""

    def __init__(self, reason: RejectReason, message: str) -> None:
        super().__init__(f"{reason.value}: {message}")
        self.reason = reason
        self.detail = message


class IntegrityFormatError(IntegrityRejection):
    """Input could not be decoded (``malformed``) or exceeded a size limit (``too_large``)."""

    def __init__(self, message: str, *, too_large: bool = False) -> None:
        super().__init__(RejectReason.TOO_LARGE if too_large else RejectReason.MALFORMED, message)


__all__ = [
    "PEER_FAULTS",
    "SENDER_FAULTS",
    "UPSTREAM_FAULTS",
    "IntegrityError",
    "IntegrityFormatError",
    "IntegrityRejection",
    "InvalidValueError",
    "KeyFileError",
    "KeyFileWriteError",
    "RejectReason",
    "StreamIdError",
]
