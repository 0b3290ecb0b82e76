"""The moq-rs (``moq-rs==0.5.1`` on ``moq-ffi==0.4.18``) implementation of the transport interface.

Nodes talk moq-lite over raw QUIC (``moql://``); a listener presents a short-lived self-signed
certificate vouched for by its node key (:mod:`ec_node.transport.identity`,
:mod:`ec_node.transport.certs`) and a dialler pins it by SHA-256: the hashes an address lists, or,
after a rotation, those of the signed statement the listener serves on
``ec-node/identity/<node id>``. A URL address (``moql://``, ``moqt://``, ``https://``) is a relay
checked with normal TLS.

Defaults of the stack that we override (see moq-transport-notes §3, §6):

* Subscriptions pass ``Subscription(max_age_us=...)`` (10 minutes by default) so a late joiner
  gets every cached group, not just the live edge, and a burst is not thinned out as "stale".
* Every origin -- the listener's publish and consume origins and both origins of each client --
  has ``cache_capacity_bytes``; the library default keeps every group forever.
* Groups are read and delivered in arrival order (``recv_group``: ``next_group`` may skip a late
  group silently). Ordering, holes and backfill are the node core's (:mod:`ec_node.node.reorder`):
  it asks for missing groups, and the shell fetches them with :meth:`MoqPeerSession.fetch_many`.
* The listener runs its own accept loop (``Server.serve()`` logs "Task exception was never
  retrieved" on every disconnect), holds each accepted session until it closes, and reads
  ``cert_fingerprints()`` before the first ``accept()`` (afterwards it raises ``Busy``).

Behaviour observed with this stack (loopback, checked while writing this module; the tests in
``tests/transport`` cover the starred ones):

* Subscribing before the broadcast is announced: ``announced_broadcast`` waits; we bound it with
  ``announce_timeout_s`` and raise :class:`NotFoundError`. Subscribing to a track the broadcast
  does not have fails at once with a stream-scoped NOT_FOUND, also :class:`NotFoundError`.
* (*) Publisher ``finish()`` on a track: the subscriber's ``recv_group`` returns ``None`` after
  the last group; our iterator ends cleanly.
* Publisher aborts the track: the subscriber sees a stream-scoped protocol error (the code is not
  carried; moq reports NOT_FOUND) -> :class:`PeerLostError`.
* Publisher closes the session gracefully (``cancel(0)``): SESSION/CANCEL code 0; we treat it as
  a clean end. Our :meth:`MoqListener.close` finishes every track first anyway.
* Publisher process dies (SIGKILL): nothing for ~13 s (the QUIC idle timeout, which the Python API
  cannot set), then ``Transport('connection error: timed out')`` -> :class:`PeerLostError`. For
  faster failure detection use ``Subscription.next(timeout=...)`` as an app-level liveness check.
* (*) Groups written before any subscriber exists stay in the origin cache (bounded by
  ``cache_capacity_bytes``) and a subscriber with ``max_age_us`` history receives all of them;
  ``fetch_group`` reaches them too. Missing/evicted groups -> NOT_FOUND -> ``fetch`` returns None.
* (*) One process and one event loop can hold a listener and any number of client sessions at the
  same time (a relay is exactly that); each client has its own origins, so equal broadcast names on
  two peers do not clash.
* An aborted group is never delivered by ``recv_group``; a later group reveals the hole.
* Cancelling a pending ``recv_group`` (e.g. via ``asyncio.wait_for``) is harmless: the next call
  still gets the next group. We still read in a background task so that a caller's timeout can
  never cut a group in half.
* Announcements (``Client.announced(prefix)``): a listener's live broadcasts arrive within ms of
  the handshake, each update's ``prefix`` the full broadcast path, but nothing marks the end of the
  initial set; :meth:`MoqPeerSession.announced` therefore collects for a bounded window.
* A fingerprint mismatch fails the handshake at once with ``Connect('... fingerprint mismatch')``;
  an address nobody answers hangs until our connect timeout (no ICMP shortcut in quinn).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import logging
import time
import weakref
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import moq

from ec_node.errors import ConfigError, EcError, OutputError, UnreachableError, UsageError
from ec_node.transport.addr import EndpointAddr
from ec_node.transport.base import GroupEvent, NotFoundError, PeerLostError, TrackWriter
from ec_node.transport.certs import (
    MAX_STATEMENT_BYTES,
    STATEMENT_BROADCAST_PREFIX,
    STATEMENT_TRACK,
    CertStatementError,
    decode_statement,
    is_statement_broadcast,
    seconds_until_check,
)
from ec_node.transport.identity import NodeIdentity
from ec_node.transport.relay_auth import JWT_ENV, UrlPeerOptions, redact, with_jwt
from ec_node.transport.shedding import SHED_CODE, SessionMeter, ShedLimits, pick_shed, refuse_reason

log = logging.getLogger(__name__)

DEFAULT_CACHE_BYTES = 64 * 1024 * 1024
DEFAULT_MAX_AGE_US = 600_000_000


@dataclass(frozen=True)
class MoqConfig:
    """Knobs of the moq transport; the defaults suit 2 s chunks of up to a few MB."""

    cache_bytes: int = DEFAULT_CACHE_BYTES  # per listener origin
    client_cache_bytes: int = 32 * 1024 * 1024  # per client-side origin: the receive buffer for bursts (late join)
    max_age_us: int = DEFAULT_MAX_AGE_US  # history a subscription asks for
    announce_timeout_s: float = 10.0  # wait for a broadcast to be announced
    fetch_timeout_s: float = 5.0
    max_payload_bytes: int = 64 * 1024 * 1024  # a bigger group is treated as lost
    queue_groups: int = 16  # groups read ahead of the consumer
    close_grace_s: float = 0.25  # listener close: time for subscribers to see the track end
    lag_check_s: float = 1.0  # how often downstream sessions' progress is checked for shedding


#: how long a dialler waits for a peer to announce its certificate statement (it does at once)
STATEMENT_WAIT_S = 2.0
#: how long a pushed session must stay up to count as accepted (a relay rejects within ms of the handshake)
PUSH_CONFIRM_S = 1.0

# ---------------------------------------------------------------------------------------- errors


def describe_moq_error(exc: BaseException) -> str:
    """One readable line for a moq error (their ``str()`` is often empty)."""
    detail = moq.protocol_error(exc)
    if detail is not None:
        return f"{detail.kind.name.lower()} ({detail.scope.name.lower()} code {detail.code}): {detail.message}"
    text = str(exc).strip().strip("'\"")
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _is_not_found(exc: BaseException) -> bool:
    detail = moq.protocol_error(exc)
    if detail is not None:
        return detail.kind == moq.ProtocolKind.NOT_FOUND
    return isinstance(exc, moq.Error.NotFound)


def _is_graceful_close(exc: BaseException) -> bool:
    detail = moq.protocol_error(exc)
    return (
        detail is not None
        and detail.scope == moq.ErrorScope.SESSION
        and detail.kind == moq.ProtocolKind.CANCEL
        and detail.code == 0
    )


def _is_stream_scoped(exc: BaseException) -> bool:
    detail = moq.protocol_error(exc)
    return detail is not None and detail.scope == moq.ErrorScope.STREAM


# --------------------------------------------------------------------------------------- publish


class _Published:
    """Bytes a listener has published so far (what a session's lag is measured against)."""

    def __init__(self) -> None:
        self.bytes = 0


class MoqTrackWriter:
    """Writes one-frame groups with explicit sequence numbers."""

    def __init__(self, producer: moq.TrackProducer, meter: _Published | None = None) -> None:
        self._producer = producer
        self._finished = False
        self._meter = meter

    @property
    def name(self) -> str:
        """The track's name."""
        return self._producer.name

    @property
    def finished(self) -> bool:
        """True once :meth:`finish` was called."""
        return self._finished

    def write_group(self, sequence: int, payload: bytes) -> None:
        """Publish group ``sequence``; ValueError if it was already written or the track is finished."""
        if self._finished:
            raise ValueError(f"track {self.name!r} is finished")
        if sequence < 0:
            raise ValueError("group sequence must be >= 0")
        try:
            group = self._producer.create_group(sequence)
        except moq.Error as exc:
            raise ValueError(f"cannot create group {sequence} on {self.name!r}: {describe_moq_error(exc)}") from None
        group.write_frame(payload, timestamp_us=time.time_ns() // 1000)
        group.finish()
        if self._meter is not None:
            self._meter.bytes += len(payload)

    async def wait_subscribed(self) -> None:
        """Wait until at least one subscriber wants this track."""
        await self._producer.demand().used()

    def finish(self) -> None:
        """End the track cleanly (idempotent)."""
        if not self._finished:
            self._finished = True
            self._producer.finish()


class MoqListener:
    """A listening node: a moq Server with a bounded publish origin and its own accept loop."""

    def __init__(
        self,
        server: moq.Server | None,
        origin: moq.OriginProducer,
        consume_origin: moq.OriginProducer,
        endpoint_addr: EndpointAddr | None,
        config: MoqConfig,
        shed: ShedLimits | None = None,
        url_peers: UrlPeerOptions | None = None,
        identity: NodeIdentity | None = None,
    ) -> None:
        self._server = server  # None: pushes only (--no-listen)
        self._bound = server.local_addr if server is not None else ""  # the concrete port, rebound on rotation
        self._identity = identity if server is not None else None
        self._presented = identity.current.sha256 if identity is not None and server is not None else ""
        self._swap: asyncio.Task[None] | None = None  # a server restart in progress (shielded)
        self._url_peers = url_peers or UrlPeerOptions()
        self._pushes: list[moq.Client] = []
        self._origin = origin
        self._consume_origin = consume_origin  # held: sessions publishing to us land here
        self._endpoint_addr = endpoint_addr
        self._config = config
        self._broadcasts: dict[str, moq.BroadcastProducer] = {}  # dropping one ends it
        self._writers: list[MoqTrackWriter] = []
        self._sessions: dict[asyncio.Task[None], moq.Session | None] = {}
        self._meters: dict[asyncio.Task[None], SessionMeter] = {}
        self._published = _Published()
        self._shed = shed or ShedLimits(max_sessions=None, max_lag_bytes=None)
        #: Called with a JSON-able event when a session is refused or shed (the shell reports it).
        self.on_event: Callable[[dict[str, object]], None] = lambda ev: None
        self._closed = False
        self._accept_task: asyncio.Task[None] | None = (
            asyncio.create_task(self._accept_loop(), name="moq-accept") if server is not None else None
        )
        self._watch_task = (
            asyncio.create_task(self._watch_lag(), name="moq-lag") if self._shed.max_lag_bytes is not None else None
        )
        self._rotate_task: asyncio.Task[None] | None = None
        if self._identity is not None:
            self._publish_statement()
            self._rotate_task = asyncio.create_task(self._rotation_loop(), name="moq-cert-rotation")

    @property
    def endpoint_addr(self) -> EndpointAddr | None:
        """How peers reach this node (its node id and addresses); None if it does not listen."""
        return self._endpoint_addr

    @property
    def session_count(self) -> int:
        """Sessions accepted and still open."""
        return sum(1 for s in self._sessions.values() if s is not None)

    def publish_broadcast(self, name: str, tracks: list[str]) -> dict[str, TrackWriter]:
        """Create the broadcast and all its tracks, then announce it (values are MoqTrackWriter)."""
        if self._closed:
            raise RuntimeError("listener is closed")
        if name in self._broadcasts:
            raise ValueError(f"broadcast {name!r} is already published")
        if not tracks or len(set(tracks)) != len(tracks):
            raise ValueError("tracks must be a non-empty list of distinct names")
        broadcast = self._origin.create_broadcast(name)
        writers = [MoqTrackWriter(broadcast.publish_track(t), self._published) for t in tracks]
        broadcast.announce()
        self._broadcasts[name] = broadcast
        self._writers.extend(writers)
        return {w.name: w for w in writers}

    async def push(self, url: str, broadcast: str, timeout_s: float = 10.0) -> None:
        """Dial the relay at ``url`` and announce this node's broadcasts there (moq-relay style).

        The session redials on its own with backoff. A relay that refuses the session (a bad or
        expired token, a path the token does not cover) is detected here, before the caller goes
        on: ConfigError; one that cannot be reached within ``timeout_s``: UnreachableError. A
        session still up ``PUSH_CONFIRM_S`` later (or that sees the relay announce ``broadcast``
        back) is taken.
        """
        shown = redact(url)
        client = url_client(
            url,
            None,
            self._url_peers,
            publish=self._origin,
            subscribe=moq.OriginProducer(cache_capacity_bytes=1 << 20),  # announcements only
            reconnect=True,
        )
        try:
            await asyncio.wait_for(client.__aenter__(), timeout_s)
        except (TimeoutError, moq.Error) as exc:
            with contextlib.suppress(moq.Error):
                await client.__aexit__(None, None, None)
            raise _push_error(shown, exc) from None
        session = client.session
        closed = asyncio.ensure_future(session.closed()) if session is not None else None
        routed = asyncio.ensure_future(client.announced_broadcast(broadcast))
        try:
            # A relay refuses a session right after the handshake (moq-relay: ~40 ms; locally 1-2 ms):
            # the session closes with an auth error. Nothing says "accepted" unless the token also lets
            # us read (then the relay announces our broadcast back), so a session alive after
            # PUSH_CONFIRM_S counts as taken.
            waiting = {routed} | ({closed} if closed is not None else set())
            done, _ = await asyncio.wait(waiting, timeout=PUSH_CONFIRM_S, return_when=asyncio.FIRST_COMPLETED)
            if closed is not None and closed in done:
                raise _push_error(shown, closed.exception() or ConnectionError("session closed"))
        except BaseException:
            with contextlib.suppress(moq.Error):
                await client.__aexit__(None, None, None)
            raise
        finally:
            for f in (routed, closed):
                if f is not None and not f.done():
                    f.cancel()
        self._pushes.append(client)
        log.info("pushing %r to relay %s", broadcast, shown)

    async def close(self) -> None:
        """Finish every track, give subscribers ``close_grace_s`` to drain, then close."""
        if self._closed:
            return
        self._closed = True
        for writer in self._writers:
            writer.finish()
        if self._swap is not None and not self._swap.done():
            with contextlib.suppress(Exception):
                await self._swap  # a certificate swap finishes binding before we close what it bound
        for t in (self._rotate_task, self._accept_task, self._watch_task):
            if t is not None:
                t.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):  # a task that died is no reason to leak
                    await t
        tasks = list(self._sessions)
        if tasks and self._config.close_grace_s > 0:
            await asyncio.wait(tasks, timeout=self._config.close_grace_s)
        for session in list(self._sessions.values()):
            if session is not None:
                session.cancel(0)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        self._broadcasts.clear()
        for client in self._pushes:
            with contextlib.suppress(moq.Error):
                await client.__aexit__(None, None, None)
        self._pushes.clear()
        if self._server is not None:
            await self._server.__aexit__(None, None, None)

    def _publish_statement(self) -> None:
        """(Re)publish the signed certificate statement as group 0 of a fresh broadcast, so a
        dialler reads exactly the current one."""
        assert self._identity is not None
        name = STATEMENT_BROADCAST_PREFIX + self._identity.node_id
        old = self._broadcasts.pop(name, None)
        if old is not None:
            old.unannounce()
        writer = self.publish_broadcast(name, [STATEMENT_TRACK])[STATEMENT_TRACK]
        writer.write_group(0, self._identity.statement().encode())

    async def _rotation_loop(self) -> None:
        assert self._identity is not None
        while True:
            await asyncio.sleep(seconds_until_check(int(time.time()), self._identity.current.window))
            try:
                await self.rotate_certificate()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # e.g. the disk is full, the port was taken meanwhile: retry at the next check
                log.error("certificate rotation failed (retried at the next check): %s", exc)

    async def rotate_certificate(self, now: int | None = None) -> bool:
        """Apply the identity's schedule at ``now``; if the presented certificate changed, restart the
        TLS server on the same address (sessions of the old one end; peers redial and pin the new
        hash). Returns True if it rotated."""
        if self._identity is None or self._endpoint_addr is None or self._closed:
            return False
        self._identity.maintain(now)
        # compare with what is presented, not with what maintain() says changed: a rotation whose
        # restart failed (or was half done) is completed by the next call
        changed = self._identity.current.sha256 != self._presented
        nxt_changed = self._endpoint_addr.cert_sha256 != self._identity.cert_sha256
        if changed:
            self._swap = asyncio.create_task(self._restart_server(), name="moq-cert-swap")
            await asyncio.shield(self._swap)  # a close() meanwhile waits for it instead of leaking a socket
        if changed or nxt_changed:
            self._endpoint_addr = dataclasses.replace(self._endpoint_addr, cert_sha256=self._identity.cert_sha256)
            self._publish_statement()
            self.on_event({"event": "cert_rotated", "cert_sha256": list(self._identity.cert_sha256)})
        return changed

    async def _restart_server(self) -> None:
        """Stop accepting, release the port, and serve again on it with the current certificate."""
        assert self._identity is not None
        if self._accept_task is not None:
            self._accept_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._accept_task
            self._accept_task = None
        if self._server is not None:
            old, self._server = self._server, None
            with contextlib.suppress(moq.Error):
                await old.__aexit__(None, None, None)
        self._server = await start_server(self._bound, self._identity, self._origin, self._consume_origin)
        self._presented = self._identity.current.sha256
        self._accept_task = asyncio.create_task(self._accept_loop(), name="moq-accept")

    async def _accept_loop(self) -> None:
        assert self._server is not None
        while True:
            try:
                request = await self._server.__anext__()
            except StopAsyncIteration:
                return
            except moq.Error as exc:
                if moq.is_shutdown(exc):
                    return
                log.warning("accept failed: %s", describe_moq_error(exc))
                continue
            why = refuse_reason(self.session_count, self._shed)
            if why is not None:
                log.warning("refusing a session: %s", why)
                self.on_event({"event": "subscriber_refused", "detail": why})
                with contextlib.suppress(moq.Error):
                    await request.reject(SHED_CODE)
                continue
            task = asyncio.create_task(self._hold_session(request), name="moq-session")
            self._sessions[task] = None
            task.add_done_callback(self._forget)

    async def _hold_session(self, request: moq.Request) -> None:
        try:
            session = await request.accept()
        except moq.Error as exc:
            log.info("handshake failed: %s", describe_moq_error(exc))
            return
        me = asyncio.current_task()
        assert me is not None
        self._sessions[me] = session
        self._meters[me] = SessionMeter(self._published.bytes, _bytes_sent(session))
        try:
            await session.closed()
        except moq.Error as exc:
            log.debug("session closed: %s", describe_moq_error(exc))

    def _forget(self, task: asyncio.Task[None]) -> None:
        self._sessions.pop(task, None)
        self._meters.pop(task, None)

    async def _watch_lag(self) -> None:
        """Shed sessions that fall too far behind (see :mod:`ec_node.transport.shedding`)."""
        while True:
            await asyncio.sleep(self._config.lag_check_s)
            held = {t: s for t, s in self._sessions.items() if s is not None and t in self._meters}
            sent = {t: _bytes_sent(s) for t, s in held.items()}
            meters = {t: self._meters[t] for t in held}
            for task, why in pick_shed(meters, self._published.bytes, sent, self._shed).items():
                log.warning("shedding a subscriber session: %s", why)
                self.on_event({"event": "subscriber_shed", "detail": why})
                self._meters.pop(task, None)
                with contextlib.suppress(moq.Error):
                    held[task].cancel(SHED_CODE)


def _bytes_sent(session: moq.Session) -> int:
    try:
        return session.stats().bytes_sent or 0
    except moq.Error:
        return 0


# ------------------------------------------------------------------------------------- subscribe

_END = object()


class MoqSubscription:
    """Groups of one subscribed track in arrival order (the node core reorders and backfills).

    A background task reads whole groups into a bounded queue (``queue_groups``), so a caller's
    timeout never cuts a group in half and the read-ahead stays bounded.
    """

    def __init__(
        self,
        track: moq.TrackConsumer,
        track_name: str,
        *,
        item_timeout_s: float | None,
        config: MoqConfig,
    ) -> None:
        self._track = track
        self._name = track_name
        self._config = config
        self._item_timeout = item_timeout_s
        self._raw: asyncio.Queue[object] = asyncio.Queue(maxsize=max(1, config.queue_groups))
        self._ended = False
        self._reader = asyncio.create_task(self._read_loop(), name=f"moq-sub-{track_name}")

    def __aiter__(self) -> AsyncIterator[GroupEvent]:
        return self

    async def __anext__(self) -> GroupEvent:
        event = await self.next(self._item_timeout)
        if event is None:
            raise StopAsyncIteration
        return event

    async def next(self, timeout: float | None = None) -> GroupEvent | None:
        """The next group; ``None`` at the clean end; TimeoutError after ``timeout`` s of nothing."""
        if self._ended:
            return None
        try:
            item = await asyncio.wait_for(self._raw.get(), timeout)
        except TimeoutError:
            raise TimeoutError(f"no group on track {self._name!r} for {timeout:g} s") from None
        if item is _END:
            self._ended = True
            await self.close()
            return None
        if isinstance(item, BaseException):
            self._ended = True
            raise item
        assert isinstance(item, GroupEvent)
        return item

    async def close(self) -> None:
        """Stop receiving; safe to call more than once."""
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self._reader
        with contextlib.suppress(moq.Error):
            self._track.cancel()

    async def _read_loop(self) -> None:
        try:
            while True:
                group = await self._track.recv_group()
                if group is None:
                    await self._raw.put(_END)
                    return
                seq = group.sequence
                try:
                    payload = await _read_payload(group, self._config.max_payload_bytes)
                except ValueError as exc:
                    # refused, but reported: the receiver penalizes peers that send oversized groups
                    log.warning("track %r group %d refused: %s", self._name, seq, exc)
                    await self._raw.put(GroupEvent(seq, b"", too_large=True))
                    continue
                except moq.Error as exc:
                    if not _is_stream_scoped(exc):
                        raise
                    log.info("track %r group %d lost: %s", self._name, seq, describe_moq_error(exc))
                    continue
                if not payload:
                    # no ec-node group is empty: this is how an IETF moq-transport relay carries a
                    # track's END_OF_TRACK (one 0-byte object in group N+1). The track ends; nobody is blamed.
                    log.info("track %r ended by an empty group %d", self._name, seq)
                    await self._raw.put(_END)
                    return
                await self._raw.put(GroupEvent(seq, payload))
        except moq.Error as exc:
            if _is_graceful_close(exc) or moq.is_shutdown(exc):
                await self._raw.put(_END)
            else:
                await self._raw.put(PeerLostError(f"track {self._name!r} failed: {describe_moq_error(exc)}"))


async def _read_payload(group: moq.GroupConsumer, limit: int) -> bytes:
    parts: list[bytes] = []
    size = 0
    while (frame := await group.read_frame()) is not None:
        size += len(frame.payload)
        if size > limit:
            group.cancel()
            raise ValueError(f"group larger than {limit} bytes")
        parts.append(frame.payload)
    return parts[0] if len(parts) == 1 else b"".join(parts)


async def _fetch_payload(broadcast: moq.BroadcastConsumer, track: str, sequence: int, limit: int) -> bytes:
    group = await broadcast.fetch_group(track, sequence)
    return await _read_payload(group, limit)


def _is_dropped(exc: BaseException) -> bool:
    """moq-ffi 0.4.18 quirk: once a subscription on a session has seen a track *finish*,
    ``fetch_group`` for that track on that session fails with ``Internal('dropped')`` for good
    (a fresh session fetches fine). We then fetch through a one-shot session."""
    return isinstance(exc, moq.Error.Internal) and "dropped" in str(exc)


class MoqPeerSession:
    """A client session to one peer (or relay)."""

    def __init__(
        self,
        client: moq.Client,
        remote: EndpointAddr,
        url: str,
        config: MoqConfig,
        redial: Callable[[], moq.Client],
    ) -> None:
        self._client = client
        self._remote = remote
        self._url = url
        self._config = config
        self._redial = redial
        self._subs: weakref.WeakSet[MoqSubscription] = weakref.WeakSet()
        self._closed = False

    @property
    def remote(self) -> EndpointAddr:
        """The address this session dialled."""
        return self._remote

    @property
    def url(self) -> str:
        """The URL actually dialled (the first address that answered)."""
        return self._url

    async def subscribe(
        self,
        broadcast: str,
        track: str,
        *,
        start: int | None = None,
        item_timeout_s: float | None = None,
    ) -> MoqSubscription:
        """Subscribe with ``max_age_us`` history (from ``start`` if given)."""
        consumer = await self._broadcast(broadcast)
        sub_opts = moq.Subscription(max_age_us=self._config.max_age_us, group_start=start)
        try:
            track_consumer = await consumer.subscribe_track(track, sub_opts)
        except moq.Error as exc:
            raise self._error(exc, f"subscribe to {broadcast}/{track}") from None
        sub = MoqSubscription(track_consumer, track, item_timeout_s=item_timeout_s, config=self._config)
        self._subs.add(sub)
        return sub

    async def fetch(self, broadcast: str, track: str, sequence: int) -> bytes | None:
        """One group by sequence; None if the peer does not have it (or sent something invalid)."""
        return (await self.fetch_many(broadcast, track, [sequence]))[sequence]

    async def fetch_many(self, broadcast: str, track: str, sequences: list[int]) -> dict[int, bytes | None]:
        """Fetch groups concurrently; a missing one maps to None. Raises PeerLostError if the
        session fails, NotFoundError if the broadcast is not announced."""
        if not sequences:
            return {}
        consumer = await self._broadcast(broadcast)
        results = await self._fetch_from(consumer, track, sequences)
        dropped = [seq for seq, res in results.items() if isinstance(res, BaseException) and _is_dropped(res)]
        if dropped:
            results.update(await self._fetch_one_shot(broadcast, track, dropped))
        out: dict[int, bytes | None] = {}
        for seq, res in results.items():
            if isinstance(res, moq.Error) and not _is_not_found(res):
                raise self._error(res, f"fetch {broadcast}/{track}/{seq}")
            out[seq] = res if isinstance(res, bytes) else None
        return out

    async def _fetch_from(
        self, consumer: moq.BroadcastConsumer, track: str, sequences: list[int]
    ) -> dict[int, bytes | BaseException]:
        async def one(seq: int) -> bytes | BaseException:
            try:
                return await asyncio.wait_for(
                    _fetch_payload(consumer, track, seq, self._config.max_payload_bytes),
                    self._config.fetch_timeout_s,
                )
            except (moq.Error, TimeoutError, ValueError) as exc:
                log.debug("fetch %s/%d failed: %r", track, seq, exc)
                return exc

        results = await asyncio.gather(*(one(seq) for seq in sequences))
        return dict(zip(sequences, results, strict=True))

    async def _fetch_one_shot(
        self, broadcast: str, track: str, sequences: list[int]
    ) -> dict[int, bytes | BaseException]:
        client = self._redial()
        try:
            await asyncio.wait_for(client.__aenter__(), self._config.fetch_timeout_s)
            consumer = await asyncio.wait_for(
                client.announced_broadcast(broadcast).available(), self._config.fetch_timeout_s
            )
            return await self._fetch_from(consumer, track, sequences)
        except (moq.Error, TimeoutError) as exc:
            return {seq: exc for seq in sequences}
        finally:
            with contextlib.suppress(moq.Error):
                await client.__aexit__(None, None, None)

    async def announced(self, prefix: str = "", *, window_s: float) -> list[str]:
        """The broadcasts the peer announces under ``prefix``, collected for ``window_s`` seconds.

        moq-lite announces what is live right after the handshake (within ms on loopback), but
        gives no "that was all" signal, so the window bounds the wait. A broadcast retracted within
        the window is left out; the order is first announcement. PeerLostError if the session fails.
        """
        if self._closed:
            raise RuntimeError("session is closed")
        if window_s <= 0:
            raise UsageError(f"announcement window must be positive, got {window_s}")
        consumer = self._client.announced(prefix)
        live: dict[str, None] = {}

        async def collect() -> None:
            async for update in consumer:
                if update.active and not is_statement_broadcast(update.prefix):
                    live.setdefault(update.prefix, None)
                else:
                    live.pop(update.prefix, None)

        try:
            await asyncio.wait_for(collect(), window_s)
        except TimeoutError:
            pass
        except moq.Error as exc:
            raise PeerLostError(f"list announcements on {self._url}: {describe_moq_error(exc)}") from None
        finally:
            consumer.cancel()
        return list(live)

    async def close(self) -> None:
        """Close the session and its subscriptions (idempotent)."""
        if self._closed:
            return
        self._closed = True
        for sub in list(self._subs):
            await sub.close()
        self._subs.clear()
        with contextlib.suppress(moq.Error):
            await self._client.__aexit__(None, None, None)

    async def _broadcast(self, name: str) -> moq.BroadcastConsumer:
        if self._closed:
            raise RuntimeError("session is closed")
        waiter = self._client.announced_broadcast(name)
        try:
            return await asyncio.wait_for(waiter.available(), self._config.announce_timeout_s)
        except TimeoutError:
            waiter.cancel()
            raise NotFoundError(
                f"peer {self._url} did not announce broadcast {name!r} within {self._config.announce_timeout_s:g} s"
            ) from None
        except moq.Error as exc:
            raise self._error(exc, f"wait for broadcast {name!r}") from None

    def _error(self, exc: BaseException, what: str) -> UnreachableError:
        if _is_not_found(exc):
            return NotFoundError(f"{what}: peer {self._url} does not serve it")
        return PeerLostError(f"{what} on {self._url}: {describe_moq_error(exc)}")


# ------------------------------------------------------------------------------------- transport


def moq_transport(
    *,
    max_frame_bytes: int | None = None,
    receive_buffer_bytes: int | None = None,
    url_peers: UrlPeerOptions | None = None,
) -> MoqTransport:
    """The node's transport with its defaults, overriding what the command line sets."""
    base = MoqConfig()
    return MoqTransport(
        dataclasses.replace(
            base,
            max_payload_bytes=base.max_payload_bytes if max_frame_bytes is None else max_frame_bytes,
            client_cache_bytes=base.client_cache_bytes if receive_buffer_bytes is None else receive_buffer_bytes,
        ),
        url_peers,
    )


class MoqTransport:
    """Listeners and sessions over moq-rs (raw QUIC ``moql://`` between nodes)."""

    def __init__(self, config: MoqConfig | None = None, url_peers: UrlPeerOptions | None = None) -> None:
        self.config = config or MoqConfig()
        self.url_peers = url_peers or UrlPeerOptions()
        #: Certificate hashes learnt from verified statements, by node id (survive a peer's rotation).
        self._learnt_pins: dict[str, tuple[str, ...]] = {}

    async def listen(
        self,
        bind: str | None,
        identity: NodeIdentity,
        cache_bytes: int | None = None,
        *,
        shed: ShedLimits | None = None,
        advertise: tuple[str, ...] = (),
    ) -> MoqListener:
        """Serve on ``bind`` as ``identity``; the origin cache holds at most ``cache_bytes``.

        ``advertise`` replaces the addresses put in ``endpoint_addr`` (needed when binding a
        wildcard address that remote peers cannot dial as such). ``bind=None`` serves no socket at
        all: the broadcasts only reach relays it pushes to (``--no-listen``; ``endpoint_addr`` is None).
        """
        cache = self.config.cache_bytes if cache_bytes is None else cache_bytes
        if cache <= 0:
            raise UsageError(f"cache size must be positive, got {cache}")
        origin = moq.OriginProducer(cache_capacity_bytes=cache)
        consume_origin = moq.OriginProducer(cache_capacity_bytes=cache)
        if bind is None:
            return MoqListener(None, origin, consume_origin, None, self.config, shed, self.url_peers)
        server = await start_server(bind, identity, origin, consume_origin)
        addrs = tuple(advertise) if advertise else (_dialable(server.local_addr),)
        if not advertise and addrs[0] != server.local_addr:
            log.warning(
                "listening on every interface (%s) but advertising %s; pass --advertise HOST:PORT so "
                "peers on other machines can dial this node",
                server.local_addr,
                addrs[0],
            )
        endpoint = EndpointAddr(id=identity.node_id, addrs=addrs, cert_sha256=identity.cert_sha256)
        return MoqListener(server, origin, consume_origin, endpoint, self.config, shed, self.url_peers, identity)

    async def connect(self, addr: EndpointAddr, timeout_s: float | None = None) -> MoqPeerSession:
        """Dial ``addr``'s addresses in turn within ``timeout_s`` in total (default 10 s)."""
        total = 10.0 if timeout_s is None else timeout_s
        if total <= 0:
            raise UsageError(f"connect timeout must be positive, got {total}")
        if addr.url is not None:
            urls = [addr.url]
        elif addr.addrs:
            urls = [f"moql://{a}" for a in addr.addrs]
        else:
            raise UsageError("endpoint address has no addrs to dial")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + total
        errors: list[str] = []
        for i, url in enumerate(urls):
            budget = (deadline - loop.time()) / (len(urls) - i)
            if budget <= 0:
                break
            try:
                return await asyncio.wait_for(self._dial(url, addr), budget)
            except TimeoutError:
                errors.append(f"{redact(url)}: no answer within {budget:.3g} s")
            except _DialError as exc:
                errors.append(f"{redact(url)}: {exc}")
        raise UnreachableError("cannot connect to peer: " + "; ".join(errors or ["no time left"]))

    def pins_for(self, addr: EndpointAddr) -> tuple[str, ...]:
        """Certificate hashes a pinned dial of ``addr`` accepts: those it lists, those learnt from
        its node's statement, and the id itself (an older node's id is its certificate hash)."""
        assert addr.id is not None
        learnt = self._learnt_pins.get(addr.id, ())
        return tuple(dict.fromkeys((*addr.cert_sha256, *learnt, addr.id)))

    async def _dial(self, url: str, addr: EndpointAddr) -> MoqPeerSession:
        """One address: pinned by what we know; on a mismatch, learn the node's current
        certificates from its signed statement and dial once more."""
        if addr.id is None:
            return await self._open(url, addr, None)
        try:
            return await self._open(url, addr, self.pins_for(addr))
        except _PinMismatch:
            pass
        pins = await self._learn_pins(url, addr.id)
        try:
            return await self._open(url, addr, pins)
        except _PinMismatch:
            raise _DialError(f"peer is not node {addr.id} (its certificate is not one the node vouches for)") from None

    async def _open(self, url: str, addr: EndpointAddr, pins: tuple[str, ...] | None) -> MoqPeerSession:
        client = self._client(url, pins)
        try:
            await client.__aenter__()
        except moq.Error as exc:
            with contextlib.suppress(moq.Error):
                await client.__aexit__(None, None, None)
            text = describe_moq_error(exc)
            if pins is not None and "fingerprint mismatch" in text:
                raise _PinMismatch() from None
            raise _DialError(text) from None
        except BaseException:
            with contextlib.suppress(moq.Error):
                await client.__aexit__(None, None, None)
            raise
        redial = functools.partial(self._client, url, pins)
        return MoqPeerSession(client, addr, redact(url), self.config, redial)

    async def _learn_pins(self, url: str, node_id: str) -> tuple[str, ...]:
        """Read ``node_id``'s certificate statement over an unverified session and check its
        signature: only what the node key signed is believed, so the session itself needs no trust."""
        cache = 1 << 20
        client = moq.Client(
            url,
            tls_verify=False,
            reconnect=False,
            publish=moq.OriginProducer(cache_capacity_bytes=cache),
            subscribe=moq.OriginProducer(cache_capacity_bytes=cache),
        )
        config = dataclasses.replace(
            self.config,
            max_payload_bytes=MAX_STATEMENT_BYTES,
            announce_timeout_s=min(self.config.announce_timeout_s, STATEMENT_WAIT_S),
        )
        session = MoqPeerSession(client, EndpointAddr(id=None, addrs=(), url=url), redact(url), config, lambda: client)
        try:
            try:
                await client.__aenter__()
                sub = await session.subscribe(STATEMENT_BROADCAST_PREFIX + node_id, STATEMENT_TRACK, start=0)
                event = await sub.next(self.config.fetch_timeout_s)
            except (moq.Error, NotFoundError, PeerLostError, TimeoutError) as exc:
                why = f"peer is not node {node_id} (certificate not pinned, and no statement from that node"
                raise _DialError(f"{why}: {exc})") from None
            if event is None or event.too_large:
                raise _DialError(f"peer sent no usable certificate statement for node {node_id}")
            try:
                statement = decode_statement(event.payload, node_id)
            except CertStatementError as exc:
                raise _DialError(f"peer is not node {node_id}: {exc}") from None
        finally:
            await session.close()
        pins = statement.pins(int(time.time()))
        if not pins:
            raise _DialError(f"node {node_id} vouches only for expired certificates")
        self._learnt_pins[node_id] = pins
        return pins

    def _client(self, url: str, pins: tuple[str, ...] | None) -> moq.Client:
        cache = self.config.client_cache_bytes
        return url_client(
            url,
            pins,
            self.url_peers,
            publish=moq.OriginProducer(cache_capacity_bytes=cache),
            subscribe=moq.OriginProducer(cache_capacity_bytes=cache),
        )


class _PinMismatch(Exception):
    """The peer presented a certificate none of the pins names."""


class _DialError(Exception):
    """One address could not be dialled; the message says why."""


def url_client(
    url: str,
    pins: tuple[str, ...] | None,
    opts: UrlPeerOptions,
    *,
    publish: moq.OriginProducer,
    subscribe: moq.OriginProducer,
    reconnect: bool = False,
) -> moq.Client:
    """A client for ``url``: a pinned node by ``pins``, a URL peer by ``opts`` (pins, CA, token)."""
    if pins:
        return moq.Client(url, tls_fingerprints=list(pins), reconnect=reconnect, publish=publish, subscribe=subscribe)
    return moq.Client(
        with_jwt(url, opts.jwt),
        tls_fingerprints=list(opts.tls_fingerprints) or None,
        tls_roots=[str(opts.tls_ca)] if opts.tls_ca else None,
        reconnect=reconnect,
        publish=publish,
        subscribe=subscribe,
    )


async def start_server(
    bind: str, identity: NodeIdentity, publish: moq.OriginProducer, subscribe: moq.OriginProducer
) -> moq.Server:
    """A running moq Server presenting ``identity``'s certificate (checked: it is the node id peers pin)."""
    pem = str(identity.current.pem_path)  # certificate and key in one 0600 file
    server = moq.Server(bind, tls_cert=[pem], tls_key=[pem], publish=publish, subscribe=subscribe)
    try:
        await server.__aenter__()
    except moq.Error as exc:
        # the flags are well-formed (they were parsed); the address is taken or not ours: like an HTTP
        # server that cannot bind, an output that cannot be opened
        raise OutputError(f"cannot listen on {bind!r}: {describe_moq_error(exc)}") from None
    try:
        fingerprints = [fp.lower() for fp in server.cert_fingerprints()]  # before any accept()
        if identity.current.sha256 not in fingerprints:
            raise ConfigError(f"TLS stack reports fingerprints {fingerprints}, identity says {identity.current.sha256}")
    except BaseException:
        await server.__aexit__(None, None, None)
        raise
    return server


def _push_error(shown: str, exc: BaseException) -> EcError:
    """One line for a relay that would not take our session."""
    if isinstance(exc, TimeoutError):
        return UnreachableError(f"relay {shown}: no answer")
    if isinstance(exc, moq.Error) and moq.is_auth(exc):
        return ConfigError(f"relay {shown} refused the session (unauthorized): check --jwt-file or ${JWT_ENV}")
    text = describe_moq_error(exc)
    if "fingerprint mismatch" in text or "UnknownIssuer" in text:
        return ConfigError(f"relay {shown}: certificate not trusted ({text}); pass --tls-fingerprint or --tls-ca")
    return UnreachableError(f"relay {shown}: {text}")


def _dialable(local: str) -> str:
    """A bound wildcard address is not dialable; advertise loopback instead (pass ``advertise``
    for remote peers)."""
    if local.startswith("0.0.0.0:"):
        return "127.0.0.1:" + local.rsplit(":", 1)[1]
    if local.startswith("[::]:"):
        return "[::1]:" + local.rsplit(":", 1)[1]
    return local


if TYPE_CHECKING:  # mypy checks that the moq classes implement the transport interface
    from ec_node.transport import base

    _transport: base.Transport = MoqTransport()
    _listener: type[base.Listener] = MoqListener
    _session: type[base.PeerSession] = MoqPeerSession
    _subscription: type[base.Subscription] = MoqSubscription
    _writer: type[base.TrackWriter] = MoqTrackWriter
