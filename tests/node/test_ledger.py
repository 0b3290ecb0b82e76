"""The peer ledger: only proven lies are charged; the unknown peer never; a drop is reported once."""

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


def test_lies_penalize_then_drop_once() -> None:
    led = PeerLedger(2)
    results = [led.charge("a", RejectReason.BAD_AEAD) for _ in range(4)]
    assert [c.rejections for c in results] == [1, 2, 3, 4]
    assert [c.drop for c in results] == [False, False, True, False]
    assert led.penalized("a") and led.is_dropped("a") and led.faults == 4
    assert led.by_reason == {"bad_aead": 4}


def test_the_unknown_peer_is_never_charged_or_dropped() -> None:
    led = PeerLedger(0)
    c = led.charge(UNKNOWN_PEER, RejectReason.HASH_MISMATCH)
    assert c.fault and not c.drop and not led.is_dropped(UNKNOWN_PEER) and led.faults == 1


def test_no_limit_never_drops() -> None:
    led = PeerLedger(None)
    assert not any(led.charge("a", RejectReason.MALFORMED).drop for _ in range(100))
