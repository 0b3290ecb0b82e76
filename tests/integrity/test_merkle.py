from __future__ import annotations

import blake3
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ec_node.integrity.merkle import (
    ABSENT_LEAF,
    EMPTY_ROOT,
    MerkleProof,
    leaf_hash,
    merkle_proof,
    merkle_root,
    node_hash,
    verify_proof,
)

SLOT = st.one_of(st.just(""), st.binary(min_size=32, max_size=32).map(bytes.hex))


def _h(b: bytes) -> bytes:
    return blake3.blake3(b).digest()


def test_construction_by_hand() -> None:
    hs = [_h(bytes([i])).hex() for i in range(3)]
    l0, l1, l2 = (_h(b"\x00" + bytes.fromhex(h)) for h in hs)
    assert leaf_hash(hs[0]) == l0
    assert node_hash(l0, l1) == _h(b"\x01" + l0 + l1)
    # odd node promoted unchanged: root = node(node(l0, l1), l2)
    assert merkle_root(hs) == _h(b"\x01" + _h(b"\x01" + l0 + l1) + l2).hex()
    assert merkle_root([hs[0]]) == l0.hex()
    assert merkle_root([]) == EMPTY_ROOT.hex() == _h(b"\x03").hex()
    assert leaf_hash("") == ABSENT_LEAF == _h(b"\x02")


@settings(max_examples=60)
@given(st.lists(SLOT, min_size=1, max_size=40), st.data())
def test_every_proof_verifies(slots: list[str], data: st.DataObject) -> None:
    root = merkle_root(slots)
    i = data.draw(st.integers(0, len(slots) - 1))
    p = merkle_proof(slots, i)
    assert verify_proof(slots[i], p, root)
    assert MerkleProof.from_json(p.to_json()) == p


@settings(max_examples=60)
@given(st.lists(SLOT, min_size=2, max_size=40), st.data())
def test_tampered_proofs_fail(slots: list[str], data: st.DataObject) -> None:
    root = merkle_root(slots)
    i = data.draw(st.integers(0, len(slots) - 1))
    p = merkle_proof(slots, i)
    wrong = "ff" * 32 if slots[i] != "ff" * 32 else "ee" * 32
    assert not verify_proof(wrong, p, root)
    j = data.draw(st.integers(0, len(slots) - 1))
    if slots[j] != slots[i]:  # a proof does not move to another position
        assert not verify_proof(slots[i], MerkleProof(j, p.leaf_count, p.siblings), root)
    assert not verify_proof(slots[i], MerkleProof(i, p.leaf_count, (*p.siblings, "00" * 32)), root)
    if p.siblings:
        flipped = ("%064x" % (int(p.siblings[0], 16) ^ 1),) + p.siblings[1:]
        assert not verify_proof(slots[i], MerkleProof(i, p.leaf_count, flipped), root)
        assert not verify_proof(slots[i], MerkleProof(i, p.leaf_count, p.siblings[:-1]), root)


@settings(max_examples=60)
@given(st.lists(SLOT, max_size=12), st.lists(SLOT, max_size=12))
def test_roots_differ_for_different_slot_lists(a: list[str], b: list[str]) -> None:
    assert (merkle_root(a) == merkle_root(b)) == (a == b)


def test_no_duplicate_last_node_ambiguity() -> None:
    h = [_h(bytes([i])).hex() for i in range(3)]
    assert merkle_root(h) != merkle_root([*h, h[2]])
    assert merkle_root([h[0], ""]) != merkle_root([h[0]])


def test_proof_bounds() -> None:
    with pytest.raises(IndexError):
        merkle_proof(["ab" * 32], 1)
    assert not verify_proof("ab" * 32, MerkleProof(0, 0, ()), merkle_root([]))
    assert not verify_proof("zz", MerkleProof(0, 1, ()), merkle_root(["ab" * 32]))
