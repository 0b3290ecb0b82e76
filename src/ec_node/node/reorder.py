"""The one reorder stage: accepted chunk indices in, the same indices in order out, one hole timer.

Groups reach a node in arrival order from several peers at different positions, so an accepted
chunk may be ahead of one still missing. Later chunks wait here until every earlier index is
released, known absent (trusted manifests say the window produced no chunk, or a signed
``prev_chunk_index`` link jumps over it), or given up on after ``wait_s`` (a :class:`Hole` reported
as a gap). The first index released fixes where the output starts; anything below it is late.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")

#: ``absent(a, b)``: do trusted manifests say indices ``a .. b-1`` produced no chunk?
AbsentRule = Callable[[int, int], bool]


@dataclass(frozen=True)
class Hole:
    """Indices ``first`` .. ``last`` were skipped without a chunk and without proof that none exists."""

    first: int
    last: int


class Reorder(Generic[T]):
    """Holds accepted items by chunk index and releases them in index order."""

    def __init__(self, max_held: int) -> None:
        if max_held < 1:
            raise ValueError("max_held must be >= 1")
        self.max_held = max_held
        self.next: int | None = None  # the index the output waits for
        self.hole_since: float | None = None
        self._held: dict[int, T] = {}

    def __len__(self) -> int:
        return len(self._held)

    def add(self, index: int, item: T, now: float) -> bool:
        """Hold ``item``; False (and not held) if its index was already passed."""
        if (self.next is not None and index < self.next) or index in self._held:
            return False
        self._held[index] = item
        self._note_hole(now)
        return True

    def lowest(self) -> int | None:
        """The lowest index held, if any."""
        return min(self._held) if self._held else None

    def hole(self) -> tuple[int, int] | None:
        """The missing range ``(first, end)`` that holds back held items, if any."""
        if not self._held or self.next is None:
            return None
        lo = min(self._held)
        return (self.next, lo) if lo > self.next else None

    def deadline(self, wait_s: float) -> float | None:
        """When the current hole will be given up on."""
        return None if self.hole_since is None else self.hole_since + wait_s

    def release(
        self, now: float, wait_s: float, absent: AbsentRule, *, final: bool = False
    ) -> tuple[list[tuple[int, T]], list[Hole]]:
        """Items now in order, and the holes given up on to reach them (``final``: give up on all)."""
        out: list[tuple[int, T]] = []
        holes: list[Hole] = []
        while self._held:
            lo = min(self._held)
            if self.next is None:
                self.next = lo
            if lo > self.next and not absent(self.next, lo):
                held_too_long = self.hole_since is not None and now >= self.hole_since + wait_s  # as deadline()
                if not (final or held_too_long or len(self._held) >= self.max_held):
                    break
                holes.append(Hole(self.next, lo - 1))
            out.append((lo, self._held.pop(lo)))
            self.next = lo + 1
            self.hole_since = None
        self._note_hole(now)
        return out, holes

    def clear(self) -> None:
        """Forget everything held (e.g. the output is complete)."""
        self._held.clear()
        self.hole_since = None

    def _note_hole(self, now: float) -> None:
        if self.hole() is None:
            self.hole_since = None
        elif self.hole_since is None:
            self.hole_since = now
