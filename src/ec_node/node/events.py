"""What goes into the node core and what comes out of it: small frozen dataclasses, nothing else.

Inputs are facts a shell observed on a link (a group arrived, the link came up, was lost, the peer
does not serve the track, the track ended). Outputs are things the shell must do (write a segment,
re-serve a group, finish a track, fetch missing groups, reconnect or close a peer, exit) and
:class:`Report` events it must show (JSON lines with ``--json``, log lines otherwise). Time is
never an event: the shell passes ``now`` with every input and calls ``on_timer(now)`` at
``next_deadline()``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any, ClassVar

from ec_node.errors import ExitCode
from ec_node.integrity.frames import CHUNKS_TRACK, MANIFESTS_TRACK

#: The peer of an object whose sender is not known (e.g. released from a buffer without a tag).
#: It is never charged or dropped.
UNKNOWN_PEER = "?"


class Track(StrEnum):
    """The two tracks of a broadcast (PROTOCOL.md §5)."""

    CHUNKS = CHUNKS_TRACK
    MANIFESTS = MANIFESTS_TRACK


# ------------------------------------------------------------------------------------------ inputs


@dataclass(frozen=True)
class GroupReceived:
    """One group (one frame) arrived on ``track`` from ``peer``; ``backfilled`` if it was fetched."""

    peer: str
    track: Track
    sequence: int
    payload: bytes
    backfilled: bool = False


@dataclass(frozen=True)
class GroupTooLarge:
    """The transport refused a group over the size limit without keeping it."""

    peer: str
    track: Track
    sequence: int


@dataclass(frozen=True)
class LinkUp:
    """The link subscribed (again) and is receiving."""

    peer: str
    track: Track


@dataclass(frozen=True)
class LinkLost:
    """The link failed (connect, subscribe, or the session died); the shell keeps retrying until told to stop."""

    peer: str
    track: Track
    detail: str


@dataclass(frozen=True)
class LinkGone:
    """The peer answered that it does not serve this track: retrying will not help."""

    peer: str
    track: Track
    detail: str


@dataclass(frozen=True)
class TrackEnded:
    """The peer finished the track cleanly: no more groups will come on this link."""

    peer: str
    track: Track


Input = GroupReceived | GroupTooLarge | LinkUp | LinkLost | LinkGone | TrackEnded


# ----------------------------------------------------------------------------------------- actions


@dataclass(frozen=True)
class WriteSegment:
    """Subscriber: write this verified chunk as the next HLS segment (outputs come in index order)."""

    chunk_index: int
    data: bytes
    duration_ms: int
    received_at: float  # the caller's clock when the accepted copy arrived (latency figures)


@dataclass(frozen=True)
class ServeGroup:
    """Relay: publish ``payload`` as group ``sequence`` of the relay's own ``track`` (each at most once)."""

    track: Track
    sequence: int
    payload: bytes


@dataclass(frozen=True)
class FinishTrack:
    """Relay: end the relay's own ``track`` cleanly (downstream sees the end; the cache stays served)."""

    track: Track


@dataclass(frozen=True)
class Fetch:
    """Ask ``peer`` for old groups of ``track`` (a hole); results come back as backfilled :class:`GroupReceived`."""

    peer: str
    track: Track
    sequences: tuple[int, ...]


@dataclass(frozen=True)
class Reconnect:
    """The link has been silent too long to trust QUIC's idle timeout: drop the session and subscribe again."""

    peer: str
    track: Track


@dataclass(frozen=True)
class ClosePeer:
    """Stop the links to ``peer`` for good (all, or the one on ``track``): dropped for lies, or unreachable."""

    peer: str
    track: Track | None = None


@dataclass(frozen=True)
class Exit:
    """Stop the process with ``code``; ``reason`` is the one line a user reads."""

    code: ExitCode
    reason: str


# ----------------------------------------------------------------------------------------- reports


@dataclass(frozen=True)
class Report:
    """An event to show. ``event`` is its stable JSON name; :meth:`to_json` is the JSON line's object."""

    event: ClassVar[str] = "report"
    level: ClassVar[str] = "info"  # log level when shown as a log line

    def to_json(self) -> dict[str, Any]:
        """The event as one JSON object: ``{"event": name, **fields}``."""
        return {"event": self.event, **asdict(self)}

    def text(self) -> str | None:
        """A sentence for people, shown as the log line instead of the JSON fields (None: the fields)."""
        return None

    def log_level(self) -> str:
        """The level of this report's log line (``level`` unless an instance says otherwise)."""
        return self.level


@dataclass(frozen=True)
class ManifestAccepted(Report):
    """A usable manifest (trusted signer, consistent) was added."""

    event: ClassVar[str] = "manifest"
    epoch: int | None
    peer: str
    manifest_id: str
    trusted_on_first_use: str | None = None  # the signer pinned by this manifest, if any


@dataclass(frozen=True)
class ManifestRejected(Report):
    """A manifest was not usable (typed reason)."""

    event: ClassVar[str] = "manifest_rejected"
    level: ClassVar[str] = "warning"
    reason: str
    detail: str
    peer: str

    def log_level(self) -> str:
        """An untrusted signer is named once by :class:`UntrustedSigner`; each refused manifest is then detail."""
        return "info" if self.reason == "untrusted_signer" else self.level


@dataclass(frozen=True)
class UntrustedSigner(Report):
    """Manifests came signed only by ``signers``, none of them ``trusted``: said once per signer set."""

    event: ClassVar[str] = "untrusted_signer"
    level: ClassVar[str] = "warning"
    signers: list[str]
    trusted: list[str]
    peer: str

    def text(self) -> str:
        """``manifest signed by X, which is not a --trust-signer; trusted: Y`` (full ids: they are what to compare)."""
        by = ", ".join(self.signers) or "nobody"
        return f"manifest signed by {by}, which is not a --trust-signer; trusted: {', '.join(self.trusted) or 'none'}"


@dataclass(frozen=True)
class ObjectRejected(Report):
    """An object was not accepted; ``peer_fault``: it proves its sender lied (charged);
    ``upstream_fault``: it is refuted, but the peer may only have carried it (counted, not charged)."""

    event: ClassVar[str] = "rejected"
    level: ClassVar[str] = "warning"
    chunk_index: int | None
    reason: str
    detail: str
    peer: str
    peer_fault: bool
    upstream_fault: bool = False


@dataclass(frozen=True)
class PeerDropped(Report):
    """A peer served more proven lies than allowed and is dropped."""

    event: ClassVar[str] = "peer_dropped"
    level: ClassVar[str] = "warning"
    peer: str
    rejections: int
    last_reason: str
    limit: int


@dataclass(frozen=True)
class LinkState(Report):
    """A link changed state: ``peer_connected`` / ``peer_stalled`` / ``peer_lost`` / ``peer_gone`` / ``peer_ended``."""

    state: str
    peer: str
    track: str
    detail: str = ""

    @property
    def name(self) -> str:
        """The JSON event name (``peer_<state>``)."""
        return f"peer_{self.state}"

    def to_json(self) -> dict[str, Any]:
        """``{"event": "peer_<state>", "track", "peer", "detail"}``."""
        return {"event": self.name, "track": self.track, "peer": self.peer, "detail": self.detail}


@dataclass(frozen=True)
class Gap(Report):
    """Chunk indices ``first``..``last`` were given up on (never arrived, nothing says they are absent)."""

    event: ClassVar[str] = "gap"
    level: ClassVar[str] = "warning"
    first: int
    last: int
    reason: str = "not received"

    def to_json(self) -> dict[str, Any]:
        """``{"event": "gap", "chunks": "a..b", "reason"}``."""
        return {"event": self.event, "chunks": f"{self.first}..{self.last}", "reason": self.reason}


@dataclass(frozen=True)
class Waiting(Report):
    """The node is waiting for something and says what (never a silent hang)."""

    event: ClassVar[str] = "waiting"
    level: ClassVar[str] = "warning"
    what: str
    up_to_s: float


@dataclass(frozen=True)
class Status(Report):
    """Periodic counters: what a viewer or operator watches."""

    event: ClassVar[str] = "status"
    segments: int
    served: int
    rejected: int
    dropped: int
    manifests: int
    pending: int
    pending_bytes: int
    rejected_by_reason: dict[str, int] = field(default_factory=dict)
    peers: dict[str, str] = field(default_factory=dict)
    missing: int = 0  # chunk indices given up on or listed but never received
    peers_dropped: list[str] = field(default_factory=list)
    upstream_faults: dict[str, int] = field(default_factory=dict)  # refuted objects by the peer they came via


Output = WriteSegment | ServeGroup | FinishTrack | Fetch | Reconnect | ClosePeer | Exit | Report
