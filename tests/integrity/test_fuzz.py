"""Fuzz the decoders and the verifier: no input may raise anything but IntegrityRejection."""

from __future__ import annotations

import contextlib
import json
import struct
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ec_node.integrity.errors import IntegrityRejection
from ec_node.integrity.frames import Limits, decode_frame
from ec_node.integrity.keys import derive_stream_key
from ec_node.integrity.manifest import parse_manifest
from ec_node.integrity.verifier import Verdict, Verifier

STREAM = "s"
LIMITS = Limits(max_frame_bytes=1 << 16, max_meta_bytes=4096, max_manifest_bytes=1 << 16)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=20),
    lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=12), c, max_size=4),
    max_leaves=20,
)

META_KEYS = ["stream_id", "epoch_id", "chunk_index", "chunk_duration_ms", "chunk_hash", "encryption", "chunk_proof"]
BODY_KEYS = [
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
]
plausible = st.one_of(
    json_values,
    st.sampled_from([STREAM, "s/epoch-0", "ab" * 32, "00" * 24, 0, 1, 2**64, -1, True, [], {}, ""]),
    st.fixed_dictionaries({}, optional={"alg": json_values, "key_id": st.just(STREAM), "nonce": st.just("00" * 24)}),
    st.lists(st.sampled_from(["ab" * 32, "", 1, None]), max_size=4),
)


def _only_integrity_errors(fn: Any, data: Any) -> None:
    with contextlib.suppress(IntegrityRejection):
        fn(data)


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=512))
def test_frame_decoder_random_bytes(raw: bytes) -> None:
    _only_integrity_errors(lambda d: decode_frame(d, LIMITS), raw)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(META_KEYS), plausible), st.binary(max_size=64))
def test_frame_decoder_structured(meta: dict[str, Any], payload: bytes) -> None:
    try:
        m = json.dumps(meta, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    except ValueError:
        return
    _only_integrity_errors(lambda d: decode_frame(d, LIMITS), struct.pack(">I", len(m)) + m + payload)


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=512))
def test_manifest_decoder_random_bytes(raw: bytes) -> None:
    _only_integrity_errors(lambda d: parse_manifest(d, LIMITS), raw)


@settings(max_examples=300, deadline=None)
@given(
    st.dictionaries(st.sampled_from(BODY_KEYS), plausible),
    plausible,
    st.lists(st.dictionaries(st.sampled_from(["signer_id", "signature"]), plausible), max_size=3),
)
def test_manifest_decoder_structured(body: dict[str, Any], mid: Any, sigs: list[Any]) -> None:
    try:
        obj = {"body": body, "manifest_id": mid, "signatures": sigs}
        raw = json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    except ValueError:
        return
    _only_integrity_errors(lambda d: parse_manifest(d, LIMITS), raw)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.booleans(), st.binary(max_size=256)), max_size=20))
def test_verifier_never_raises_and_never_accepts_junk(feed: list[tuple[bool, bytes]]) -> None:
    v = Verifier(STREAM, derive_stream_key(STREAM), limits=LIMITS, max_pending_objects=4)
    for is_manifest, raw in feed:
        if is_manifest:
            d = v.add_manifest(raw)
            assert d.verdict is Verdict.REJECTED
        else:
            od = v.add_object(raw)
            assert od.verdict is Verdict.REJECTED
    assert v.accepted_objects == 0 and v.pending_count == 0
