"""Liveness of each (peer, track) link on the chunk clock, without I/O.

QUIC notices a dead peer only after its ~13 s idle timeout; a node notices on the chunk clock:
a link silent for ``stall_s`` (about two chunk durations) is *stalled*; silent ``silent_stalls``
stall periods more, it is reconnected. A link that fails is *lost* and retried by its shell; lost
for ``reconnect_for_s`` it is *gone*, as is one whose peer does not serve the track. *Ended* means
the peer finished the track; *dropped* that the node cut the peer off for lies.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from ec_node.node.events import Track


class LinkPhase(StrEnum):
    """Where a link is in its life."""

    CONNECTING = "connecting"  # not yet up
    UP = "up"
    STALLED = "stalled"
    LOST = "lost"  # failed; the shell is retrying
    ENDED = "ended"  # final: the track ended cleanly
    GONE = "gone"  # final: the peer does not serve it, or was unreachable too long
    DROPPED = "dropped"  # final: the node cut the peer off

    @property
    def final(self) -> bool:
        """Nothing more will come on this link."""
        return self in (LinkPhase.ENDED, LinkPhase.GONE, LinkPhase.DROPPED)


@dataclass
class Link:
    """The state of one link; times are the core's clock."""

    peer: str
    track: Track
    stall_s: float
    phase: LinkPhase = LinkPhase.CONNECTING
    since: float = 0.0  # when the current phase began
    last_group_at: float | None = None
    lost_since: float | None = None  # first failure of the current outage
    ever_up: bool = False

    def stall_deadline(self) -> float | None:
        """When silence turns this link stalled (``UP``), or into a reconnect (``STALLED``)."""
        if self.phase is LinkPhase.UP:
            return max(self.since, self.last_group_at or self.since) + self.stall_s
        return None

    def reconnect_deadline(self, silent_stalls: float) -> float | None:
        """When a stalled link has been silent long enough to reconnect."""
        return self.since + silent_stalls * self.stall_s if self.phase is LinkPhase.STALLED else None

    def give_up_deadline(self, reconnect_for_s: float) -> float | None:
        """When a lost (or never connected) link counts as gone."""
        if self.phase in (LinkPhase.LOST, LinkPhase.CONNECTING) and self.lost_since is not None:
            return self.lost_since + reconnect_for_s
        return None

    def enter(self, phase: LinkPhase, now: float) -> None:
        """Move to ``phase`` at ``now``."""
        self.phase = phase
        self.since = now
        if phase is LinkPhase.UP:
            self.ever_up = True
            self.lost_since = None
        elif phase is LinkPhase.LOST and self.lost_since is None:
            self.lost_since = now


@dataclass
class Ending:
    """A track's end, final only after a grace: MoQ carries each group on its own stream, so the end
    can overtake the last groups. What it overtook may be fetched once, which starts one more grace."""

    grace_s: float
    until: float | None  # when the grace is over; None once it is (the end is then final)
    fetched: bool = False

    @classmethod
    def at(cls, now: float, grace_s: float) -> Ending:
        """An end seen at ``now``."""
        return cls(grace_s, now + grace_s)

    def waiting(self, now: float) -> bool:
        """Still inside the grace."""
        return self.until is not None and now < self.until

    def settle(self, now: float, missing: tuple[int, ...]) -> tuple[int, ...]:
        """The grace is over: what to fetch (once, with a second grace), or () when the end is final."""
        if missing and not self.fetched:
            self.fetched = True
            self.until = now + self.grace_s
            return missing
        self.until = None
        return ()
