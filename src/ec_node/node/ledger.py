"""One ledger of what each peer provably did wrong, and the penalty that follows.

A peer is charged only for what it could have seen itself: a reason in
:data:`~ec_node.integrity.errors.SENDER_FAULTS` (a frame that does not decode, is too large or names
another stream). An object a manifest or the key refutes (the rest of ``PEER_FAULTS``) proves that
*someone* upstream lied, not that this peer did, since a relay may carry objects it cannot or does
not check: it is an *upstream fault*, counted against the path it came by (the peer) and reported,
but never charged. Circumstance (no manifest yet, buffer full, stale, not listed) is counted only. A
peer with any charge is *penalized* (its copies wait a moment so an honest copy can win); one with
more than ``max_rejections`` charges is *dropped*. The unknown peer
(:data:`~ec_node.node.events.UNKNOWN_PEER`) is never charged.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from ec_node.integrity.errors import PEER_FAULTS, SENDER_FAULTS, RejectReason
from ec_node.node.events import UNKNOWN_PEER


@dataclass(frozen=True)
class Charge:
    """The outcome of one rejection for the ledger: whose fault, and does it drop the peer now."""

    fault: bool  # the sender itself served something false (charged)
    rejections: int  # the peer's charges so far
    drop: bool  # this charge takes the peer over the limit (reported once)
    upstream: bool = False  # refuted, but maybe not this peer's doing: counted against its path only


class PeerLedger:
    """Charges, penalties and drops, by peer name."""

    def __init__(self, max_rejections: int | None) -> None:
        self.max_rejections = max_rejections
        self.charges: Counter[str] = Counter()
        self.upstream: Counter[str] = Counter()  # upstream faults by the peer they came through
        self.dropped: set[str] = set()
        self.by_reason: Counter[str] = Counter()  # every rejection, fault or not
        self.faults = 0  # proven-invalid objects in total (what --max-invalid-chunks limits)
        self.circumstance = 0  # objects given up for timing or room, not for lies

    def charge(self, peer: str, reason: RejectReason) -> Charge:
        """Record one rejection from ``peer``."""
        self.by_reason[reason.value] += 1
        if reason not in PEER_FAULTS:
            self.circumstance += 1
            return Charge(False, self.charges[peer], False)
        self.faults += 1
        if reason not in SENDER_FAULTS:
            if peer and peer != UNKNOWN_PEER:
                self.upstream[peer] += 1
            return Charge(False, self.charges[peer], False, upstream=True)
        if peer == UNKNOWN_PEER or not peer:
            return Charge(True, 0, False)
        self.charges[peer] += 1
        n = self.charges[peer]
        limit = self.max_rejections
        drop = limit is not None and n > limit and peer not in self.dropped
        if drop:
            self.dropped.add(peer)
        return Charge(True, n, drop)

    def penalized(self, peer: str) -> bool:
        """The peer lied before: its copies wait their turn."""
        return self.charges[peer] > 0

    def is_dropped(self, peer: str) -> bool:
        """The peer is cut off: nothing it sends is considered."""
        return peer in self.dropped
