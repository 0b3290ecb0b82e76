"""The transport interface publish/subscribe code uses; one implementation per wire transport.

``MoqTransport`` (moq-rs over raw QUIC, :mod:`ec_node.transport.moq_transport`) is the only one
today. An iroh transport can be added beside it: its ``EndpointAddr`` has the same id + addrs
shape, and nothing above this interface names moq.

Model: a node *listens* and publishes broadcasts (named sets of tracks); a peer *connects* and
subscribes to tracks. A track is a sequence of groups numbered by the publisher; each group carries
exactly one payload (one MoQ frame).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Protocol

from ec_node.errors import UnreachableError
from ec_node.transport.addr import EndpointAddr
from ec_node.transport.identity import NodeIdentity
from ec_node.transport.shedding import ShedLimits


@dataclass(frozen=True)
class GroupEvent:
    """One group's payload, as it arrived. ``too_large``: the peer sent more than the size limit, so
    the payload was discarded unread (empty) -- the receiver may charge the sender for it."""

    sequence: int
    payload: bytes
    too_large: bool = False


class PeerLostError(UnreachableError):
    """An established session or track failed: the peer died, reset, or aborted the track."""


class NotFoundError(UnreachableError):
    """The peer does not serve the requested broadcast or track (not announced in time)."""


class TrackWriter(Protocol):
    """Publisher side of one track."""

    @property
    def name(self) -> str:
        """The track's name."""
        ...

    def write_group(self, sequence: int, payload: bytes) -> None:
        """Publish group ``sequence`` holding ``payload``; never blocks. Reusing a sequence is a
        ValueError."""
        ...

    def finish(self) -> None:
        """End the track cleanly: subscribers' iterators stop after the last group."""
        ...

    async def wait_subscribed(self) -> None:
        """Wait until at least one subscriber wants this track (e.g. before a timed start)."""
        ...


class Listener(Protocol):
    """A served node: its address, the broadcasts it publishes, graceful close.

    ``on_event`` is called with a JSON-able event when a downstream session is refused or shed.
    """

    on_event: Callable[[dict[str, object]], None]

    @property
    def endpoint_addr(self) -> EndpointAddr | None:
        """How peers reach this node (its node id and addresses); None if it serves no socket."""
        ...

    async def push(self, url: str, broadcast: str, timeout_s: float = 10.0) -> None:
        """Also announce this node's broadcasts to the relay at ``url`` (it dials out; redials itself)."""
        ...

    def publish_broadcast(self, name: str, tracks: list[str]) -> dict[str, TrackWriter]:
        """Create every track of broadcast ``name``, then announce it (so no subscriber ever
        sees it half-built)."""
        ...

    async def close(self) -> None:
        """Finish all tracks, let subscribers drain briefly, then close sessions and the socket."""
        ...


class Subscription(Protocol):
    """Groups of one track in arrival order (ordering and holes are the node core's business).

    ``async for`` yields :class:`GroupEvent` until the publisher finishes the track; it raises
    :class:`PeerLostError` if the session or track fails. ``next(timeout)`` raises
    :class:`TimeoutError` when no group arrives for ``timeout`` seconds, and the subscription stays
    usable after that.
    """

    def __aiter__(self) -> AsyncIterator[GroupEvent]: ...

    async def next(self, timeout: float | None = None) -> GroupEvent | None:
        """The next event, or ``None`` once the track has ended cleanly."""
        ...

    async def close(self) -> None:
        """Stop receiving; safe to call more than once."""
        ...


class PeerSession(Protocol):
    """A connection to one peer."""

    @property
    def remote(self) -> EndpointAddr:
        """The address this session dialled."""
        ...

    async def subscribe(
        self,
        broadcast: str,
        track: str,
        *,
        start: int | None = None,
        item_timeout_s: float | None = None,
    ) -> Subscription:
        """Subscribe with history: from group ``start`` if given, else from the oldest group
        the peer still caches. Waits for the broadcast to be announced (bounded); raises
        :class:`NotFoundError` if it is not."""
        ...

    async def fetch(self, broadcast: str, track: str, sequence: int) -> bytes | None:
        """One old group's payload, or ``None`` if the peer no longer (or never) had it."""
        ...

    async def fetch_many(self, broadcast: str, track: str, sequences: list[int]) -> dict[int, bytes | None]:
        """Old groups fetched concurrently; a missing one maps to ``None``."""
        ...

    async def announced(self, prefix: str = "", *, window_s: float) -> list[str]:
        """The broadcast names the peer announces under ``prefix``, as collected for ``window_s``
        seconds (announcements carry no end marker; the window bounds the wait)."""
        ...

    async def close(self) -> None:
        """Close the session and its subscriptions."""
        ...


class Transport(Protocol):
    """Factory for listeners and peer sessions of one wire transport."""

    async def listen(
        self,
        bind: str | None,
        identity: NodeIdentity,
        cache_bytes: int,
        *,
        shed: ShedLimits | None = None,
        advertise: tuple[str, ...] = (),
    ) -> Listener:
        """Serve on ``bind`` (``host:port``, port 0 for any; None: no socket, pushes only) as ``identity``;
        ``shed`` bounds downstream sessions."""
        ...

    async def connect(self, addr: EndpointAddr, timeout_s: float) -> PeerSession:
        """Dial ``addr``, proving its identity; :class:`UnreachableError` if not done within
        ``timeout_s`` seconds."""
        ...
