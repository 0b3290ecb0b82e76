from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import blake3
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from hypothesis import given, settings
from hypothesis import strategies as st

from ec_node.integrity._json import canonical_json
from ec_node.integrity.errors import IntegrityFormatError, IntegrityRejection, RejectReason
from ec_node.integrity.frames import Limits
from ec_node.integrity.keys import signing_key_from_seed
from ec_node.integrity.manifest import (
    BODY_FIELDS,
    BODY_FIELDS_V2,
    MANIFEST_VERSION,
    EpochAssembler,
    Manifest,
    ManifestBody,
    add_signature,
    build_epoch_body,
    check_manifest_body,
    epoch_id_for,
    parse_epoch_id,
    parse_manifest,
    sign_manifest,
)
from ec_node.integrity.merkle import merkle_root
from ec_node.integrity.signer import Signer

STREAM = "ec/stream/v1/broadcast/atsc/tsid-2049/program-3/callsign-wsyn-hd/profile-passthrough/variant-source"
SLOT = st.one_of(st.just(""), st.binary(min_size=32, max_size=32).map(bytes.hex))
JSON_LEAF = st.one_of(st.none(), st.booleans(), st.integers(-(2**63), 2**64 - 1), st.text(max_size=20))
METADATA = st.dictionaries(
    st.text(max_size=10), st.recursive(JSON_LEAF, lambda c: st.lists(c, max_size=3), max_leaves=6), max_size=4
)
KEY = signing_key_from_seed(bytes(32))


@settings(max_examples=60, deadline=None)
@given(
    st.integers(0, 10**6),
    st.integers(1, 8),
    st.lists(SLOT, min_size=8, max_size=8),
    st.integers(0, 2**32 - 1),
    st.text(max_size=30),
    st.integers(0, 2**64 - 1),
    METADATA,
)
def test_roundtrip(
    epoch: int, n: int, slots: list[str], dur: int, prof: str, created: int, meta: dict[str, Any]
) -> None:
    chunks = {epoch * n + k: h for k, h in enumerate(slots[:n]) if h}
    body = build_epoch_body(
        STREAM, epoch, n, chunks, chunk_duration_ms=dur, encoder_profile_id=prof, created_unix_ms=created, metadata=meta
    )
    m = sign_manifest(body, KEY)
    encoded = m.encode()
    back = parse_manifest(encoded)
    assert back == m
    assert back.encode() == encoded
    check_manifest_body(back)
    assert back.valid_signers() == [Signer(KEY).signer_id]
    assert body.total_chunks == n == len(body.chunk_hashes)
    assert all(body.slot(epoch * n + k) == chunks.get(epoch * n + k, "") for k in range(n))


def test_canonical_json_and_id() -> None:
    body = build_epoch_body(
        STREAM,
        2,
        2,
        {4: "ab" * 32},
        chunk_duration_ms=2000,
        encoder_profile_id="p",
        created_unix_ms=5,
        metadata={"z": 1, "a": "é"},
    )
    canon = body.canonical_bytes()
    obj = json.loads(canon)
    assert canon == json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    assert b" " not in canon and "é".encode() in canon
    assert set(obj) == BODY_FIELDS
    assert obj["chunk_hashes"] == ["ab" * 32, ""] and obj["chunk_start_index"] == 4
    assert obj["epoch_id"] == f"{STREAM}/epoch-2"
    assert body.compute_id() == blake3.blake3(canon).hexdigest()
    m = sign_manifest(body, KEY)  # the signature is over the 32 raw id bytes
    Ed25519PublicKey.from_public_bytes(bytes.fromhex(m.signatures[0].signer_id)).verify(
        bytes.fromhex(m.signatures[0].signature), bytes.fromhex(m.manifest_id)
    )


def test_epoch_ids() -> None:
    assert epoch_id_for("s", 7) == "s/epoch-7"
    assert parse_epoch_id("s", "s/epoch-7") == 7
    for bad in ("s/epoch-07", "s/epoch-", "s/epoch-x", "t/epoch-1", "s/epoch--1", "s/epoch-١"):
        assert parse_epoch_id("s", bad) is None


def _body_json() -> dict[str, Any]:
    body = build_epoch_body(
        STREAM, 1, 2, {2: "ab" * 32, 3: "cd" * 32}, chunk_duration_ms=2000, encoder_profile_id="p", created_unix_ms=1
    )
    return sign_manifest(body, KEY).to_json()


def _enc(obj: dict[str, Any]) -> bytes:
    return canonical_json(obj)


@pytest.mark.parametrize(
    "mutate",
    [
        lambda m: m["body"].pop("metadata"),
        lambda m: m["body"].__setitem__("extra", 1),
        lambda m: m["body"].__setitem__("total_chunks", 0),
        lambda m: m["body"].__setitem__("total_chunks", 3),
        lambda m: m["body"].__setitem__("total_chunks", "2"),
        lambda m: m["body"].__setitem__("chunk_start_index", 2**64 - 1),
        lambda m: m["body"].__setitem__("merkle_root", "AB" * 32),
        lambda m: m["body"].__setitem__("chunk_hashes", ["ab" * 32, None]),
        lambda m: m["body"].__setitem__("chunk_hashes", "x"),
        lambda m: m["body"].__setitem__("metadata", []),
        lambda m: m["body"].__setitem__("stream_id", "bad\nid"),
        lambda m: m["body"].__setitem__("created_unix_ms", -1),
        lambda m: m.pop("manifest_id"),
        lambda m: m.__setitem__("manifest_id", "ab"),
        lambda m: m.__setitem__("signatures", {}),
        lambda m: m.__setitem__("signatures", ["x"]),
        lambda m: m["signatures"][0].__setitem__("signature", "ab" * 32),
        lambda m: m["signatures"][0].pop("signer_id"),
        lambda m: m.__setitem__("body", []),
    ],
)
def test_malformed_manifests(mutate: Callable[[dict[str, Any]], Any]) -> None:
    m = _body_json()
    mutate(m)
    with pytest.raises(IntegrityFormatError):
        parse_manifest(_enc(m))


def test_unknown_top_level_fields_ignored() -> None:
    m = _body_json()
    m["future"] = [1]
    assert parse_manifest(_enc(m)).manifest_id == m["manifest_id"]


def test_limits() -> None:
    m = _body_json()
    with pytest.raises(IntegrityFormatError) as e:
        parse_manifest(_enc(m), Limits(max_manifest_bytes=100))
    assert e.value.reason is RejectReason.TOO_LARGE
    m["signatures"] = m["signatures"] * 17
    with pytest.raises(IntegrityFormatError):
        parse_manifest(_enc(m))
    with pytest.raises(IntegrityFormatError):
        parse_manifest(_enc(_body_json()), Limits(max_manifest_chunks=1))


def test_check_manifest_body_reasons() -> None:
    m = parse_manifest(_enc(_body_json()))
    check_manifest_body(m)
    fake_id = Manifest(m.body, "00" * 32, m.signatures)
    with pytest.raises(IntegrityRejection) as e:
        check_manifest_body(fake_id)
    assert e.value.reason is RejectReason.BAD_MANIFEST_ID
    b = m.body
    wrong_root = ManifestBody(**{**b.__dict__, "merkle_root": merkle_root(["ab" * 32])})
    with pytest.raises(IntegrityRejection) as e:
        check_manifest_body(sign_manifest(wrong_root, KEY))
    assert e.value.reason is RejectReason.BAD_MERKLE_ROOT
    wrong_epoch = ManifestBody(**{**b.__dict__, "epoch_id": epoch_id_for(STREAM, 2)})
    with pytest.raises(IntegrityRejection) as e:
        check_manifest_body(sign_manifest(wrong_epoch, KEY))
    assert e.value.reason is RejectReason.MALFORMED


def test_cosign() -> None:
    m = parse_manifest(_enc(_body_json()))
    other = signing_key_from_seed(b"\x01" * 32)
    m2 = add_signature(m, other)
    assert m2.valid_signers() == [Signer(KEY).signer_id, Signer(other).signer_id]
    assert parse_manifest(m2.encode()) == m2


def _assemble(indices: list[int], epoch_chunks: int) -> list[ManifestBody]:
    a = EpochAssembler(STREAM, epoch_chunks=epoch_chunks, chunk_duration_ms=2000, encoder_profile_id="p")
    out: list[ManifestBody] = []
    for i in indices:
        out += a.add_chunk(i, blake3.blake3(str(i).encode()).hexdigest(), now_ms=i)
    return out + a.finish(now_ms=999)


def test_assembler_one_chunk_epochs_with_gap() -> None:
    bodies = _assemble([10, 11, 13], 1)
    assert [b.epoch_id.rsplit("-", 1)[1] for b in bodies] == ["10", "11", "12", "13"]
    assert bodies[2].chunk_hashes == ("",) and bodies[2].total_chunks == 1
    assert bodies[2].merkle_root == merkle_root([""])
    assert all(b.chunk_start_index == int(b.epoch_id.rsplit("-", 1)[1]) for b in bodies)


def test_assembler_multi_chunk_epochs() -> None:
    bodies = _assemble([0, 1, 2, 4, 9, 10], 3)
    assert [(b.chunk_start_index, sum(1 for h in b.chunk_hashes if h)) for b in bodies] == [
        (0, 3),
        (3, 1),
        (6, 0),
        (9, 2),
    ]
    assert bodies[1].chunk_hashes[0] == "" and bodies[1].chunk_hashes[2] == ""
    for b in bodies:
        check_manifest_body(sign_manifest(b, KEY))


def test_assembler_rejects_going_back() -> None:
    a = EpochAssembler(STREAM, epoch_chunks=2, chunk_duration_ms=2000, encoder_profile_id="p")
    a.add_chunk(4, "ab" * 32, 0)
    with pytest.raises(ValueError):
        a.add_chunk(4, "cd" * 32, 0)
    a.add_chunk(5, "ab" * 32, 0)
    with pytest.raises(ValueError):
        a.add_chunk(3, "ab" * 32, 0)
    assert a.finish(0) == []


# --- version 2: object commitments, no per-leader fields ------------------------------------------


def _v2(epoch_chunks: int = 2) -> ManifestBody:
    return build_epoch_body(
        STREAM,
        3,
        epoch_chunks,
        {6: "aa" * 32},
        chunk_duration_ms=2000,
        encoder_profile_id="passthrough",
        metadata={"title": "x"},
        objects={6: "bb" * 32},
    )


def test_version_2_round_trip_and_fields() -> None:
    body = _v2()
    obj = body.to_json()
    assert set(obj) == BODY_FIELDS_V2 and obj["version"] == MANIFEST_VERSION == 2
    assert "created_unix_ms" not in obj
    assert obj["object_hashes"] == ["bb" * 32, ""] and obj["object_root"] == merkle_root(["bb" * 32, ""])
    m = Signer(signing_key_from_seed(bytes(32))).sign(body)
    back = parse_manifest(m.encode())
    assert back.body == body and back.body.object_slot(6) == "bb" * 32 and back.body.object_slot(7) == ""
    check_manifest_body(back)


def test_two_leaders_build_byte_identical_version_2_bodies() -> None:
    """Nothing per leader is signed, so the ids (what each leader signs) agree."""
    a = EpochAssembler(STREAM, chunk_duration_ms=2000, encoder_profile_id="p", commit_objects=True)
    b = EpochAssembler(STREAM, chunk_duration_ms=2000, encoder_profile_id="p", commit_objects=True)
    (ba,) = a.add_chunk(5, "aa" * 32, 1_000, object_hash="bb" * 32)
    (bb,) = b.add_chunk(5, "aa" * 32, 9_999_999, object_hash="bb" * 32)
    assert ba.compute_id() == bb.compute_id()
    with pytest.raises(ValueError, match="object_hash"):
        a.add_chunk(6, "aa" * 32, 1_000)


@pytest.mark.parametrize(
    ("mutate", "match"),
    [
        (lambda o: o.update(version=1), "version"),
        (lambda o: o.update(version=3), "version"),
        (lambda o: o.update(version=True), "version"),
        (lambda o: o.update(created_unix_ms=1), "fields differ"),
        (lambda o: o.pop("object_root"), "fields differ"),
        (lambda o: o.update(object_hashes=["bb" * 32]), "total_chunks"),
        (lambda o: o.update(object_hashes=["", "bb" * 32]), "exactly where chunks are"),
        (lambda o: o.update(object_hashes=["BB" * 32, ""]), "exactly where chunks are"),
    ],
)
def test_version_2_form_is_strict(mutate: Callable[[dict[str, Any]], Any], match: str) -> None:
    obj = _v2().to_json()
    mutate(obj)
    with pytest.raises(IntegrityFormatError, match=match):
        ManifestBody.from_json(obj)


def test_version_2_object_root_is_checked() -> None:
    from dataclasses import replace

    body = replace(_v2(), object_root="cc" * 32)
    m = Signer(signing_key_from_seed(bytes(32))).sign(body)
    with pytest.raises(IntegrityRejection) as info:
        check_manifest_body(parse_manifest(m.encode()))
    assert info.value.reason is RejectReason.BAD_MERKLE_ROOT
