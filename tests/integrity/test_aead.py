from __future__ import annotations

import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ec_node.integrity.aead import StreamCipher, chunk_hash, object_aad
from ec_node.integrity.errors import IntegrityRejection, RejectReason
from ec_node.integrity.keys import derive_stream_key

SID = "ec/stream/v1/source/stdin/profile-passthrough/variant-source"


def _cipher(secret: bytes = b"", sid: str = SID) -> StreamCipher:
    return StreamCipher(sid, derive_stream_key(sid, secret))


@settings(max_examples=50)
@given(st.binary(max_size=4096), st.integers(0, 2**64 - 1))
def test_roundtrip(pt: bytes, index: int) -> None:
    c = _cipher()
    siv, ct = c.seal(index, pt)
    assert len(siv) == 24 and len(ct) == len(pt) + 16
    assert c.open(index, siv, ct) == pt
    assert c.nonce(index, chunk_hash(pt)) == siv


def test_deterministic_across_publishers() -> None:
    pt = os.urandom(5000)
    a, b = _cipher(b"s"), _cipher(b"s")  # two independent publisher instances
    assert a.seal(7, pt) == b.seal(7, pt)


@settings(max_examples=30)
@given(st.binary(max_size=256), st.binary(max_size=256), st.integers(0, 1000))
def test_nonce_misuse_resistance(p1: bytes, p2: bytes, index: int) -> None:
    """A restarted publisher reusing an index with a different chunk never reuses the nonce."""
    c = _cipher()
    s1, c1 = c.seal(index, p1)
    s2, c2 = c.seal(index, p2)
    assert (s1 == s2) == (p1 == p2)
    assert (c1 == c2) == (p1 == p2)


def test_aad_binds_index_and_stream() -> None:
    c = _cipher(b"k")
    pt = b"hello" * 100
    siv, ct = c.seal(5, pt)
    for idx in (4, 6, 5 + 2**32):
        with pytest.raises(IntegrityRejection) as e:
            c.open(idx, siv, ct)
        assert e.value.reason is RejectReason.BAD_AEAD
    other = StreamCipher(SID + "x", derive_stream_key(SID, b"k"))  # same key, other stream id
    with pytest.raises(IntegrityRejection):
        other.open(5, siv, ct)
    with pytest.raises(IntegrityRejection):
        _cipher(b"other-secret").open(5, siv, ct)


def test_aad_encoding() -> None:
    assert object_aad("ab", 1) == b"every.channel object v1\x00ab\x00" + (1).to_bytes(8, "big")


@settings(max_examples=40)
@given(st.data())
def test_any_bit_flip_fails(data: st.DataObject) -> None:
    c = _cipher()
    siv, ct = c.seal(1, b"payload bytes" * 10)
    blob = bytearray(siv + ct)
    bit = data.draw(st.integers(0, len(blob) * 8 - 1))
    blob[bit // 8] ^= 1 << (bit % 8)
    with pytest.raises(IntegrityRejection):
        c.open(1, bytes(blob[:24]), bytes(blob[24:]))


def test_short_inputs() -> None:
    c = _cipher()
    with pytest.raises(IntegrityRejection):
        c.open(0, b"\x00" * 24, b"short")
    with pytest.raises(IntegrityRejection):
        c.open(0, b"\x00" * 12, b"\x00" * 32)
