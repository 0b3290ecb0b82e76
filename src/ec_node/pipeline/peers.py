"""Pulling one track from one peer: the I/O half of a link (the node core owns its liveness).

A :class:`PeerLink` connects, subscribes with history, and puts what it observes on the shared
queue as node-core inputs (:mod:`ec_node.node.events`) stamped with ``time.monotonic()``. When the
connection fails it says so (``LinkLost``) and retries with exponential backoff until it is
closed; it never decides that a peer is stalled or gone for good -- the core does, on the chunk
clock, and tells the shell to :meth:`reconnect` or :meth:`close` the link. A peer that answers
but does not serve the track (``LinkGone``) is not retried.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from ec_node.errors import EcError
from ec_node.node.events import GroupReceived, GroupTooLarge, Input, LinkGone, LinkLost, LinkUp, Track, TrackEnded
from ec_node.transport.addr import EndpointAddr
from ec_node.transport.base import NotFoundError, PeerSession, Subscription, Transport
from ec_node.transport.relay_auth import redact

log = logging.getLogger(__name__)

BACKOFF_START_S = 0.25
BACKOFF_MAX_S = 5.0

#: What links put on the shell's queue: (time.monotonic() when observed, the input).
QueueItem = tuple[float, Input]


def peer_name(addr: EndpointAddr) -> str:
    """A short, stable label for logs and events."""
    if addr.url:
        return redact(addr.url)  # a token in the query is never shown
    return f"{(addr.id or '')[:12]}@{','.join(addr.addrs)}"


class PeerLink:
    """One (peer, track) subscription kept alive across failures until closed."""

    def __init__(
        self,
        transport: Transport,
        addr: EndpointAddr,
        broadcast: str,
        track: Track,
        queue: asyncio.Queue[QueueItem],
        *,
        connect_timeout_s: float = 10.0,
    ) -> None:
        self.transport = transport
        self.addr = addr
        self.name = peer_name(addr)
        self.broadcast = broadcast
        self.track = track
        self.queue = queue
        self.connect_timeout_s = connect_timeout_s
        self.last_sequence: int | None = None
        self._session: PeerSession | None = None
        self._task: asyncio.Task[None] | None = None
        self._fetches: set[asyncio.Task[None]] = set()
        self.closed = False

    def start(self) -> None:
        """Begin connecting (in the background)."""
        self._task = asyncio.create_task(self._run(), name=f"peer-{self.track}-{self.name}")

    async def reconnect(self) -> None:
        """Drop the session and subscribe again from the next sequence (the core found it silent)."""
        if self.closed:
            return
        await self._stop_task()
        await self._drop_session()
        self.start()

    async def close(self) -> None:
        """Stop for good; safe to call more than once."""
        self.closed = True
        for t in list(self._fetches):
            t.cancel()
        await self._stop_task()
        await self._drop_session()

    def fetch(self, sequences: tuple[int, ...]) -> None:
        """Fetch old groups in the background; each one found comes back as a backfilled group."""
        if self.closed or self._session is None or not sequences:
            return
        t = asyncio.create_task(self._fetch(self._session, list(sequences)), name=f"fetch-{self.track}-{self.name}")
        self._fetches.add(t)
        t.add_done_callback(self._fetches.discard)

    async def _fetch(self, session: PeerSession, sequences: list[int]) -> None:
        try:
            got = await session.fetch_many(self.broadcast, self.track, sequences)
        except (EcError, OSError, RuntimeError) as e:
            log.info("%s %s: fetch of %d groups failed: %s", self.name, self.track, len(sequences), e)
            return
        found = [s for s in sequences if got.get(s) is not None]
        log.info("%s %s: backfilled %d of %d groups", self.name, self.track, len(found), len(sequences))
        for s in found:
            payload = got[s]
            assert payload is not None
            await self._emit(GroupReceived(self.name, self.track, s, payload, backfilled=True))

    async def _stop_task(self) -> None:
        task, self._task = self._task, None
        if task is not None and task is not asyncio.current_task():
            task.cancel()
            with contextlib.suppress(BaseException):
                await task

    async def _drop_session(self) -> None:
        s, self._session = self._session, None
        if s is not None:
            with contextlib.suppress(Exception):
                await s.close()

    async def _emit(self, event: Input) -> None:
        await self.queue.put((time.monotonic(), event))

    async def _run(self) -> None:
        backoff = BACKOFF_START_S
        while True:
            try:
                sub = await self._subscribe()
            except NotFoundError as e:
                # the peer answers but does not serve this: retrying will not help
                await self._emit(LinkGone(self.name, self.track, str(e)))
                return
            except (EcError, OSError) as e:
                await self._emit(LinkLost(self.name, self.track, str(e)))
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, BACKOFF_MAX_S)
                continue
            backoff = BACKOFF_START_S
            await self._emit(LinkUp(self.name, self.track))
            try:
                await self._pump(sub)
            except asyncio.CancelledError:
                raise
            except Exception as e:  # the session or track failed: the peer is lost
                await self._emit(LinkLost(self.name, self.track, str(e)))
                await self._drop_session()
                continue
            finally:
                with contextlib.suppress(Exception):
                    await sub.close()
            await self._emit(TrackEnded(self.name, self.track))
            return

    async def _subscribe(self) -> Subscription:
        if self._session is None:
            self._session = await self.transport.connect(self.addr, self.connect_timeout_s)
        start = None if self.last_sequence is None else self.last_sequence + 1
        try:
            return await self._session.subscribe(self.broadcast, self.track, start=start)
        except Exception:
            await self._drop_session()
            raise

    async def _pump(self, sub: Subscription) -> None:
        """Forward groups until the track ends; raise if the peer is lost."""
        while (ev := await sub.next()) is not None:
            if ev.too_large:
                await self._emit(GroupTooLarge(self.name, self.track, ev.sequence))
                continue
            last = self.last_sequence
            self.last_sequence = ev.sequence if last is None else max(last, ev.sequence)
            await self._emit(GroupReceived(self.name, self.track, ev.sequence, ev.payload))
