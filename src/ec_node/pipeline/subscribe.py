"""`ec-node moq-subscribe`: objects from one peer, manifests from another, verified HLS out.

The shell connects, pumps both tracks into one queue, hands every frame to
:class:`SubscribeCore`, writes the segments it releases and reports events. It never writes a
byte the core did not release.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from ec_node.errors import EcError, ExitCode, UnreachableError, UsageError
from ec_node.integrity.frames import CHUNKS_TRACK, MANIFESTS_TRACK
from ec_node.integrity.keys import derive_stream_key, parse_network_secret, parse_signer_id
from ec_node.integrity.stream_id import validate_stream_id
from ec_node.integrity.verifier import Verifier
from ec_node.pipeline.aio import emit_json, install_stop_signals, rss_mb
from ec_node.pipeline.hls import HlsSink
from ec_node.pipeline.subscribe_core import Step, SubscribeCore, SubscribeOptions
from ec_node.transport.addr import EndpointAddr, parse_endpoint_addr
from ec_node.transport.base import PeerSession, Subscription, Transport
from ec_node.transport.sequencing import GapEvent, GroupEvent

log = logging.getLogger(__name__)

STATUS_EVERY_S = 5.0


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


@dataclass
class _Item:
    kind: str  # "object" | "manifest" | "end" | "lost" | "gap"
    track: str
    peer: str
    payload: bytes = b""
    detail: str = ""
    at: float = 0.0  # time.monotonic() when it arrived


class _Exit(EcError):
    pass


def _exit_error(code: ExitCode, reason: str) -> EcError:
    return _Exit(reason, code)


def default_transport() -> Transport:
    from ec_node.transport.moq_transport import MoqTransport

    return MoqTransport()


async def run_subscribe(cfg: SubscribeConfig, out: TextIO = sys.stdout, transport: Transport | None = None) -> None:
    """Run until --stop-after, the stream's end, or a failure (raised as an EcError with its exit code)."""
    if not cfg.remotes:
        raise UsageError("--remote is required")
    if cfg.stop_after is not None and cfg.stop_after < 1:
        raise UsageError("--stop-after must be >= 1")
    stream_id = validate_stream_id(cfg.stream_id or cfg.broadcast)
    secret = parse_network_secret(cfg.network_secret)
    trusted = [parse_signer_id(s) for s in cfg.trust_signers]
    obj_addrs = [parse_endpoint_addr(r) for r in cfg.remotes]
    man_addr = parse_endpoint_addr(cfg.remote_manifests) if cfg.remote_manifests else obj_addrs[0]
    want_manifests = cfg.subscribe_manifests or cfg.require_manifest
    if cfg.require_manifest and not cfg.subscribe_manifests:
        log.info("--require-manifest implies --subscribe-manifests")

    key = derive_stream_key(stream_id, secret)
    verifier = Verifier(stream_id, key, trusted_signers=trusted)
    core = SubscribeCore(
        stream_id,
        key,
        verifier,
        SubscribeOptions(
            require_manifest=cfg.require_manifest,
            max_invalid=cfg.max_invalid,
            stop_after=cfg.stop_after,
            chunk_ms=cfg.chunk_ms,
        ),
    )
    sink = HlsSink(cfg.output_dir, window=cfg.hls_window, chunk_ms=cfg.chunk_ms)
    transport = transport or default_transport()
    stop = asyncio.Event()
    install_stop_signals(stop)

    sessions: list[PeerSession] = []
    tasks: list[asyncio.Task[None]] = []
    queue: asyncio.Queue[_Item] = asyncio.Queue(maxsize=64)
    report = _Reporter(out if cfg.json else None)
    try:
        obj_session = await _connect(transport, obj_addrs[0], cfg.connect_timeout_s)
        sessions.append(obj_session)
        if want_manifests:
            if cfg.remote_manifests is None or man_addr == obj_addrs[0]:
                man_session = obj_session
            else:
                man_session = await _connect(transport, man_addr, cfg.connect_timeout_s)
                sessions.append(man_session)
        chunk_sub = await obj_session.subscribe(cfg.broadcast, CHUNKS_TRACK)
        tasks.append(asyncio.create_task(_pump(chunk_sub, CHUNKS_TRACK, _peer_name(obj_addrs[0]), queue)))
        if want_manifests:
            man_sub = await man_session.subscribe(cfg.broadcast, MANIFESTS_TRACK)
            tasks.append(asyncio.create_task(_pump(man_sub, MANIFESTS_TRACK, _peer_name(man_addr), queue)))
        report.emit({"event": "subscribed", "broadcast": cfg.broadcast, "stream_id": stream_id,
                     "objects_peer": _peer_name(obj_addrs[0]),
                     "manifests_peer": _peer_name(man_addr) if want_manifests else None})
        code, reason = await _loop(core, sink, queue, report, stop, want_manifests, cfg)
    finally:
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(BaseException):
                await t
        for s in sessions:
            with contextlib.suppress(Exception):
                await s.close()
    sink.finish()
    report.emit(
        {
            "event": "end",
            "exit_code": int(code),
            "reason": reason,
            "segments": core.written,
            "rejected": core.rejected,
            "manifests": core.manifests,
            "rss_mb": rss_mb(),
        }
    )
    log.info("done: %s (%d segments, %d rejected)", reason, core.written, core.rejected)
    if code is not ExitCode.OK:
        raise _exit_error(code, reason)


def _peer_name(addr: EndpointAddr) -> str:
    if addr.url:
        return addr.url
    return f"{(addr.id or '')[:12]}@{','.join(addr.addrs)}"


async def _connect(transport: Transport, addr: EndpointAddr, timeout_s: float) -> PeerSession:
    try:
        return await transport.connect(addr, timeout_s)
    except UnreachableError:
        raise
    except EcError:
        raise
    except Exception as e:  # the transport's own failures all mean the same to a user
        raise UnreachableError(f"cannot reach {_peer_name(addr)}: {e}") from None


async def _pump(sub: Subscription, track: str, peer: str, queue: asyncio.Queue[_Item]) -> None:
    kind = "object" if track == CHUNKS_TRACK else "manifest"
    try:
        async for ev in sub:
            if isinstance(ev, GroupEvent):
                await queue.put(_Item(kind, track, peer, ev.payload, at=time.monotonic()))
            elif isinstance(ev, GapEvent):
                await queue.put(_Item("gap", track, peer, detail=f"{ev.start}..{ev.end - 1}"))
        await queue.put(_Item("end", track, peer))
    except asyncio.CancelledError:
        raise
    except Exception as e:
        await queue.put(_Item("lost", track, peer, detail=str(e)))
    finally:
        with contextlib.suppress(Exception):
            await sub.close()


class _Reporter:
    def __init__(self, out: TextIO | None) -> None:
        self.out = out

    def emit(self, ev: dict[str, Any]) -> None:
        if self.out is not None:
            emit_json(self.out, ev)


async def _loop(
    core: SubscribeCore,
    sink: HlsSink,
    queue: asyncio.Queue[_Item],
    report: _Reporter,
    stop: asyncio.Event,
    want_manifests: bool,
    cfg: SubscribeConfig,
) -> tuple[ExitCode, str]:
    objects_ended = False
    manifests_ended = not want_manifests
    manifests_ended_at: float | None = None
    next_status = time.monotonic() + STATUS_EVERY_S

    def apply(step: Step) -> tuple[ExitCode, str] | None:
        latency: dict[int, float] = {}
        for seg in step.segments:
            sink.write(seg.chunk_index, seg.data, seg.duration_ms)
            latency[seg.chunk_index] = round((time.monotonic() - seg.received_at) * 1000, 2)
        for ev in step.events:
            if ev["event"] == "segment" and ev["chunk_index"] in latency:
                ev["latency_ms"] = latency[ev["chunk_index"]]  # object received -> segment on disk
            report.emit(ev)
        if step.exit is not None:
            return step.exit, step.exit_reason
        return None

    while True:
        if stop.is_set():
            return ExitCode.OK, "stopped by signal"
        if objects_ended and (manifests_ended or core.verifier.pending_count == 0):
            # nothing more can arrive that would be written
            if core.verifier.pending_count:
                r = apply(core.on_manifests_gone())
                if r:
                    return r
            r = apply(core.on_objects_ended())
            if r:
                return r
            return ExitCode.OK, "stream ended"
        if objects_ended and manifests_ended_at is None and not manifests_ended:
            manifests_ended_at = time.monotonic()
        wait = STATUS_EVERY_S
        if manifests_ended_at is not None:
            left = manifests_ended_at + cfg.manifest_timeout_s - time.monotonic()
            if left <= 0:
                manifests_ended = True
                continue
            wait = min(wait, left)
        get = asyncio.create_task(queue.get())
        stopper = asyncio.create_task(stop.wait())
        done, _ = await asyncio.wait({get, stopper}, timeout=wait, return_when=asyncio.FIRST_COMPLETED)
        stopper.cancel()
        if get not in done:
            get.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await get
            item = None
        else:
            item = get.result()
        if time.monotonic() >= next_status:
            next_status = time.monotonic() + STATUS_EVERY_S
            report.emit(
                {
                    "event": "status",
                    "segments": core.written,
                    "rejected": core.rejected,
                    "pending": core.verifier.pending_count,
                    "pending_bytes": core.verifier.pending_bytes,
                    "rss_mb": rss_mb(),
                }
            )
        if item is None:
            continue
        if item.kind == "object":
            r = apply(core.on_object(item.payload, item.peer, item.at))
        elif item.kind == "manifest":
            r = apply(core.on_manifest(item.payload, item.peer))
        elif item.kind == "gap":
            report.emit({"event": "gap", "track": item.track, "groups": item.detail, "peer": item.peer})
            r = None
        elif item.kind == "end":
            log.info("%s track ended at %s", item.track, item.peer)
            if item.track == CHUNKS_TRACK:
                objects_ended = True
            else:
                manifests_ended = True
            r = None
        else:  # lost
            report.emit({"event": "peer_lost", "track": item.track, "peer": item.peer, "detail": item.detail})
            if item.track == CHUNKS_TRACK:
                return ExitCode.UNREACHABLE, f"objects peer {item.peer} lost: {item.detail}"
            manifests_ended = True
            r = None
        if r:
            return r
