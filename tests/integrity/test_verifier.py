from __future__ import annotations

import dataclasses
import json
import logging
import struct
from collections.abc import Callable
from typing import Any

import blake3
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ec_node.integrity._json import canonical_json
from ec_node.integrity.aead import StreamCipher
from ec_node.integrity.errors import PEER_FAULTS, RejectReason
from ec_node.integrity.frames import decode_frame, encode_frame
from ec_node.integrity.keys import derive_stream_key
from ec_node.integrity.manifest import Manifest, ManifestBody, build_epoch_body, epoch_id_for
from ec_node.integrity.merkle import merkle_proof
from ec_node.integrity.objects import SealedObject, seal_object
from ec_node.integrity.signer import Signer
from ec_node.integrity.verifier import SlotState, Verdict, Verifier

STREAM = "ec/stream/v1/broadcast/atsc/tsid-2049/program-3/callsign-wsyn-hd/profile-passthrough/variant-source"
Seal = Callable[..., SealedObject]
MakeManifest = Callable[..., Manifest]


def _v(key: bytes | None, signer: Signer | None = None, **kw: Any) -> Verifier:
    trusted = [signer.signer_id] if signer else []
    return Verifier(STREAM, key, trusted_signers=trusted, **kw)


def test_manifest_first_then_object(stream_key: bytes, signer: Signer, seal: Seal, make_manifest: MakeManifest) -> None:
    v = _v(stream_key, signer)
    o = seal(0)
    d = v.add_manifest(make_manifest(0, {0: o.meta.chunk_hash}).encode())
    assert d.verdict is Verdict.ACCEPTED and d.epoch == 0 and d.pinned_signer is None
    od = v.add_object(o.frame)
    assert od.verdict is Verdict.ACCEPTED
    (acc,) = od.released
    assert acc.chunk_index == 0 and acc.frame == o.frame and acc.plaintext is not None
    assert v.add_object(o.frame).verdict is Verdict.DUPLICATE
    assert v.add_manifest(make_manifest(0, {0: o.meta.chunk_hash}).encode()).verdict is Verdict.DUPLICATE
    assert v.accepted_objects == 1 and v.rejected_objects == 0


def test_object_first_is_buffered_then_released(
    stream_key: bytes, signer: Signer, seal: Seal, make_manifest: MakeManifest
) -> None:
    v = _v(stream_key, signer)
    objs = [seal(i, epoch_chunks=4) for i in range(4)]
    for o in reversed(objs):
        assert v.add_object(o.frame).verdict is Verdict.PENDING
    assert v.add_object(objs[0].frame).verdict is Verdict.DUPLICATE
    assert v.pending_count == 4 and v.pending_bytes > 0
    d = v.add_manifest(
        make_manifest(0, {i: o.meta.chunk_hash for i, o in enumerate(objs) if i != 2}, epoch_chunks=4).encode()
    )
    assert [a.chunk_index for a in d.released] == [0, 1, 3]
    assert [(x.chunk_index, x.reason) for x in d.dropped] == [(2, RejectReason.NOT_LISTED)]
    assert v.pending_count == 0 and v.pending_bytes == 0
    assert v.slot_state(2) is SlotState.ABSENT and v.slot_state(1) is SlotState.PRESENT
    assert v.slot_state(4) is SlotState.UNKNOWN
    assert v.expected_hash(1) == objs[1].meta.chunk_hash and v.expected_hash(2) is None


def test_no_manifests_no_data(stream_key: bytes, seal: Seal) -> None:
    v = _v(stream_key, max_pending_objects=0)
    d = v.add_object(seal(0).frame)
    assert d.verdict is Verdict.REJECTED and d.reason is RejectReason.NO_MANIFEST
    v2 = _v(stream_key)
    v2.add_object(seal(0).frame)
    (dropped,) = v2.drop_pending()
    assert dropped.reason is RejectReason.NO_MANIFEST and v2.pending_count == 0
    assert v2.object_rejections == {RejectReason.NO_MANIFEST: 1}


def test_pending_bounded_by_count_and_bytes(stream_key: bytes, seal: Seal) -> None:
    v = _v(stream_key, max_pending_objects=3)
    for i in (5, 6, 7):
        assert v.add_object(seal(i).frame).verdict is Verdict.PENDING
    d = v.add_object(seal(2).frame)  # lower index wins a place; highest is evicted
    assert d.verdict is Verdict.PENDING and [(x.chunk_index, x.reason) for x in d.dropped] == [
        (7, RejectReason.BUFFER_FULL)
    ]
    d = v.add_object(seal(9).frame)
    assert d.verdict is Verdict.REJECTED and d.reason is RejectReason.BUFFER_FULL
    assert v.pending_indices() == [2, 5, 6]
    size = len(seal(0).frame) + 3000
    vb = _v(stream_key, max_pending_bytes=2 * size)
    assert [vb.add_object(seal(i).frame).verdict for i in (1, 2, 3)] == [
        Verdict.PENDING,
        Verdict.PENDING,
        Verdict.REJECTED,
    ]
    assert vb.pending_bytes <= 2 * size
    big = _v(stream_key, max_pending_bytes=10)
    assert big.add_object(seal(1).frame).reason is RejectReason.NO_MANIFEST


def test_signer_policy(
    stream_key: bytes, signer: Signer, other_signer: Signer, seal: Seal, make_manifest: MakeManifest, caplog: Any
) -> None:
    o = seal(0)
    m_other = make_manifest(0, {0: o.meta.chunk_hash}, by=other_signer).encode()
    v = _v(stream_key, signer)
    d = v.add_manifest(m_other)
    assert d.reason is RejectReason.UNTRUSTED_SIGNER
    assert v.add_object(o.frame).verdict is Verdict.PENDING
    # TOFU: first signer pinned and logged, another signer then refused
    t = _v(stream_key)
    with caplog.at_level(logging.WARNING, logger="ec_node.integrity"):
        d = t.add_manifest(m_other)
    assert d.verdict is Verdict.ACCEPTED and d.pinned_signer == other_signer.signer_id
    assert other_signer.signer_id in caplog.text and "first use" in caplog.text
    assert t.trusted_signers == {other_signer.signer_id}
    d = t.add_manifest(make_manifest(1, {1: seal(1).meta.chunk_hash}, by=signer).encode())
    assert d.reason is RejectReason.UNTRUSTED_SIGNER
    # TOFU disabled and nobody trusted: nothing usable
    n = Verifier(STREAM, stream_key, trust_on_first_use=False)
    assert n.add_manifest(m_other).reason is RejectReason.UNTRUSTED_SIGNER
    # multi-signature: one trusted valid signature suffices
    multi = other_signer.cosign(make_manifest(0, {0: o.meta.chunk_hash}, by=signer))
    v2 = _v(stream_key, other_signer)
    assert v2.add_manifest(multi.encode()).verdict is Verdict.ACCEPTED


def test_bad_signature_and_unsigned(stream_key: bytes, signer: Signer, make_manifest: MakeManifest) -> None:
    m = make_manifest(0, {0: "ab" * 32}).to_json()
    sig = m["signatures"][0]["signature"]
    m["signatures"][0]["signature"] = ("0" if sig[0] != "0" else "1") + sig[1:]
    v = _v(stream_key, signer)
    assert v.add_manifest(canonical_json(m)).reason is RejectReason.BAD_SIGNATURE
    m["signatures"] = []
    assert v.add_manifest(canonical_json(m)).reason is RejectReason.BAD_SIGNATURE
    t = _v(stream_key)  # TOFU never pins an invalid signature
    assert t.add_manifest(canonical_json(m)).reason is RejectReason.BAD_SIGNATURE
    assert t.trusted_signers == frozenset()


def test_wrong_stream(
    stream_key: bytes, signer: Signer, seal: Seal, make_manifest: MakeManifest, cipher: StreamCipher
) -> None:
    v = _v(stream_key, signer)
    other = "ec/stream/v1/source/stdin/profile-passthrough/variant-source"
    assert v.add_manifest(make_manifest(0, {0: "ab" * 32}, stream=other).encode()).reason is RejectReason.WRONG_STREAM
    oc = StreamCipher(other, derive_stream_key(other))
    o = seal_object(oc, 0, b"x" * 100, epoch_id=epoch_id_for(other, 0), chunk_duration_ms=2000)
    assert v.add_object(o.frame).reason is RejectReason.WRONG_STREAM


def test_replay_at_other_index_or_key(stream_key: bytes, signer: Signer, seal: Seal) -> None:
    v = _v(stream_key, signer)
    o = seal(3)
    meta = json.loads(o.frame[4 : 4 + struct.unpack(">I", o.frame[:4])[0]])
    meta["chunk_index"] = 4
    assert v.add_object(_reframe(o.frame, meta)).reason is RejectReason.BAD_AEAD
    wrong_key = _v(derive_stream_key(STREAM, b"not the secret"), signer)
    assert wrong_key.add_object(o.frame).reason is RejectReason.BAD_AEAD


def _reframe(frame: bytes, meta: dict[str, Any]) -> bytes:
    n = struct.unpack(">I", frame[:4])[0]
    m = canonical_json(meta)
    return struct.pack(">I", len(m)) + m + frame[4 + n :]


META_TAMPERS: list[tuple[str, Callable[[dict[str, Any]], None]]] = [
    ("stream_id", lambda m: m.__setitem__("stream_id", m["stream_id"] + "x")),
    ("epoch_id", lambda m: m.__setitem__("epoch_id", epoch_id_for(STREAM, 1))),
    ("chunk_index", lambda m: m.__setitem__("chunk_index", m["chunk_index"] + 1)),
    ("chunk_duration_ms", lambda m: m.__setitem__("chunk_duration_ms", 2001)),
    ("chunk_hash", lambda m: m.__setitem__("chunk_hash", "ab" * 32)),
    ("chunk_proof", lambda m: m.__setitem__("chunk_proof", {"leaf_index": 0, "leaf_count": 1, "siblings": []})),
    ("encryption.alg", lambda m: m["encryption"].__setitem__("alg", "aes-256-gcm-siv")),
    ("encryption.key_id", lambda m: m["encryption"].__setitem__("key_id", "other")),
    ("encryption.nonce", lambda m: m["encryption"].__setitem__("nonce", "00" * 24)),
    ("drop encryption", lambda m: m.pop("encryption")),
]


@pytest.mark.parametrize("order", ["manifest_first", "object_first"])
@pytest.mark.parametrize("name,tamper", META_TAMPERS, ids=[t[0] for t in META_TAMPERS])
def test_tamper_every_meta_field(
    name: str,
    tamper: Callable[[dict[str, Any]], None],
    order: str,
    stream_key: bytes,
    signer: Signer,
    seal: Seal,
    make_manifest: MakeManifest,
) -> None:
    v = _v(stream_key, signer)
    o = seal(0)
    m = make_manifest(0, {0: o.meta.chunk_hash})
    meta = json.loads(o.frame[4 : 4 + struct.unpack(">I", o.frame[:4])[0]])
    if name == "chunk_proof":  # a wrong proof: right shape, wrong sibling count for a 1-slot tree
        meta["chunk_proof"] = {"leaf_index": 0, "leaf_count": 1, "siblings": ["00" * 32]}
    else:
        tamper(meta)
    bad = _reframe(o.frame, meta)
    if order == "manifest_first":
        v.add_manifest(m.encode())
        d = v.add_object(bad)
        assert d.verdict is Verdict.REJECTED, (name, d)
    else:
        d = v.add_object(bad)
        md = v.add_manifest(m.encode())
        assert not md.released and (d.verdict is Verdict.REJECTED or md.dropped), (name, d, md)
    assert v.accepted_objects == 0
    assert v.add_object(o.frame).verdict is Verdict.ACCEPTED  # the honest copy still gets through


def test_every_single_bit_flip_in_a_frame_is_rejected(
    stream_key: bytes, signer: Signer, seal: Seal, make_manifest: MakeManifest
) -> None:
    """Exhaustive: flip each bit of a whole frame (length prefix, meta JSON, ciphertext, tag)."""
    o = seal(0, b"\x00\x01" * 100)
    v = _v(stream_key, signer)
    v.add_manifest(make_manifest(0, {0: o.meta.chunk_hash}).encode())
    frame = bytearray(o.frame)
    reasons: set[RejectReason] = set()
    for bit in range(len(frame) * 8):
        frame[bit // 8] ^= 1 << (bit % 8)
        d = v.add_object(bytes(frame))
        frame[bit // 8] ^= 1 << (bit % 8)
        assert d.verdict is Verdict.REJECTED and d.reason is not None, (bit, d)
        reasons.add(d.reason)
    assert v.accepted_objects == 0 and v.pending_count == 0
    assert {RejectReason.MALFORMED, RejectReason.BAD_AEAD, RejectReason.WRONG_STREAM} <= reasons
    assert v.add_object(bytes(frame)).verdict is Verdict.ACCEPTED


def test_every_single_bit_flip_in_a_manifest_is_rejected(
    stream_key: bytes, signer: Signer, make_manifest: MakeManifest
) -> None:
    """Exhaustive over a whole manifest frame, with a pinned signer and with trust-on-first-use."""
    raw = bytearray(make_manifest(0, {0: "ab" * 32}).encode())
    pinned, tofu = _v(stream_key, signer), _v(stream_key)
    reasons: set[RejectReason] = set()
    for bit in range(len(raw) * 8):
        raw[bit // 8] ^= 1 << (bit % 8)
        for v in (pinned, tofu):
            d = v.add_manifest(bytes(raw))
            assert d.verdict is Verdict.REJECTED, (bit, d)
            assert d.reason is not None
            reasons.add(d.reason)
        raw[bit // 8] ^= 1 << (bit % 8)
    assert {RejectReason.MALFORMED, RejectReason.BAD_MANIFEST_ID, RejectReason.BAD_SIGNATURE} <= reasons
    assert tofu.trusted_signers == frozenset()
    assert pinned.add_manifest(bytes(raw)).verdict is Verdict.ACCEPTED


@settings(max_examples=100, suppress_health_check=[HealthCheck.function_scoped_fixture], deadline=None)
@given(data=st.data())
def test_random_multi_byte_corruption_never_accepted(
    data: st.DataObject, stream_key: bytes, signer: Signer, seal: Seal, make_manifest: MakeManifest
) -> None:
    o = seal(0, data.draw(st.binary(min_size=1, max_size=300)))
    v = _v(stream_key, signer)
    v.add_manifest(make_manifest(0, {0: o.meta.chunk_hash}).encode())
    frame = bytearray(o.frame)
    for _ in range(data.draw(st.integers(1, 5))):
        pos = data.draw(st.integers(0, len(frame) - 1))
        frame[pos] = (o.frame[pos] + data.draw(st.integers(1, 255))) % 256  # always a different byte
    d = v.add_object(bytes(frame))
    assert d.verdict is Verdict.REJECTED or bytes(frame) == o.frame


BODY_TAMPERS = [
    ("stream_id", "ec/stream/v1/source/stdin/profile-p/variant-v", RejectReason.WRONG_STREAM),
    ("epoch_id", epoch_id_for(STREAM, 9), RejectReason.BAD_MANIFEST_ID),
    ("chunk_duration_ms", 1, RejectReason.BAD_MANIFEST_ID),
    ("total_chunks", 2, None),
    ("chunk_start_index", 1, RejectReason.BAD_MANIFEST_ID),
    ("encoder_profile_id", "x", RejectReason.BAD_MANIFEST_ID),
    ("merkle_root", "cd" * 32, RejectReason.BAD_MANIFEST_ID),
    ("created_unix_ms", 2, RejectReason.BAD_MANIFEST_ID),
    ("metadata", {"title": "spoof"}, RejectReason.BAD_MANIFEST_ID),
    ("chunk_hashes", ["cd" * 32], RejectReason.BAD_MANIFEST_ID),
]


@pytest.mark.parametrize("field,value,reason", BODY_TAMPERS, ids=[t[0] for t in BODY_TAMPERS])
def test_tamper_every_body_field(
    field: str, value: Any, reason: RejectReason | None, stream_key: bytes, signer: Signer, make_manifest: MakeManifest
) -> None:
    m = make_manifest(0, {0: "ab" * 32}).to_json()
    m["body"][field] = value
    d = _v(stream_key, signer).add_manifest(canonical_json(m))
    assert d.verdict is Verdict.REJECTED
    assert reason is None or d.reason is reason  # None: caught earlier as malformed
    # and re-signing a tampered body is not enough without a trusted key
    if reason is RejectReason.BAD_MANIFEST_ID:
        body = ManifestBody.from_json(m["body"])
        resigned = Signer.generate().sign(body)
        assert _v(stream_key, signer).add_manifest(resigned.encode()).verdict is Verdict.REJECTED


def test_conflicting_manifests(
    stream_key: bytes, signer: Signer, other_signer: Signer, seal: Seal, make_manifest: MakeManifest
) -> None:
    v = Verifier(STREAM, stream_key, trusted_signers=[signer.signer_id, other_signer.signer_id])
    o = seal(0)
    assert v.add_manifest(make_manifest(0, {0: o.meta.chunk_hash}).encode()).verdict is Verdict.ACCEPTED
    d = v.add_manifest(make_manifest(0, {0: "ab" * 32}, by=other_signer).encode())
    assert d.reason is RejectReason.CONFLICT
    d = v.add_manifest(make_manifest(0, {}, by=other_signer).encode())  # "no chunk here" contradicts too
    assert d.reason is RejectReason.CONFLICT
    same = make_manifest(0, {0: o.meta.chunk_hash}, by=other_signer)
    assert v.add_manifest(same.encode()).verdict is Verdict.DUPLICATE  # same body, same id
    agree = other_signer.sign(ManifestBody(**{**same.body.__dict__, "created_unix_ms": 5}))
    assert v.add_manifest(agree.encode()).verdict is Verdict.ACCEPTED  # another body that agrees
    assert v.add_object(o.frame).verdict is Verdict.ACCEPTED
    assert v.manifest_rejections == {RejectReason.CONFLICT: 2}


def test_merkle_proof_path_and_root_only_manifest(
    stream_key: bytes, cipher: StreamCipher, signer: Signer, seal: Seal
) -> None:
    objs = [seal(8 + k, epoch_chunks=4) for k in range(3)]
    slots = [o.meta.chunk_hash for o in objs] + [""]
    full = build_epoch_body(
        STREAM,
        2,
        4,
        {8 + k: h for k, h in enumerate(slots[:3])},
        chunk_duration_ms=2000,
        encoder_profile_id="p",
        created_unix_ms=0,
    )
    root_only = ManifestBody(**{**full.__dict__, "chunk_hashes": ()})
    m = signer.sign(root_only)
    v = _v(stream_key, signer)
    assert v.add_manifest(m.encode()).verdict is Verdict.ACCEPTED
    # without a proof, a root-only manifest cannot vouch for an object
    assert v.add_object(objs[0].frame).reason is RejectReason.BAD_PROOF
    for k in range(len(objs)):
        proved = seal_object(
            cipher,
            8 + k,
            o_plain(k),
            epoch_id=epoch_id_for(STREAM, 2),
            chunk_duration_ms=2000,
            chunk_proof=merkle_proof(slots, k),
        )
        assert v.add_object(proved.frame).verdict is Verdict.ACCEPTED
    # a proof for another slot does not pass
    v2 = _v(stream_key, signer)
    v2.add_manifest(m.encode())
    wrong = seal_object(
        cipher,
        8,
        o_plain(0),
        epoch_id=epoch_id_for(STREAM, 2),
        chunk_duration_ms=2000,
        chunk_proof=merkle_proof(slots, 1),
    )
    assert v2.add_object(wrong.frame).reason is RejectReason.BAD_PROOF
    # a full manifest arriving later upgrades the coverage and is consistent
    assert v2.add_manifest(signer.sign(full).encode()).verdict is Verdict.ACCEPTED
    assert v2.add_object(objs[0].frame).verdict is Verdict.ACCEPTED


def o_plain(k: int) -> bytes:
    seed = f"chunk-{8 + k}-".encode()
    return (seed * (3000 // len(seed) + 1))[:3000]


def _with_payload_of(honest: bytes, other: bytes) -> bytes:
    """The honest frame's metadata in front of another frame's ciphertext (a forgery)."""
    return encode_frame(decode_frame(honest).meta, bytes(decode_frame(other).payload))


def _frame_hash(frame: bytes) -> str:
    return blake3.blake3(frame).hexdigest()


def test_keyless_relay_mode(signer: Signer, seal: Seal, make_manifest: MakeManifest) -> None:
    """Keyless, a version-2 manifest's object commitment checks the ciphertext byte for byte."""
    v = _v(None, signer)
    assert v.keyless
    o = seal(0)
    assert v.add_object(o.frame).verdict is Verdict.PENDING
    d = v.add_manifest(make_manifest(0, {0: o.meta.chunk_hash}, objects={0: _frame_hash(o.frame)}).encode())
    (acc,) = d.released
    assert acc.plaintext is None and acc.frame == o.frame
    junk = seal(1)
    v.add_manifest(make_manifest(1, {1: "ab" * 32}, objects={1: "cd" * 32}).encode())
    assert v.add_object(junk.frame).reason is RejectReason.OBJECT_MISMATCH


def test_keyless_forgery_with_honest_metadata_is_stopped_by_the_object_commitment(
    signer: Signer, seal: Seal, make_manifest: MakeManifest, cipher: StreamCipher
) -> None:
    """The stream key is public without a network secret: a forger re-seals other bytes under the
    honest chunk_hash. A keyless verifier cannot open it, but the commitment refutes it, first copy
    or later copy alike."""
    honest = seal(2)
    forged_meta = seal_object(cipher, 2, b"forged bytes", epoch_id=honest.meta.epoch_id, chunk_duration_ms=2000)
    forged = _with_payload_of(honest.frame, forged_meta.frame)
    m = make_manifest(2, {2: honest.meta.chunk_hash}, objects={2: _frame_hash(honest.frame)})
    v = _v(None, signer)
    v.add_manifest(m.encode())
    assert v.add_object(forged).reason is RejectReason.OBJECT_MISMATCH
    assert v.add_object(honest.frame).verdict is Verdict.ACCEPTED
    assert v.add_object(forged).reason is RejectReason.OBJECT_MISMATCH  # a later copy too, keyless
    assert v.add_object(honest.frame).verdict is Verdict.DUPLICATE


def test_keyless_with_only_a_version_1_manifest_is_unverifiable_not_blamed(
    signer: Signer, seal: Seal, make_manifest: MakeManifest
) -> None:
    v = _v(None, signer)
    o = seal(0)
    v.add_manifest(make_manifest(0, {0: o.meta.chunk_hash}).encode())
    d = v.add_object(o.frame)
    assert d.reason is RejectReason.UNVERIFIABLE and d.reason not in PEER_FAULTS


def test_min_signers_needs_that_many_distinct_trusted_signatures(
    signer: Signer, other_signer: Signer, seal: Seal, make_manifest: MakeManifest
) -> None:
    v = Verifier(STREAM, None, trusted_signers=[signer.signer_id, other_signer.signer_id], min_signers=2)
    o = seal(0)
    commit = {0: _frame_hash(o.frame)}
    one = make_manifest(0, {0: o.meta.chunk_hash}, objects=commit)
    assert v.add_manifest(one.encode()).reason is RejectReason.TOO_FEW_SIGNERS
    twice_same = Manifest(one.body, one.manifest_id, (*one.signatures, *one.signatures))
    assert v.add_manifest(twice_same.encode()).reason is RejectReason.TOO_FEW_SIGNERS  # distinct signers
    both = other_signer.cosign(one)
    d = v.add_manifest(both.encode())
    assert d.verdict is Verdict.ACCEPTED
    assert v.add_object(o.frame).verdict is Verdict.ACCEPTED
    with pytest.raises(ValueError, match="min_signers"):
        Verifier(STREAM, None, trusted_signers=[signer.signer_id], min_signers=2)


def test_retention_window_and_stale(stream_key: bytes, signer: Signer, seal: Seal, make_manifest: MakeManifest) -> None:
    from ec_node.integrity.frames import Limits

    v = _v(stream_key, signer, max_retained_slots=4, limits=Limits(max_manifest_chunks=4))
    objs = [seal(i) for i in range(8)]
    for i, o in enumerate(objs):
        v.add_manifest(make_manifest(i, {i: o.meta.chunk_hash}).encode())
    assert v.slot_state(0) is SlotState.UNKNOWN and v.slot_state(7) is SlotState.PRESENT
    assert v.add_object(objs[1].frame).reason is RejectReason.STALE
    assert v.add_manifest(make_manifest(2, {2: objs[2].meta.chunk_hash}).encode()).verdict in (
        Verdict.DUPLICATE,
        Verdict.REJECTED,
    )
    assert v.add_object(objs[6].frame).verdict is Verdict.ACCEPTED


def test_a_forgery_buffered_first_does_not_shadow_the_honest_copy(
    signer: Signer, seal: Seal, make_manifest: MakeManifest, cipher: StreamCipher
) -> None:
    """Before any manifest, a keyless verifier cannot tell the two copies apart; it keeps both (they
    differ in bytes) and the manifest's commitment then picks the honest one."""
    honest = seal(4)
    other = seal_object(cipher, 4, b"forged", epoch_id=honest.meta.epoch_id, chunk_duration_ms=2000)
    forged = _with_payload_of(honest.frame, other.frame)
    v = _v(None, signer)
    assert v.add_object(forged, source="forger").verdict is Verdict.PENDING
    assert v.add_object(honest.frame, source="honest").verdict is Verdict.PENDING  # not a "duplicate"
    assert v.add_object(honest.frame, source="honest").verdict is Verdict.DUPLICATE  # the same bytes are
    d = v.add_manifest(make_manifest(4, {4: honest.meta.chunk_hash}, objects={4: _frame_hash(honest.frame)}).encode())
    assert [a.source for a in d.released] == ["honest"]
    assert [(x.reason, x.source) for x in d.dropped] == [(RejectReason.OBJECT_MISMATCH, "forger")]


def test_keyless_refuses_objects_a_root_only_version_1_manifest_covers(
    signer: Signer, seal: Seal, cipher: StreamCipher
) -> None:
    """Review finding: a root-only manifest lists no slot, and the proof checks metadata only, so
    keyless nothing checks the ciphertext: unverifiable, never accepted."""
    o = seal(0)
    body = build_epoch_body(STREAM, 0, 1, {0: o.meta.chunk_hash}, chunk_duration_ms=2000,
                            encoder_profile_id="p", created_unix_ms=1)  # fmt: skip
    root_only = signer.sign(ManifestBody(**{**body.__dict__, "chunk_hashes": ()}))
    v = _v(None, signer)
    assert v.add_manifest(root_only.encode()).verdict is Verdict.ACCEPTED
    proof = merkle_proof([o.meta.chunk_hash], 0)
    with_proof = seal(0, chunk_proof=proof)
    assert v.add_object(with_proof.frame).reason is RejectReason.UNVERIFIABLE


def test_a_copy_with_the_honest_ciphertext_but_other_metadata_does_not_shadow_the_honest_copy(
    signer: Signer, seal: Seal, make_manifest: MakeManifest
) -> None:
    """Review finding: buffered copies are told apart by the whole frame, not the ciphertext alone."""
    honest = seal(6)
    f = decode_frame(honest.frame)
    tampered = encode_frame(dataclasses.replace(f.meta, chunk_duration_ms=2001), bytes(f.payload))
    v = _v(None, signer)
    assert v.add_object(tampered, source="forger").verdict is Verdict.PENDING
    assert v.add_object(honest.frame, source="honest").verdict is Verdict.PENDING
    d = v.add_manifest(make_manifest(6, {6: honest.meta.chunk_hash}, objects={6: _frame_hash(honest.frame)}).encode())
    assert [a.source for a in d.released] == ["honest"]
