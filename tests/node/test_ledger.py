"""The peer ledger: only what the sender could see itself is charged; refutations count against the
path; the unknown peer is never charged; a drop is reported once."""

from __future__ import annotations

from ec_node.integrity.errors import RejectReason
from ec_node.node.events import UNKNOWN_PEER
from ec_node.node.ledger import PeerLedger


def test_circumstance_is_counted_but_never_charged() -> None:
    led = PeerLedger(0)
    for reason in (RejectReason.NO_MANIFEST, RejectReason.BUFFER_FULL, RejectReason.STALE, RejectReason.NOT_LISTED):
        c = led.charge("a", reason)
        assert not c.fault and not c.drop
    assert not led.penalized("a") and led.circumstance == 4 and led.faults == 0


def test_sender_faults_penalize_then_drop_once() -> None:
    led = PeerLedger(2)
    results = [led.charge("a", RejectReason.MALFORMED) for _ in range(4)]
    assert [c.rejections for c in results] == [1, 2, 3, 4]
    assert [c.drop for c in results] == [False, False, True, False]
    assert led.penalized("a") and led.is_dropped("a") and led.faults == 4
    assert led.by_reason == {"malformed": 4}


def test_refuted_objects_count_against_the_path_but_never_charge_or_drop() -> None:
    """A relay may carry what it cannot check: a manifest or the key refuting an object proves
    someone upstream lied, not that this peer did."""
    led = PeerLedger(0)
    reasons = [RejectReason.BAD_AEAD, RejectReason.HASH_MISMATCH, RejectReason.OBJECT_MISMATCH, RejectReason.BAD_PROOF]
    charges = [led.charge("relay", r) for r in reasons]
    assert all(c.upstream and not c.fault and not c.drop for c in charges)
    assert led.upstream == {"relay": 4} and led.charges["relay"] == 0
    assert not led.penalized("relay") and not led.is_dropped("relay")
    assert led.faults == 4  # still proven-false objects: --max-invalid-chunks counts them


def test_the_unknown_peer_is_never_charged_or_dropped() -> None:
    led = PeerLedger(0)
    c = led.charge(UNKNOWN_PEER, RejectReason.MALFORMED)
    assert c.fault and not c.drop and not led.is_dropped(UNKNOWN_PEER) and led.faults == 1
    assert led.charge(UNKNOWN_PEER, RejectReason.HASH_MISMATCH).upstream and led.upstream == {}


def test_no_limit_never_drops() -> None:
    led = PeerLedger(None)
    assert not any(led.charge("a", RejectReason.MALFORMED).drop for _ in range(100))
