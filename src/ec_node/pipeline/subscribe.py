"""`ec-node moq-subscribe`: objects from one or more peers, manifests from another, verified HLS out.

The shell keeps one :class:`PeerLink` per objects peer and one for the manifests peer, feeds
everything they deliver to :class:`SubscribeCore`, writes the segments it releases and reports
events. It never writes a byte the core did not release. Failover needs no switch-over: all
objects peers are pulled at once and the first verifiable copy of each chunk wins; a peer that
stalls is noticed on the chunk clock, one that lies is penalized (its copies are considered only
after a grace period) and then dropped.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from ec_node.errors import EcError, ExitCode, UsageError
from ec_node.integrity.frames import CHUNKS_TRACK, MANIFESTS_TRACK, Limits
from ec_node.integrity.keys import derive_stream_key, parse_network_secret, parse_signer_id
from ec_node.integrity.stream_id import validate_stream_id
from ec_node.integrity.verifier import Verifier
from ec_node.pipeline.aio import emit_json, install_stop_signals, rss_mb
from ec_node.pipeline.hls import HlsSink
from ec_node.pipeline.peers import PeerItem, PeerLink, peer_name
from ec_node.pipeline.subscribe_core import Step, SubscribeCore, SubscribeOptions
from ec_node.transport.addr import EndpointAddr, parse_endpoint_addr
from ec_node.transport.base import Transport

log = logging.getLogger(__name__)

STATUS_EVERY_S = 5.0
MAX_DEFERRED = 16  # objects from penalized peers waiting their turn


@dataclass
class SubscribeConfig:
    remotes: list[str]
    broadcast: str
    remote_manifests: str | None = None
    stream_id: str | None = None
    subscribe_manifests: bool = False
    require_manifest: bool = False
    trust_signers: list[str] = field(default_factory=list)
    network_secret: str | None = None
    max_invalid: int | None = None
    stop_after: int | None = None
    output_dir: Path = Path("hls")
    hls_window: int = 0
    json: bool = False
    chunk_ms: int = 2000
    connect_timeout_s: float = 10.0
    manifest_timeout_s: float = 30.0
    max_peer_rejections: int = 3
    reconnect_for_s: float = 30.0
    max_frame_mb: int = 64
    receive_buffer_mb: int = 32


class _Exit(EcError):
    pass


def default_transport(max_frame_bytes: int, receive_buffer_bytes: int) -> Transport:
    from ec_node.transport.moq_transport import moq_transport

    return moq_transport(max_frame_bytes=max_frame_bytes, receive_buffer_bytes=receive_buffer_bytes)


class _Reporter:
    def __init__(self, out: TextIO | None) -> None:
        self.out = out

    def emit(self, ev: dict[str, Any]) -> None:
        if self.out is not None:
            emit_json(self.out, ev)


async def run_subscribe(cfg: SubscribeConfig, out: TextIO = sys.stdout, transport: Transport | None = None) -> None:
    """Run until --stop-after, the stream's end, or a failure (raised as an EcError with its exit code)."""
    if not cfg.remotes:
        raise UsageError("--remote is required")
    stream_id = validate_stream_id(cfg.stream_id or cfg.broadcast)
    secret = parse_network_secret(cfg.network_secret)
    trusted = [parse_signer_id(s) for s in cfg.trust_signers]
    obj_addrs = _unique([parse_endpoint_addr(r) for r in cfg.remotes])
    man_addr = parse_endpoint_addr(cfg.remote_manifests) if cfg.remote_manifests else obj_addrs[0]
    want_manifests = cfg.subscribe_manifests or cfg.require_manifest
    if cfg.require_manifest and not cfg.subscribe_manifests:
        log.info("--require-manifest implies --subscribe-manifests")

    key = derive_stream_key(stream_id, secret)
    max_frame = cfg.max_frame_mb * 1024 * 1024
    verifier = Verifier(stream_id, key, trusted_signers=trusted, limits=Limits(max_frame_bytes=max_frame),
                        max_retained_slots=8192, max_pending_per_source=16)  # half of the 32-object buffer
    chunk_s = cfg.chunk_ms / 1000
    core = SubscribeCore(
        stream_id,
        key,
        verifier,
        SubscribeOptions(
            require_manifest=cfg.require_manifest,
            max_invalid=cfg.max_invalid,
            stop_after=cfg.stop_after,
            chunk_ms=cfg.chunk_ms,
            reorder_s=2 * chunk_s,
            max_peer_rejections=cfg.max_peer_rejections,
        ),
    )
    sink = HlsSink(cfg.output_dir, window=cfg.hls_window, chunk_ms=cfg.chunk_ms)
    transport = transport or default_transport(max_frame, cfg.receive_buffer_mb * 1024 * 1024)
    stop = asyncio.Event()
    install_stop_signals(stop)
    report = _Reporter(out if cfg.json else None)
    queue: asyncio.Queue[PeerItem] = asyncio.Queue(maxsize=64)

    def link(addr: EndpointAddr, track: str, stall_s: float) -> PeerLink:
        return PeerLink(
            transport, addr, cfg.broadcast, track, queue, stall_s=stall_s,
            connect_timeout_s=cfg.connect_timeout_s, reconnect_for_s=cfg.reconnect_for_s,
        )

    objects = [link(a, CHUNKS_TRACK, 2 * chunk_s) for a in obj_addrs]
    manifests = link(man_addr, MANIFESTS_TRACK, 3 * chunk_s) if want_manifests else None
    run = _Run(core, sink, queue, report, stop, objects, manifests, cfg)
    for lk in [*objects, *([manifests] if manifests else [])]:
        lk.start()
    report.emit({"event": "subscribed", "broadcast": cfg.broadcast, "stream_id": stream_id,
                 "objects_peers": [lk.name for lk in objects],
                 "manifests_peer": manifests.name if manifests else None})
    try:
        code, reason = await run.loop()
    finally:
        for lk in [*objects, *([manifests] if manifests else [])]:
            await lk.close()
    sink.finish()
    report.emit({"event": "end", "exit_code": int(code), "reason": reason, "segments": core.written,
                 "rejected": core.rejected, "dropped": core.dropped, "manifests": core.manifests,
                 "rss_mb": rss_mb()})
    log.info("done: %s (%d segments, %d rejected)", reason, core.written, core.rejected)
    if code is not ExitCode.OK:
        raise _Exit(reason, code)


def _unique(addrs: list[EndpointAddr]) -> list[EndpointAddr]:
    out: list[EndpointAddr] = []
    for a in addrs:
        if a not in out:
            out.append(a)
    return out


class _Run:
    """The event loop of one subscription; all state the shell needs beyond the core."""

    def __init__(
        self,
        core: SubscribeCore,
        sink: HlsSink,
        queue: asyncio.Queue[PeerItem],
        report: _Reporter,
        stop: asyncio.Event,
        objects: list[PeerLink],
        manifests: PeerLink | None,
        cfg: SubscribeConfig,
    ) -> None:
        self.core, self.sink, self.queue, self.report, self.stop = core, sink, queue, report, stop
        self.objects = {lk.name: lk for lk in objects}
        self.manifests = manifests
        self.cfg = cfg
        self.ended: set[str] = set()  # objects peers whose track ended or that are gone/dropped
        self.ever_connected: set[str] = set()
        self.manifests_done = manifests is None  # the leader finished its track (or none is wanted)
        self.leader_gone_since: float | None = None
        self.objects_done_at: float | None = None
        self.deferred: list[tuple[float, PeerItem]] = []  # objects from penalized peers, held back
        self.next_status = time.monotonic() + STATUS_EVERY_S

    def apply(self, step: Step) -> tuple[ExitCode, str] | None:
        latency: dict[int, float] = {}
        for seg in step.segments:
            self.sink.write(seg.chunk_index, seg.data, seg.duration_ms)
            latency[seg.chunk_index] = round((time.monotonic() - seg.received_at) * 1000, 2)
        for ev in step.events:
            if ev["event"] == "segment" and ev["chunk_index"] in latency:
                ev["latency_ms"] = latency[ev["chunk_index"]]  # object received -> segment on disk
            self.report.emit(ev)
        for name in step.drop_peers:
            lk = self.objects.get(name)
            if lk is not None and name not in self.ended:
                log.warning("dropping objects peer %s: %d invalid objects", name, self.core.penalty(name))
                self.ended.add(name)
                asyncio.get_running_loop().create_task(lk.close())
        if step.exit is not None:
            return step.exit, step.exit_reason
        return None

    async def loop(self) -> tuple[ExitCode, str]:
        while True:
            if self.stop.is_set():
                return ExitCode.OK, "stopped by signal"
            now = time.monotonic()
            r = self.apply(self.core.tick(now)) or self._check_end(now)
            if r:
                return r
            r = self._release_deferred(now)
            if r:
                return r
            self._status(now)
            item = await self._next_item(timeout=0.25 if self.deferred or self.core.holding else 1.0)
            if item is None:
                continue
            r = self._handle(item)
            if r:
                return r

    async def _next_item(self, timeout: float) -> PeerItem | None:
        try:
            return await asyncio.wait_for(self.queue.get(), timeout)
        except TimeoutError:
            return None

    def _release_deferred(self, now: float) -> tuple[ExitCode, str] | None:
        due = [it for t, it in self.deferred if t <= now]
        self.deferred = [(t, it) for t, it in self.deferred if t > now]
        for it in due:
            if it.peer in self.core.dropped_peers:
                continue
            r = self.apply(self.core.on_object(it.payload, it.peer, it.at))
            if r:
                return r
        return None

    def _handle(self, it: PeerItem) -> tuple[ExitCode, str] | None:
        is_objects = it.track == CHUNKS_TRACK
        if it.kind == "too_large":
            if is_objects:
                return self.apply(self.core.on_oversized(it.sequence, it.peer, it.at))
            self.report.emit({"event": "manifest_rejected", "reason": "too_large", "peer": it.peer,
                              "detail": "manifest over the size limit, refused"})
            return None
        if it.kind == "group":
            if is_objects:
                if it.peer in self.core.dropped_peers:
                    return None
                if self.core.penalty(it.peer):  # a peer that lied before waits its turn
                    if len(self.deferred) >= MAX_DEFERRED:  # bounded: a flooding liar loses its oldest
                        self.deferred.pop(0)
                    self.deferred.append((it.at + self.cfg.chunk_ms / 4000, it))
                    return None
                return self.apply(self.core.on_object(it.payload, it.peer, it.at))
            self.leader_gone_since = None
            return self.apply(self.core.on_manifest(it.payload, it.peer, it.at))
        if it.kind == "connected":
            if is_objects:
                self.ever_connected.add(it.peer)
            else:
                self.leader_gone_since = None
            self.report.emit({"event": "peer_connected", "track": it.track, "peer": it.peer,
                              **({"detail": it.detail} if it.detail else {})})
            return None
        if it.kind == "gap":
            self.report.emit({"event": "track_gap", "track": it.track, "groups": it.detail, "peer": it.peer})
            return None
        if it.kind in ("stalled", "lost"):
            self.report.emit({"event": f"peer_{it.kind}", "track": it.track, "peer": it.peer, "detail": it.detail})
            if not is_objects and self.leader_gone_since is None and not self.manifests_done:
                self.leader_gone_since = it.at
                log.warning("manifests peer %s %s; waiting up to %g s for it", it.peer, it.kind,
                            self.cfg.manifest_timeout_s)
            return None
        if it.kind == "end":
            log.info("%s track ended at %s", it.track, it.peer)
            if is_objects:
                self.ended.add(it.peer)
            else:
                self.manifests_done = True
                self.leader_gone_since = None
            return None
        # gone: the peer will not come back
        self.report.emit({"event": "peer_gone", "track": it.track, "peer": it.peer, "detail": it.detail})
        if is_objects:
            self.ended.add(it.peer)
            if it.peer not in self.ever_connected and len(self.objects) == 1:
                return ExitCode.UNREACHABLE, f"objects peer {it.peer}: {it.detail}"
            return None
        if self.core.written == 0 and self.leader_gone_since is None:
            return ExitCode.UNREACHABLE, f"manifests peer {it.peer}: {it.detail}"
        self.manifests_done = True
        return None

    def _check_end(self, now: float) -> tuple[ExitCode, str] | None:
        if self.leader_gone_since is not None and now - self.leader_gone_since >= self.cfg.manifest_timeout_s:
            self.apply(self.core.on_manifests_gone())
            return ExitCode.MANIFEST_TIMEOUT, (
                f"no manifests for {self.cfg.manifest_timeout_s:g} s (manifests peer gone)"
            )
        if len(self.ended) < len(self.objects) or self.deferred or not self.queue.empty():
            return None
        # every objects peer is finished or gone: wait for manifests still owed, then stop
        if self.objects_done_at is None:
            self.objects_done_at = now
        owed = self.core.verifier.pending_count > 0 and not self.manifests_done
        if owed and now - self.objects_done_at < self.cfg.manifest_timeout_s:
            return None
        if not self.ever_connected:
            return ExitCode.UNREACHABLE, "no objects peer could be reached"
        if self.core.verifier.pending_count:
            self.apply(self.core.on_manifests_gone())
        r = self.apply(self.core.on_objects_ended())
        if r:
            return r
        return ExitCode.OK, "stream ended"

    def _status(self, now: float) -> None:
        if now < self.next_status:
            return
        self.next_status = now + STATUS_EVERY_S
        self.report.emit({
            "event": "status", "segments": self.core.written, "rejected": self.core.rejected,
            "pending": self.core.verifier.pending_count, "pending_bytes": self.core.verifier.pending_bytes,
            "peers": {n: ("ended" if n in self.ended else "stalled" if lk.stalled else
                          "up" if lk.connected else "down") for n, lk in self.objects.items()},
            "rss_mb": rss_mb(),
        })


__all__ = ["SubscribeConfig", "run_subscribe", "peer_name"]

