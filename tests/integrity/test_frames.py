from __future__ import annotations

import json
import struct
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ec_node.integrity.errors import IntegrityFormatError, RejectReason
from ec_node.integrity.frames import Encryption, Limits, ObjectMeta, decode_frame, encode_frame
from ec_node.integrity.merkle import MerkleProof

HEX32 = st.binary(min_size=32, max_size=32).map(bytes.hex)
TEXT = st.text(min_size=1, max_size=40).filter(lambda s: "\x00" not in s)

metas = st.builds(
    ObjectMeta,
    stream_id=TEXT,
    epoch_id=TEXT,
    chunk_index=st.integers(0, 2**64 - 1),
    chunk_duration_ms=st.integers(0, 2**32 - 1),
    chunk_hash=HEX32,
    encryption=st.builds(Encryption, alg=TEXT, key_id=TEXT, nonce=st.binary(max_size=24).map(bytes.hex)),
    chunk_proof=st.none()
    | st.builds(
        lambda n, i, sibs: MerkleProof(i % n, n, tuple(sibs)),
        st.integers(1, 1000),
        st.integers(0, 1000),
        st.lists(HEX32, max_size=10),
    ),
)


@settings(max_examples=100)
@given(metas, st.binary(min_size=16, max_size=2048))
def test_roundtrip(meta: ObjectMeta, payload: bytes) -> None:
    frame = encode_frame(meta, payload)
    d = decode_frame(frame)
    assert d.meta == meta
    assert bytes(d.payload) == payload
    assert decode_frame(memoryview(frame)).meta == meta
    assert decode_frame(bytearray(frame)).meta == meta


CT = b"c" * 16  # the shortest object: a bare tag


def _frame(meta: dict[str, Any], payload: bytes = CT) -> bytes:
    m = json.dumps(meta, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    return struct.pack(">I", len(m)) + m + payload


def _meta() -> dict[str, Any]:
    return {
        "stream_id": "s",
        "epoch_id": "s/epoch-0",
        "chunk_index": 0,
        "chunk_duration_ms": 2000,
        "chunk_hash": "ab" * 32,
        "encryption": {"alg": "x", "key_id": "s", "nonce": "00" * 24},
    }


def test_unknown_fields_ignored() -> None:
    m = _meta()
    m["future_field"] = {"nested": [1, 2]}
    m["encryption"]["extra"] = True
    assert decode_frame(_frame(m)).meta.chunk_index == 0


@pytest.mark.parametrize(
    "path,value",
    [
        (("stream_id",), None),
        (("stream_id",), 5),
        (("epoch_id",), None),
        (("chunk_index",), None),
        (("chunk_index",), -1),
        (("chunk_index",), 2**64),
        (("chunk_index",), True),
        (("chunk_index",), "1"),
        (("chunk_duration_ms",), 2**32),
        (("chunk_hash",), "AB" * 32),
        (("chunk_hash",), "ab" * 31),
        (("encryption",), None),
        (("encryption",), "x"),
        (("encryption", "alg"), None),
        (("encryption", "key_id"), 1),
        (("encryption", "nonce"), "abc"),
        (("encryption", "nonce"), "zz"),
        (("chunk_proof",), "x"),
        (("chunk_proof",), {"leaf_index": 1, "leaf_count": 1, "siblings": []}),
        (("chunk_proof",), {"leaf_index": 0, "leaf_count": 2, "siblings": ["xx"]}),
    ],
)
def test_missing_or_mistyped_fields(path: tuple[str, ...], value: Any) -> None:
    m = _meta()
    target = m
    for p in path[:-1]:
        target = target[p]
    if value is None:
        target.pop(path[-1], None)
    else:
        target[path[-1]] = value
    if path == ("chunk_proof",) and value is None:
        return
    with pytest.raises(IntegrityFormatError) as e:
        decode_frame(_frame(m))
    assert e.value.reason is RejectReason.MALFORMED


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"\x00\x00",
        b"\x00\x00\x00\x05{}",
        b"\x00\x00\x00\x02[]",
        b"\x00\x00\x00\x03\xff\xfe\xfd",
        b"\x00\x00\x00\x02{}",
        b'\x00\x00\x00\x0b{"a":NaN}  ',
        b'\x00\x00\x00\x0f{"a":1,"a":2}xx',
    ],
)
def test_malformed(raw: bytes) -> None:
    with pytest.raises(IntegrityFormatError):
        decode_frame(raw)


def test_float_and_nesting_refused() -> None:
    m = _meta()
    m["chunk_index"] = 1.0
    with pytest.raises(IntegrityFormatError):
        decode_frame(_frame(m))
    deep = b"[" * 50000 + b"]" * 50000
    with pytest.raises(IntegrityFormatError):
        decode_frame(struct.pack(">I", len(deep)) + deep, Limits(max_meta_bytes=200000))


def test_limits_checked_before_parsing() -> None:
    lim = Limits(max_frame_bytes=1000, max_meta_bytes=100)
    with pytest.raises(IntegrityFormatError) as e:
        decode_frame(b"\x00" * 1001, lim)
    assert e.value.reason is RejectReason.TOO_LARGE
    with pytest.raises(IntegrityFormatError) as e:
        decode_frame(struct.pack(">I", 101) + b"{" * 200, lim)
    assert e.value.reason is RejectReason.TOO_LARGE
    with pytest.raises(IntegrityFormatError) as e:
        decode_frame(struct.pack(">I", 0xFFFFFFFF) + b"{}")  # huge claimed length, tiny frame
    assert e.value.reason is RejectReason.TOO_LARGE
    with pytest.raises(IntegrityFormatError) as e:
        decode_frame(struct.pack(">I", 50) + b"{}")
    assert e.value.reason is RejectReason.MALFORMED


def test_non_bytes_input() -> None:
    with pytest.raises(IntegrityFormatError):
        bad: Any = "text"
        decode_frame(bad)
    with pytest.raises(IntegrityFormatError):
        decode_frame(memoryview(b"abcdefgh")[::2])


@pytest.mark.parametrize(
    "text",
    [
        lambda m: json.dumps(m),  # whitespace
        lambda m: json.dumps(m, separators=(",", ":")),  # unsorted keys
        lambda m: json.dumps({**m, "x": "é"}, sort_keys=True, separators=(",", ":")),  # \\u escape
    ],
)
def test_non_canonical_meta_refused(text: Any) -> None:
    m = _meta()
    raw = text(m).encode()
    with pytest.raises(IntegrityFormatError, match="canonical"):
        decode_frame(struct.pack(">I", len(raw)) + raw + CT)


@pytest.mark.parametrize("n", [0, 1, 15])
def test_object_shorter_than_its_tag_is_malformed(n: int) -> None:
    # PROTOCOL.md §5: the sender could see this in the frame itself, so it is malformed (a sender
    # fault), not bad_aead (which only the key holder can tell, and blames nobody)
    with pytest.raises(IntegrityFormatError, match="tag") as e:
        decode_frame(_frame(_meta(), b"\x00" * n))
    assert e.value.reason is RejectReason.MALFORMED
    assert decode_frame(_frame(_meta(), b"\x00" * 16)).payload.nbytes == 16


def test_null_chunk_proof_is_malformed() -> None:
    # absent and null would be two accepted spellings of one meta, hence two object hashes (§5, §7.2)
    m = {**_meta(), "chunk_proof": None}
    with pytest.raises(IntegrityFormatError, match="null") as e:
        decode_frame(_frame(m))
    assert e.value.reason is RejectReason.MALFORMED
    assert decode_frame(_frame(_meta())).meta.chunk_proof is None


@pytest.mark.parametrize(
    "value,ok",
    [
        (2**64 - 1, True),
        (-(2**63), True),
        (2**53 + 1, True),  # exact, not rounded to a double
        (2**64, False),
        (-(2**63) - 1, False),
        ("9" * 5000, False),  # refused by rule, not by the host's digit limit (4300 in CPython)
    ],
)
def test_integers_in_unknown_fields_are_64_bit(value: int | str, ok: bool) -> None:
    m = json.dumps({**_meta(), "future": 0}, sort_keys=True, separators=(",", ":"))
    text = m.replace('"future":0', f'"future":{value}').encode()
    raw = struct.pack(">I", len(text)) + text + CT
    if ok:
        assert decode_frame(raw).meta.chunk_index == 0
    else:
        with pytest.raises(IntegrityFormatError) as e:
            decode_frame(raw, Limits(max_meta_bytes=1 << 20))
        assert e.value.reason is RejectReason.MALFORMED


def test_nesting_deeper_than_32_is_malformed() -> None:
    def nested(depth: int) -> Any:
        v: Any = 1
        for _ in range(depth):
            v = [v]
        return v

    ok = {**_meta(), "future": nested(31)}  # the meta itself is level 1
    assert decode_frame(_frame(ok)).meta.chunk_index == 0
    with pytest.raises(IntegrityFormatError, match="nested") as e:
        decode_frame(_frame({**_meta(), "future": nested(32)}))
    assert e.value.reason is RejectReason.MALFORMED
