"""The one asyncio shell around :class:`~ec_node.node.core.NodeCore`, shared by `moq-subscribe` and `relay`.

It starts one :class:`PeerLink` per objects peer and one for the manifests peer, feeds the core
everything they put on the queue, wakes the core at its deadline, and applies its outputs: the
role-specific ones (write a segment, serve a group, finish a track) through :class:`Effects`, the
rest (fetch, reconnect, close a peer, reports, exit) here. It makes no decision of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TextIO

from ec_node.errors import EcError, ExitCode, UsageError
from ec_node.integrity.frames import Limits
from ec_node.integrity.keys import derive_stream_key, parse_network_secret, parse_signer_id
from ec_node.integrity.stream_id import validate_stream_id
from ec_node.node.core import NodeCore, make_verifier
from ec_node.node.events import (
    ClosePeer,
    Exit,
    Fetch,
    FinishTrack,
    Output,
    Reconnect,
    Report,
    ServeGroup,
    Status,
    Track,
    WriteSegment,
)
from ec_node.node.settings import DEFAULT_MAX_PEER_REJECTIONS, NodeSettings, Role
from ec_node.pipeline.aio import emit_json, rss_mb
from ec_node.pipeline.channels import check_broadcast_flag, resolve_broadcast
from ec_node.pipeline.peers import PeerLink, QueueItem
from ec_node.transport.addr import EndpointAddr, parse_endpoint_addr
from ec_node.transport.base import Transport
from ec_node.transport.relay_auth import UrlPeerOptions

log = logging.getLogger(__name__)

QUEUE_ITEMS = 64  # inputs in flight from all links (each group up to a few MB)


@dataclass
class PullConfig:
    """What a node that pulls a broadcast from peers is told (flags shared by `moq-subscribe` and `relay`)."""

    remotes: list[str]
    broadcast: str | None = None
    remote_manifests: str | None = None
    stream_id: str | None = None
    require_manifest: bool = False
    trust_signers: list[str] = field(default_factory=list)
    min_signers: int = 1  # distinct trusted signers a manifest needs (k-of-n)
    network_secret: str | None = None
    chunk_ms: int = 2000
    max_peer_rejections: int | None = DEFAULT_MAX_PEER_REJECTIONS
    connect_timeout_s: float = 10.0
    manifest_timeout_s: float = 30.0
    reconnect_for_s: float = 30.0
    max_frame_mb: int = 64
    receive_buffer_mb: int = 32
    json: bool = False
    url_peers: UrlPeerOptions = field(default_factory=UrlPeerOptions)  # pins and token for URL remotes

    def settings(self, role: Role, **role_only: Any) -> NodeSettings:
        """The core's settings from these flags (plus what only this role sets, e.g. ``stop_after``)."""
        return NodeSettings(
            role=role,
            require_manifest=self.require_manifest,
            chunk_ms=self.chunk_ms,
            max_peer_rejections=self.max_peer_rejections,
            manifest_timeout_s=self.manifest_timeout_s,
            reconnect_for_s=self.reconnect_for_s,
            **role_only,
        )


def check_trust_flags(trust_signers: list[str], require_manifest: bool, min_signers: int = 1) -> None:
    """``--trust-signer`` means "verify against these signers": without ``--require-manifest`` nothing is verified
    (a subscriber writes, a relay passes on, what no trusted manifest vouches for), so it is a usage error.
    ``--min-signers K`` needs K distinct trusted signers to be possible at all."""
    distinct = {parse_signer_id(s) for s in trust_signers}  # a malformed id is told as such first
    if trust_signers and not require_manifest:
        raise UsageError(
            "--trust-signer needs --require-manifest: without it nothing is checked against the trusted signer "
            "and unverified segments would be written (add --require-manifest, or drop --trust-signer)"
        )
    if min_signers > 1 and len(distinct) < min_signers:
        raise UsageError(
            f"--min-signers {min_signers} needs at least {min_signers} distinct --trust-signer ids "
            f"(given {len(distinct)}) and --require-manifest"
        )


def default_transport(cfg: PullConfig) -> Transport:
    """The moq transport with this node's frame limit and receive buffer."""
    from ec_node.transport.moq_transport import moq_transport

    return moq_transport(
        max_frame_bytes=cfg.max_frame_mb * 1024 * 1024,
        receive_buffer_bytes=cfg.receive_buffer_mb * 1024 * 1024,
        url_peers=cfg.url_peers,
    )


async def pull_broadcast(cfg: PullConfig, transport: Transport) -> str:
    """The broadcast to pull: ``--broadcast``, else found from the first ``--remote``
    (:func:`~ec_node.pipeline.channels.resolve_broadcast`), once the flags that need no peer are checked."""
    if not cfg.remotes:
        raise UsageError("--remote is required")
    check_trust_flags(cfg.trust_signers, cfg.require_manifest)
    check_broadcast_flag(cfg.broadcast, "take it from the first --remote")
    if cfg.broadcast is not None:
        return cfg.broadcast
    if cfg.stream_id is not None:
        validate_stream_id(cfg.stream_id)
    parse_network_secret(cfg.network_secret)
    for s in cfg.trust_signers:
        parse_signer_id(s)
    for r in [*cfg.remotes, *([cfg.remote_manifests] if cfg.remote_manifests else [])]:
        parse_endpoint_addr(r)
    return await resolve_broadcast(cfg.remotes[0], transport, connect_timeout_s=cfg.connect_timeout_s)


@dataclass
class Pull:
    """A prepared pull: the core and the links that feed it (not started)."""

    stream_id: str
    core: NodeCore
    objects: list[PeerLink]
    manifests: PeerLink | None
    queue: asyncio.Queue[QueueItem]

    @property
    def links(self) -> list[PeerLink]:
        """Every link, objects first."""
        return [*self.objects, *([self.manifests] if self.manifests else [])]


def prepare_pull(
    cfg: PullConfig,
    settings: NodeSettings,
    broadcast: str,
    transport: Transport,
    *,
    keyless: bool = False,
    want_manifests: bool,
    measure: Callable[[bytes, int], int | None] | None = None,
) -> Pull:
    """Check the flags, derive keys, build the verifier, the core and the links."""
    if not cfg.remotes:
        raise UsageError("--remote is required")
    check_trust_flags(cfg.trust_signers, cfg.require_manifest, cfg.min_signers)
    stream_id = validate_stream_id(cfg.stream_id or broadcast)
    secret = parse_network_secret(cfg.network_secret)
    trusted = [parse_signer_id(s) for s in cfg.trust_signers]
    obj_addrs = list(dict.fromkeys(parse_endpoint_addr(r) for r in cfg.remotes))  # each peer once
    man_addr = parse_endpoint_addr(cfg.remote_manifests) if cfg.remote_manifests else obj_addrs[0]
    relay = settings.role is Role.RELAY
    # a relay that does not verify passes objects on unopened (it may not hold a private swarm's key)
    key = None if keyless or (relay and not settings.require_manifest) else derive_stream_key(stream_id, secret)
    limits = Limits(max_frame_bytes=cfg.max_frame_mb * 1024 * 1024)
    verifier = make_verifier(
        settings, stream_id, key, trusted_signers=trusted, limits=limits, min_signers=cfg.min_signers
    )
    queue: asyncio.Queue[QueueItem] = asyncio.Queue(QUEUE_ITEMS)

    def link(addr: EndpointAddr, track: Track) -> PeerLink:
        return PeerLink(transport, addr, broadcast, track, queue, connect_timeout_s=cfg.connect_timeout_s)

    objects = [link(a, Track.CHUNKS) for a in obj_addrs]
    manifests = link(man_addr, Track.MANIFESTS) if want_manifests else None
    core = NodeCore(
        settings,
        verifier,
        objects_peers=[lk.name for lk in objects],
        manifests_peer=manifests.name if manifests else None,
        now=time.monotonic(),
        measure=measure,
    )
    return Pull(stream_id, core, objects, manifests, queue)


class RunFailed(EcError):
    """The core ended the run with a non-zero exit (its reason is the one line the user reads)."""


def raise_unless_ok(done: Exit | None) -> None:
    """Turn the core's exit into the process's: nothing for ok or a stop signal, RunFailed otherwise."""
    if done is not None and done.code is not ExitCode.OK:
        raise RunFailed(done.reason, done.code)


class Reporter:
    """Shows reports: JSON lines on ``out`` (``--json``), and log lines at each report's level."""

    def __init__(self, out: TextIO | None, tap: Callable[[dict[str, Any]], None] | None = None) -> None:
        self.out = out
        self.tap = tap  # also given every event (the watch server's state)

    def report(self, r: Report) -> None:
        """Show one core report."""
        obj = r.to_json()
        if isinstance(r, Status):
            obj = {**obj, "rss_mb": rss_mb()}  # a measurement only the shell can take
        self.emit(obj, level=r.log_level(), text=r.text())

    def emit(self, obj: dict[str, Any], level: str = "info", text: str | None = None) -> None:
        """Show one event the shell itself observed (segment written, start, end); ``text``: its log line in words."""
        lvl = logging.getLevelName(level.upper())
        if log.isEnabledFor(lvl):  # (a segment event per chunk: no JSON unless someone reads it)
            if text is not None:
                log.log(lvl, "%s", text)
            else:
                fields = json.dumps({k: v for k, v in obj.items() if k != "event"}, separators=(",", ":"))
                log.log(lvl, "%s %s", obj.get("event"), fields)
        if self.out is not None:
            emit_json(self.out, obj)
        if self.tap is not None:
            self.tap(obj)


@dataclass
class Effects:
    """What a role does with the core's role-specific actions."""

    write_segment: Callable[[WriteSegment], None] | None = None
    serve: Callable[[ServeGroup], None] | None = None
    finish: Callable[[FinishTrack], None] | None = None


class NodeShell:
    """The event loop: queue in, core outputs applied, until an exit or the stop signal."""

    def __init__(self, pull: Pull, reporter: Reporter, stop: asyncio.Event, effects: Effects) -> None:
        self.pull = pull
        self.core = pull.core
        self.reporter = reporter
        self.stop = stop
        self.effects = effects
        self._closing: set[asyncio.Task[None]] = set()

    async def run(self) -> Exit | None:
        """Run until the core says exit (returned) or the stop signal (None)."""
        for lk in self.pull.links:
            lk.start()
        try:
            while not self.stop.is_set():
                deadline = self.core.next_deadline()
                now = time.monotonic()
                item = await self._next(None if deadline is None else max(0.0, deadline - now))
                outs = self.core.handle(item[1], item[0]) if item is not None else []
                now = time.monotonic()
                # (an input only adds deadlines after its own time, so the one waited for still decides)
                if deadline is not None and now >= deadline:
                    outs += self.core.on_timer(now)
                done = await self.apply(outs)
                if done is not None:
                    return done
            return None
        finally:
            for lk in self.pull.links:
                await lk.close()
            if self._closing:
                await asyncio.gather(*self._closing, return_exceptions=True)

    async def apply(self, outs: list[Output]) -> Exit | None:
        """Carry out the core's outputs in order; the exit, if one came."""
        e = self.effects
        for o in outs:
            if isinstance(o, WriteSegment) and e.write_segment is not None:
                e.write_segment(o)
            elif isinstance(o, ServeGroup) and e.serve is not None:
                e.serve(o)
            elif isinstance(o, FinishTrack) and e.finish is not None:
                e.finish(o)
            elif isinstance(o, Report):
                self.reporter.report(o)
            elif isinstance(o, Fetch):
                for lk in self._links(o.peer, o.track):
                    lk.fetch(o.sequences)
            elif isinstance(o, Reconnect):
                for lk in self._links(o.peer, o.track):
                    await lk.reconnect()
            elif isinstance(o, ClosePeer):
                for lk in self._links(o.peer, o.track):
                    t = asyncio.create_task(lk.close())
                    self._closing.add(t)
                    t.add_done_callback(self._closing.discard)
            elif isinstance(o, Exit):
                return o
        return None

    def _links(self, peer: str, track: Track | None) -> list[PeerLink]:
        return [lk for lk in self.pull.links if lk.name == peer and (track is None or lk.track == track)]

    async def _next(self, timeout: float | None) -> QueueItem | None:
        get = asyncio.ensure_future(self.pull.queue.get())
        stopper = asyncio.ensure_future(self.stop.wait())
        await asyncio.wait({get, stopper}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        stopper.cancel()
        if not get.done():
            get.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await get
        if get.done() and not get.cancelled():
            return get.result()
        return None
