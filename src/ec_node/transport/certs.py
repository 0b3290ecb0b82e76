"""Which TLS certificates a node presents, when it changes them, and the statement vouching for them.

Pure: no I/O, no clock (every function takes ``now`` in Unix seconds), so the schedule is tested
with a fake clock. PROTOCOL.md §11.2 is the normative text.

Why: browsers accept a certificate pinned by hash (WebTransport ``serverCertificateHashes``) only
if it is ECDSA and valid for at most 14 days, so a node's TLS certificate cannot be its long-lived
identity. The identity is an Ed25519 *node key*; the node id is its raw public key in hex. The node
keeps a *current* certificate (presented) and a *next* one (minted ahead, valid from before the
current one is retired), and signs a :class:`CertStatement` listing both. Peers pin the hashes;
after a rotation a peer that holds only the node id fetches the statement, checks the signature
against the id, and pins what it lists.
"""

from __future__ import annotations

from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from ec_node.integrity._json import canonical_json, is_hex, loads_strict
from ec_node.integrity.errors import IntegrityFormatError

HOUR_S = 3600
DAY_S = 24 * HOUR_S
#: Whole validity of a certificate (not_after - not_before); Chromium's limit for pinned ones is 14 days.
CERT_VALIDITY_S = 13 * DAY_S
#: A certificate starts this long before it is minted, for peers whose clocks run behind.
CLOCK_SKEW_S = HOUR_S
#: The current certificate is replaced this long before it expires (so a rotation that fails can retry).
ROTATE_BEFORE_EXPIRY_S = 3 * DAY_S
#: The next certificate becomes valid this long before the current one is due to be replaced.
NEXT_LEAD_S = DAY_S
#: Longest wait between schedule checks, so a suspended machine or a clock step is noticed.
MAX_CHECK_INTERVAL_S = HOUR_S

#: Broadcast (followed by the node id) and track on which a listener serves its statement.
STATEMENT_BROADCAST_PREFIX = "ec-node/identity/"
STATEMENT_TRACK = "certs"
#: The signed message is this domain tag followed by the canonical JSON of the body.
STATEMENT_DOMAIN = b"ec-node/certs/v1\n"
MAX_STATEMENT_BYTES = 4096
MAX_STATEMENT_CERTS = 4


class CertStatementError(Exception):
    """A certificate statement is malformed, not signed by the node it names, or lists nothing valid."""


@dataclass(frozen=True)
class CertWindow:
    """One certificate's hash and validity, in Unix seconds."""

    sha256: str
    not_before: int
    not_after: int


def is_statement_broadcast(name: str) -> bool:
    """True for a node's statement broadcast, also as a relay shows it (under a path prefix)."""
    return ("/" + name).rfind("/" + STATEMENT_BROADCAST_PREFIX) >= 0


def validity_for(start: int) -> tuple[int, int]:
    """(not_before, not_after) of a certificate meant to be usable from ``start``."""
    not_before = start - CLOCK_SKEW_S
    return not_before, not_before + CERT_VALIDITY_S


def rotate_at(current: CertWindow) -> int:
    """When the current certificate is replaced by the next one."""
    return current.not_after - ROTATE_BEFORE_EXPIRY_S


def next_start(current: CertWindow) -> int:
    """When the certificate that follows ``current`` should start being usable."""
    return rotate_at(current) - NEXT_LEAD_S


def needs_rotation(now: int, current: CertWindow) -> bool:
    """True once the current certificate is due for replacement (or not valid at all)."""
    return now >= rotate_at(current) or now < current.not_before


def usable_next(now: int, current: CertWindow, nxt: CertWindow | None) -> bool:
    """Whether ``nxt`` can take over from ``current`` at its rotation time (else mint a fresh one)."""
    # At the moment it takes over, it must be valid and not itself due for replacement.
    return nxt is not None and not needs_rotation(max(now, rotate_at(current)), nxt)


def seconds_until_check(now: int, current: CertWindow) -> float:
    """How long a listener may sleep before it must look at the schedule again."""
    return float(max(1, min(MAX_CHECK_INTERVAL_S, rotate_at(current) - now)))


@dataclass(frozen=True)
class CertStatement:
    """A node's signed list of the certificates it presents now or will present next."""

    node_id: str
    certs: tuple[CertWindow, ...]
    signature: bytes

    def body(self) -> dict[str, object]:
        """What is signed (canonical JSON after :data:`STATEMENT_DOMAIN`)."""
        return {
            "certs": [{"not_after": c.not_after, "not_before": c.not_before, "sha256": c.sha256} for c in self.certs],
            "node_id": self.node_id,
            "v": 1,
        }

    def encode(self) -> bytes:
        """The wire form: ``{"body": ..., "sig": hex}`` in canonical JSON."""
        return canonical_json({"body": self.body(), "sig": self.signature.hex()})

    def pins(self, now: int) -> tuple[str, ...]:
        """Hashes of the listed certificates not yet expired at ``now`` (what a dialler may pin;
        one not yet valid is harmless to pin, as no server presents it before its time)."""
        return tuple(c.sha256 for c in self.certs if now < c.not_after)


def sign_statement(node_key: Ed25519PrivateKey, node_id: str, certs: tuple[CertWindow, ...]) -> CertStatement:
    """The statement for ``certs``, signed by the node key."""
    unsigned = CertStatement(node_id, certs, b"")
    return CertStatement(node_id, certs, node_key.sign(STATEMENT_DOMAIN + canonical_json(unsigned.body())))


def decode_statement(data: bytes, node_id: str) -> CertStatement:
    """Parse and verify a statement that must come from ``node_id``; CertStatementError otherwise.

    Strict as every peer decoder: bounded before parsing, canonical JSON only, no unknown fields.
    """
    if len(data) > MAX_STATEMENT_BYTES:
        raise CertStatementError(f"certificate statement is larger than {MAX_STATEMENT_BYTES} bytes")
    try:
        outer = loads_strict(data, "certificate statement")
    except IntegrityFormatError as exc:
        raise CertStatementError(str(exc)) from None
    if set(outer) != {"body", "sig"} or not isinstance(outer["body"], dict) or not isinstance(outer["sig"], str):
        raise CertStatementError('certificate statement must be {"body": {...}, "sig": "<hex>"}')
    body, sig = outer["body"], outer["sig"]
    if not is_hex(sig, 64):
        raise CertStatementError("certificate statement signature must be 128 hex digits")
    if set(body) != {"certs", "node_id", "v"} or body["v"] != 1 or type(body["v"]) is not int:
        raise CertStatementError("certificate statement body must be version 1 with certs and node_id only")
    if body["node_id"] != node_id:
        raise CertStatementError(f"certificate statement names node {body['node_id']!r}, not {node_id}")
    raw = body["certs"]
    if not isinstance(raw, list) or not 1 <= len(raw) <= MAX_STATEMENT_CERTS:
        raise CertStatementError(f"certificate statement must list 1 to {MAX_STATEMENT_CERTS} certificates")
    certs = tuple(_window(entry) for entry in raw)
    statement = CertStatement(node_id, certs, bytes.fromhex(sig))
    try:
        public = Ed25519PublicKey.from_public_bytes(bytes.fromhex(node_id))
        public.verify(statement.signature, STATEMENT_DOMAIN + canonical_json(body))
    except (ValueError, InvalidSignature):
        raise CertStatementError(f"certificate statement is not signed by node {node_id}") from None
    return statement


def _window(entry: object) -> CertWindow:
    if not isinstance(entry, dict) or set(entry) != {"not_after", "not_before", "sha256"}:
        raise CertStatementError("certificate entry must be {not_after, not_before, sha256}")
    sha, before, after = entry["sha256"], entry["not_before"], entry["not_after"]
    if not isinstance(sha, str) or not is_hex(sha, 32):
        raise CertStatementError("certificate sha256 must be 64 lowercase hex digits")
    for value in (before, after):
        if type(value) is not int or not 0 <= value < 1 << 40:
            raise CertStatementError("certificate validity must be Unix seconds")
    if not before < after <= before + 14 * DAY_S:
        raise CertStatementError("certificate validity must be positive and at most 14 days")
    return CertWindow(sha, before, after)
