"""Group sequence continuity: the pure core behind every subscription.

Groups reach a subscriber in arrival order (one QUIC stream each), so they can be reordered,
duplicated by a backfill racing the live copy, or missing (dropped as stale, aborted, evicted).
:class:`ContinuityTracker` turns that arrival stream into events in sequence order and says
which sequences to backfill; the I/O shell decides *when* (after a reorder window) and fetches.

Rules:

* Events come out in increasing ``sequence`` order, with a :class:`GapEvent` for every range that
  could not be received or backfilled.
* A group that turns up after its sequence was passed (reported as a gap, or below the first
  sequence seen) is still delivered once, marked ``late=True``; a copy already delivered is dropped.
* Only the ``max_backfill`` sequences nearest the live edge of a hole are worth fetching (older
  ones are the first a bounded cache evicts); the rest of the hole is reported as one gap without
  a fetch, so a publisher that jumps from 5 to 10**12 costs nothing.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class GroupEvent:
    """One group's payload. ``backfilled``: fetched after the live copy failed to arrive in time.
    ``late``: arrived after later sequences were already emitted."""

    sequence: int
    payload: bytes
    backfilled: bool = False
    late: bool = False
    too_large: bool = False  # the peer sent more than the size limit: payload is empty (discarded)


@dataclass(frozen=True)
class GapEvent:
    """Sequences ``start`` .. ``end - 1`` were neither received nor backfilled."""

    start: int
    end: int


Event = GroupEvent | GapEvent


class ContinuityTracker:
    """Orders groups by sequence and finds holes; no I/O, no clock."""

    def __init__(self, start: int | None = None, *, max_backfill: int = 32, dedupe_window: int = 4096) -> None:
        if max_backfill < 0 or dedupe_window < 1:
            raise ValueError("max_backfill must be >= 0 and dedupe_window >= 1")
        self.expected: int | None = start
        self._pending: dict[int, bytes] = {}
        self._max_backfill = max_backfill
        self._window = dedupe_window
        self._recent: set[int] = set()
        self._recent_order: deque[int] = deque()

    @property
    def pending_count(self) -> int:
        """Groups held back because an earlier sequence is missing."""
        return len(self._pending)

    def has_hole(self) -> bool:
        """True when groups are held back waiting for a missing earlier sequence."""
        return bool(self._pending)

    def push(self, sequence: int, payload: bytes) -> list[Event]:
        """Record an arrived group; return the events it makes ready (possibly none)."""
        if sequence < 0:
            raise ValueError("group sequence must be >= 0")
        if self.expected is None:
            self.expected = sequence
        if sequence < self.expected:
            if sequence in self._recent or sequence < self.expected - self._window:
                return []  # a duplicate (e.g. the live copy of a backfilled group), or too old to tell
            self._remember(sequence)
            return [GroupEvent(sequence, payload, late=True)]
        if sequence in self._pending:
            return []
        self._pending[sequence] = payload
        return self._drain()

    def backfill_targets(self) -> list[int]:
        """Sequences worth fetching to fill the current hole, oldest first (empty if no hole)."""
        if not self._pending or self.expected is None:
            return []
        end = min(self._pending)
        begin = max(self.expected, end - self._max_backfill)
        return list(range(begin, end))

    def apply_backfill(self, fetched: Mapping[int, bytes | None]) -> list[Event]:
        """Close the current hole with fetch results (``None`` or absent = not available)."""
        if not self._pending or self.expected is None:
            return []
        end = min(self._pending)
        events: list[Event] = []
        gap_start: int | None = None
        begin = max(self.expected, end - self._max_backfill)
        if begin > self.expected:
            gap_start = self.expected  # the part of the hole too old to be worth fetching
        for seq in range(begin, end):
            payload = fetched.get(seq)
            if payload is None:
                if gap_start is None:
                    gap_start = seq
                continue
            if gap_start is not None:
                events.append(GapEvent(gap_start, seq))
                gap_start = None
            self._remember(seq)
            events.append(GroupEvent(seq, payload, backfilled=True))
        if gap_start is not None:
            events.append(GapEvent(gap_start, end))
        self.expected = end
        events.extend(self._drain())
        return events

    def _drain(self) -> list[Event]:
        events: list[Event] = []
        assert self.expected is not None
        while self.expected in self._pending:
            seq = self.expected
            self._remember(seq)
            events.append(GroupEvent(seq, self._pending.pop(seq)))
            self.expected = seq + 1
        return events

    def _remember(self, seq: int) -> None:
        if seq in self._recent:
            return
        self._recent.add(seq)
        self._recent_order.append(seq)
        if len(self._recent_order) > self._window:
            self._recent.discard(self._recent_order.popleft())
