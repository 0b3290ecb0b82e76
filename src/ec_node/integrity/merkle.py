"""BLAKE3 Merkle tree over a manifest's ordered chunk-hash slots, with inclusion proofs.

Domain separation (distinct one-byte prefixes for leaves, absent slots, inner nodes and the empty
tree) stops a leaf from being passed off as a node and vice versa. An odd node at the end of a level is
promoted unchanged (never duplicated), so no two different slot lists share a root. PROTOCOL.md §6.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import blake3

from ec_node.integrity._json import check_hex, get_uint
from ec_node.integrity.errors import IntegrityFormatError

LEAF_PREFIX = b"\x00"
NODE_PREFIX = b"\x01"
ABSENT_PREFIX = b"\x02"
EMPTY_PREFIX = b"\x03"
MAX_PROOF_SIBLINGS = 64
MAX_LEAVES = 1 << 32


def _h(data: bytes) -> bytes:
    return blake3.blake3(data).digest()


ABSENT_LEAF = _h(ABSENT_PREFIX)
EMPTY_ROOT = _h(EMPTY_PREFIX)


def leaf_hash(chunk_hash: str) -> bytes:
    """Leaf for one slot: BLAKE3(0x00 || 32 raw hash bytes), or BLAKE3(0x02) for an absent slot ("")."""
    if chunk_hash == "":
        return ABSENT_LEAF
    return _h(LEAF_PREFIX + check_hex(chunk_hash, 32, "chunk hash"))


def node_hash(left: bytes, right: bytes) -> bytes:
    """Inner node: BLAKE3(0x01 || left || right); the prefix keeps nodes and leaves apart."""
    return _h(NODE_PREFIX + left + right)


def _next_level(level: list[bytes]) -> list[bytes]:
    nxt = [node_hash(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
    if len(level) % 2:
        nxt.append(level[-1])  # odd node: promoted unchanged
    return nxt


def merkle_root(chunk_hashes: list[str]) -> str:
    """Hex root over the slots (hex chunk hash, or "" for a window that produced no chunk)."""
    if not chunk_hashes:
        return EMPTY_ROOT.hex()
    level = [leaf_hash(h) for h in chunk_hashes]
    while len(level) > 1:
        level = _next_level(level)
    return level[0].hex()


@dataclass(frozen=True)
class MerkleProof:
    """Inclusion proof: siblings bottom-up; sides follow from ``leaf_index`` and ``leaf_count``."""

    leaf_index: int
    leaf_count: int
    siblings: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        """JSON form carried as ``ObjectMeta.chunk_proof``."""
        return {"leaf_index": self.leaf_index, "leaf_count": self.leaf_count, "siblings": list(self.siblings)}

    @classmethod
    def from_json(cls, obj: Any) -> MerkleProof:
        """Parse a ``chunk_proof`` object, bounding its siblings; raises :class:`IntegrityFormatError`."""
        what = "chunk_proof"
        if not isinstance(obj, dict):
            raise IntegrityFormatError(f"{what}: expected a JSON object")
        index = get_uint(obj, "leaf_index", what, maximum=MAX_LEAVES - 1)
        count = get_uint(obj, "leaf_count", what, maximum=MAX_LEAVES)
        sibs = obj.get("siblings")
        if not isinstance(sibs, list):
            raise IntegrityFormatError(f"{what}: field 'siblings' must be a list")
        if len(sibs) > MAX_PROOF_SIBLINGS:
            raise IntegrityFormatError(f"{what}: more than {MAX_PROOF_SIBLINGS} siblings")
        for s in sibs:
            if not isinstance(s, str):
                raise IntegrityFormatError(f"{what}: siblings must be hex strings")
            check_hex(s, 32, what)
        if not index < count:
            raise IntegrityFormatError(f"{what}: leaf_index must be below leaf_count")
        return cls(index, count, tuple(sibs))


def merkle_proof(chunk_hashes: list[str], index: int) -> MerkleProof:
    """Inclusion proof for slot ``index`` of ``chunk_hashes``."""
    if not 0 <= index < len(chunk_hashes):
        raise IndexError("proof index out of range")
    level = [leaf_hash(h) for h in chunk_hashes]
    siblings: list[str] = []
    i = index
    while len(level) > 1:
        if i % 2 == 1:
            siblings.append(level[i - 1].hex())
        elif i + 1 < len(level):
            siblings.append(level[i + 1].hex())
        level = _next_level(level)
        i //= 2
    return MerkleProof(index, len(chunk_hashes), tuple(siblings))


def verify_proof(chunk_hash: str, proof: MerkleProof, root: str) -> bool:
    """True when ``chunk_hash`` sits at ``proof.leaf_index`` of a tree of ``proof.leaf_count`` slots."""
    if not 0 <= proof.leaf_index < proof.leaf_count or len(proof.siblings) > MAX_PROOF_SIBLINGS:
        return False
    try:
        h = leaf_hash(chunk_hash)
        sibs = [check_hex(s, 32, "sibling") for s in proof.siblings]
    except IntegrityFormatError:
        return False
    i, n, k = proof.leaf_index, proof.leaf_count, 0
    while n > 1:
        if i % 2 == 1 or i + 1 < n:
            if k >= len(sibs):
                return False
            h = node_hash(sibs[k], h) if i % 2 == 1 else node_hash(h, sibs[k])
            k += 1
        i //= 2
        n = (n + 1) // 2
    return k == len(sibs) and h.hex() == root


__all__ = [
    "ABSENT_LEAF",
    "EMPTY_ROOT",
    "MerkleProof",
    "leaf_hash",
    "merkle_proof",
    "merkle_root",
    "node_hash",
    "verify_proof",
]
