"""One ledger of what each peer provably did wrong, and the penalty that follows.

A peer is charged only for a reason in :data:`~ec_node.integrity.errors.PEER_FAULTS` (it served
something false); circumstance (no manifest yet, buffer full, stale, not listed) is counted but
never charged. A peer with any charge is *penalized* (its copies wait a moment so an honest copy
can win); one with more than ``max_rejections`` charges is *dropped*. The unknown peer
(:data:`~ec_node.node.events.UNKNOWN_PEER`) is never charged.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from ec_node.integrity.errors import PEER_FAULTS, RejectReason
from ec_node.node.events import UNKNOWN_PEER


@dataclass(frozen=True)
class Charge:
    """The outcome of one rejection for the ledger: was it a fault, and does it drop the peer now."""

    fault: bool
    rejections: int  # the peer's proven faults so far
    drop: bool  # this charge takes the peer over the limit (reported once)


class PeerLedger:
    """Charges, penalties and drops, by peer name."""

    def __init__(self, max_rejections: int | None) -> None:
        self.max_rejections = max_rejections
        self.charges: Counter[str] = Counter()
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
