"""Pulling one track from one peer, for as long as the peer is worth it: liveness and reconnects.

A :class:`PeerLink` connects, subscribes with history, and puts what it receives on a shared
queue as :class:`PeerItem`s. It notices a stalled peer on the chunk clock (no group for
``stall_s``, about two chunk durations) instead of QUIC's ~13 s idle timeout, and reconnects
with exponential backoff when the peer is lost. Subscribers and relays both use it; what to
*do* with a stalled or lying peer is their policy, not this module's.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass

from ec_node.errors import EcError
from ec_node.transport.addr import EndpointAddr
from ec_node.transport.base import NotFoundError, PeerSession, Subscription, Transport
from ec_node.transport.sequencing import GapEvent, GroupEvent

log = logging.getLogger(__name__)

BACKOFF_START_S = 0.25
BACKOFF_MAX_S = 5.0


def peer_name(addr: EndpointAddr) -> str:
    """A short, stable label for logs and events."""
    if addr.url:
        return addr.url
    return f"{(addr.id or '')[:12]}@{','.join(addr.addrs)}"


@dataclass
class PeerItem:
    kind: str  # group | too_large | gap | connected | stalled | lost | end | gone
    track: str
    peer: str
    payload: bytes = b""
    sequence: int = -1
    detail: str = ""
    at: float = 0.0  # time.monotonic() when it arrived


class PeerLink:
    """One (peer, track) subscription kept alive across stalls and reconnects."""

    def __init__(
        self,
        transport: Transport,
        addr: EndpointAddr,
        broadcast: str,
        track: str,
        queue: asyncio.Queue[PeerItem],
        *,
        stall_s: float,
        connect_timeout_s: float = 10.0,
        reconnect_for_s: float = 30.0,
        session: PeerSession | None = None,
    ) -> None:
        self.transport = transport
        self.addr = addr
        self.name = peer_name(addr)
        self.broadcast = broadcast
        self.track = track
        self.queue = queue
        self.stall_s = stall_s
        self.connect_timeout_s = connect_timeout_s
        self.reconnect_for_s = reconnect_for_s
        self._session = session
        self._owns_session = session is None
        self.last_sequence: int | None = None
        self.connected = False
        self.stalled = False
        self.done = False
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"peer-{self.track}-{self.name}")

    async def close(self) -> None:
        self.done = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(BaseException):
                await self._task
        await self._drop_session()

    async def _drop_session(self) -> None:
        s, self._session = self._session, None
        if s is not None and self._owns_session:
            with contextlib.suppress(Exception):
                await s.close()

    async def _emit(self, kind: str, **kw: object) -> None:
        await self.queue.put(PeerItem(kind, self.track, self.name, at=time.monotonic(), **kw))  # type: ignore[arg-type]

    async def _run(self) -> None:
        backoff = BACKOFF_START_S
        lost_since: float | None = None
        while True:
            try:
                sub = await self._subscribe()
            except asyncio.CancelledError:
                raise
            except NotFoundError as e:
                # the peer answers but does not serve this: retrying will not help
                await self._emit("gone", detail=str(e))
                return
            except (EcError, OSError) as e:
                now = time.monotonic()
                lost_since = lost_since or now
                if now - lost_since >= self.reconnect_for_s:
                    await self._emit("gone", detail=f"unreachable for {now - lost_since:.0f} s: {e}")
                    return
                await self._emit("lost", detail=str(e))
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, BACKOFF_MAX_S)
                continue
            self.connected = True
            lost_since = None
            backoff = BACKOFF_START_S
            await self._emit("connected")
            try:
                ended = await self._pump(sub)
            except asyncio.CancelledError:
                raise
            except Exception as e:  # the session or track failed: the peer is lost
                self.connected = False
                lost_since = time.monotonic()
                await self._emit("lost", detail=str(e))
                await self._drop_session()
                continue
            finally:
                with contextlib.suppress(Exception):
                    await sub.close()
            if ended:
                self.done = True
                await self._emit("end")
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

    async def _pump(self, sub: Subscription) -> bool:
        """Forward events until the track ends (True); raise if the peer is lost."""
        stalled_since: float | None = None
        while True:
            try:
                ev = await sub.next(self.stall_s)
            except TimeoutError:
                now = time.monotonic()
                if stalled_since is None:
                    stalled_since = now
                    self.stalled = True
                    await self._emit("stalled", detail=f"no group for {self.stall_s:g} s")
                elif now - stalled_since >= 3 * self.stall_s:
                    # long silence: assume the connection is dead; reconnect rather than wait for QUIC
                    raise TimeoutError(f"silent for {now - stalled_since + self.stall_s:.0f} s") from None
                continue
            if self.stalled:
                self.stalled = False
                stalled_since = None
                await self._emit("connected", detail="resumed")
            if ev is None:
                return True
            if isinstance(ev, GroupEvent) and ev.too_large:
                await self._emit("too_large", sequence=ev.sequence, detail="group over the size limit, refused")
            elif isinstance(ev, GroupEvent):
                self.last_sequence = ev.sequence if self.last_sequence is None else max(self.last_sequence, ev.sequence)
                await self._emit("group", payload=ev.payload, sequence=ev.sequence)
            elif isinstance(ev, GapEvent):
                await self._emit("gap", detail=f"{ev.start}..{ev.end - 1}")
