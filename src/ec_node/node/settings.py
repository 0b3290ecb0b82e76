"""The node core's settings: one type for the subscriber and the relay, their differences named here.

Every timer of the core is a multiple of the chunk duration (the chunk clock), so a node running
1 s chunks notices a stalled peer twice as fast as one running 2 s chunks; a few limits are in
seconds because they are about people (how long to wait for a leader) or networks (reconnects).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Role(StrEnum):
    """What the node does with accepted chunks."""

    SUBSCRIBER = "subscriber"  # writes them as HLS segments, in index order, then exits at the end
    RELAY = "relay"  # re-serves them at once on its own tracks, and keeps serving after the end


#: Default for ``--max-peer-rejections`` (subscriber and relay alike): proven lies a peer may serve
#: before it is dropped. Only proven lies count (PROTOCOL.md §9), so a small number is safe.
DEFAULT_MAX_PEER_REJECTIONS = 3


@dataclass(frozen=True)
class NodeSettings:
    """Settings of one :class:`~ec_node.node.core.NodeCore`; defaults are the CLI's defaults."""

    role: Role
    require_manifest: bool = True
    chunk_ms: int = 2000
    max_peer_rejections: int | None = DEFAULT_MAX_PEER_REJECTIONS  # None: never drop a peer
    max_invalid: int | None = None  # subscriber: exit 8 after more proven-invalid objects than this
    stop_after: int | None = None  # subscriber: exit 0 after this many segments
    manifest_timeout_s: float = 30.0  # how long the manifests peer may be away before giving up on it
    reconnect_for_s: float = 30.0  # how long a lost link is retried before the peer counts as gone
    stall_chunks: float = 2.0  # an objects link silent this many chunk durations is stalled
    manifest_stall_chunks: float = 3.0  # ... a manifests link (manifests may lag objects)
    silent_stalls: float = 3.0  # stalled for this many stall periods more: reconnect
    backfill_chunks: float = 0.25  # a hole open this long is fetched from the objects peers
    reorder_chunks: float = 2.0  # a hole open this long is given up on (reported as a gap)
    penalty_chunks: float = 0.25  # objects from a peer that lied before wait this long for an honest copy
    end_grace_chunks: float = 0.25  # a track's end may overtake its last groups (each its own stream): wait this long
    max_deferred: int = 16  # objects from penalized peers held back at once (bounded)
    max_held: int = 64  # accepted chunks held for reordering (bounded)
    max_backfill: int = 32  # sequences fetched per hole, nearest the live edge
    status_every_s: float = 5.0

    def __post_init__(self) -> None:
        if self.chunk_ms <= 0:
            raise ValueError("chunk_ms must be positive")
        if self.max_peer_rejections is not None and self.max_peer_rejections < 0:
            raise ValueError("max_peer_rejections must be >= 0")

    # -------------------------------------------------------------- where the two roles differ

    @property
    def ordered_output(self) -> bool:
        """A subscriber's output (HLS) must be in index order; a relay serves each group as soon as it is good."""
        return self.role is Role.SUBSCRIBER

    @property
    def exits_at_end(self) -> bool:
        """A subscriber exits when the stream ends; a relay finishes its tracks and serves its cache until stopped."""
        return self.role is Role.SUBSCRIBER

    @property
    def exits_without_manifests(self) -> bool:
        """Manifests peer gone for ``manifest_timeout_s``: a subscriber exits 10; a relay drops what it buffered
        and keeps serving (its own subscribers time out themselves)."""
        return self.role is Role.SUBSCRIBER

    # -------------------------------------------------------------- the chunk clock, in seconds

    @property
    def chunk_s(self) -> float:
        """One chunk duration in seconds."""
        return self.chunk_ms / 1000

    def stall_s(self, manifests: bool) -> float:
        """How long a link may be silent before it counts as stalled."""
        return (self.manifest_stall_chunks if manifests else self.stall_chunks) * self.chunk_s

    @property
    def backfill_s(self) -> float:
        """How long a hole stays open before the missing groups are fetched."""
        return self.backfill_chunks * self.chunk_s

    @property
    def reorder_s(self) -> float:
        """How long a hole may hold back later chunks before it is given up on."""
        return self.reorder_chunks * self.chunk_s

    @property
    def end_grace_s(self) -> float:
        """How long after a track's end its groups still in flight are taken (MoQ may deliver the end first)."""
        return self.end_grace_chunks * self.chunk_s

    @property
    def penalty_s(self) -> float:
        """How long an object from a penalized peer waits for an honest copy."""
        return self.penalty_chunks * self.chunk_s
