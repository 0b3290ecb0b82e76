"""`ec-node moq-publish`: ingest a source, chunk it, and serve objects and/or signed manifests over MoQ.

Order of work: open the source and probe its head (to name the stream), listen, create every
track, announce, print the startup line, then ingest. A manifests-only leader still chunks and
hashes everything it signs.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import logging
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from ec_node.errors import EcError, UsageError
from ec_node.integrity.frames import MANIFESTS_TRACK
from ec_node.integrity.keys import derive_stream_key, parse_network_secret
from ec_node.integrity.signer import Signer
from ec_node.integrity.stream_id import SourceHint, derive_stream_id, validate_stream_id
from ec_node.pipeline.aio import emit_json, install_stop_signals, iterate_in_thread, run_stoppable, thread_stop
from ec_node.pipeline.channels import check_broadcast_flag
from ec_node.pipeline.identify import identity_of
from ec_node.pipeline.ingest import open_source, pace_by_pcr, parse_source
from ec_node.pipeline.publish_core import PublishCore
from ec_node.pipeline.startup import StartupObject, check_reachable, listener_event_level, shown_addr
from ec_node.transport.addr import parse_endpoint_addr
from ec_node.transport.base import NotFoundError, PeerLostError, TrackWriter, Transport
from ec_node.transport.identity import load_or_create_identity
from ec_node.transport.relay_auth import UrlPeerOptions
from ec_node.ts.guard import GuardedChunker
from ec_node.ts.inspect import probe_head

log = logging.getLogger(__name__)


@dataclass
class PublishConfig:
    """`moq-publish`'s flags."""

    input: str
    duration_s: float | None = None
    realtime: bool = False
    listen: str | None = "127.0.0.1:0"  # None: --no-listen (push to relays only)
    advertise: tuple[str, ...] = ()  # addresses put in endpoint_addr instead of the bound one
    identity_dir: Path | None = None
    stream_id: str | None = None
    broadcast: str | None = None
    network_secret: str | None = None
    signing_key: Path | None = None
    publish_manifests: bool = False
    publish_chunks: bool = True
    epoch_chunks: int = 1
    chunk_ms: int = 2000
    startup_delay_ms: int = 0
    addr_file: Path | None = None
    linger_ms: int = 0
    cache_mb: int = 64
    json: bool = False  # a "published" event per chunk on stdout after the startup line
    relays: list[str] = field(default_factory=list)  # relay URLs to push the broadcast into
    cosign: str | None = None  # another leader's address: co-sign the manifests it agrees on (k-of-n)
    url_peers: UrlPeerOptions = field(default_factory=UrlPeerOptions)  # pins and token for those relays


def default_transport(url_peers: UrlPeerOptions | None = None) -> Transport:
    """The moq transport with its defaults (and how to dial relays)."""
    from ec_node.transport.moq_transport import moq_transport

    return moq_transport(url_peers=url_peers)


def _source_hint(spec: str, device_id: str | None) -> SourceHint:
    s = parse_source(spec)
    if s.kind == "hdhr":
        return SourceHint("hdhr", device_id=device_id, channel=s.channel, locator=spec)
    if s.kind == "url":
        return SourceHint("url", locator=spec)
    if s.kind == "stdin":
        return SourceHint("stdin")
    return SourceHint("file", locator=spec)


def _hdhr_device_id(spec: str) -> str | None:
    s = parse_source(spec)
    if s.kind != "hdhr" or s.host is None:
        return None
    from ec_node.hdhr.client import HdhrClient

    return HdhrClient(s.host).discover().device_id


async def run_publish(
    cfg: PublishConfig,
    out: TextIO = sys.stdout,
    transport: Transport | None = None,
    stop: asyncio.Event | None = None,
) -> None:
    """Ingest, chunk and publish until the input ends (then linger) or a stop signal."""
    if not cfg.publish_chunks and not cfg.publish_manifests:
        raise UsageError("nothing to publish: --publish-chunks=false needs --publish-manifests")
    if cfg.epoch_chunks < 1:
        raise UsageError("--epoch-chunks must be >= 1")
    check_broadcast_flag(cfg.broadcast, "use the stream id")
    check_reachable(cfg.listen, cfg.relays)
    secret = parse_network_secret(cfg.network_secret)
    signer = Signer.load(cfg.signing_key) if cfg.signing_key else None  # missing: an error; only keygen makes keys
    if cfg.cosign is not None and (not cfg.publish_manifests or signer is None):
        raise UsageError("--cosign needs --publish-manifests and --signing-key (it adds this leader's signature)")
    if cfg.cosign is not None:
        parse_endpoint_addr(cfg.cosign)  # a malformed address is a usage error now, not a warning later
    if cfg.publish_manifests and signer is None:
        signer = Signer.generate()
        log.warning("no --signing-key: signing with an ephemeral key %s", signer.signer_id)
    if cfg.stream_id is not None:
        validate_stream_id(cfg.stream_id)

    if stop is None:  # a caller that passes its own stop event (the home node) owns the signals
        stop = asyncio.Event()
        install_stop_signals(stop)
    async with thread_stop(stop) as halt:  # a stop also ends a tuner's reconnect backoff in its thread
        await _publish(cfg, out, transport, stop, halt, signer, secret)


async def _publish(
    cfg: PublishConfig,
    out: TextIO,
    transport: Transport | None,
    stop: asyncio.Event,
    halt: threading.Event,
    signer: Signer | None,
    secret: bytes,
) -> None:
    """run_publish once the flags are checked. Each blocking step before ingest (asking the device, tuning
    with its busy retries, probing the head while a cut stream reconnects) gives way to a stop signal."""
    name = "stdin" if cfg.input == "-" else cfg.input
    device_id = await run_stoppable(stop, _hdhr_device_id, cfg.input)
    if stop.is_set():
        return
    reads = await run_stoppable(stop, open_source, cfg.input, cfg.duration_s, halt)
    if reads is None:
        return
    head = await run_stoppable(stop, probe_head, reads, cfg.chunk_ms, name)  # not paced: pacing is ingest's
    if head is None:
        return
    stream_id = derive_stream_id(identity_of(head.info), _source_hint(cfg.input, device_id), explicit=cfg.stream_id)
    broadcast = stream_id if cfg.broadcast is None else cfg.broadcast
    core = PublishCore(
        stream_id,
        derive_stream_key(stream_id, secret),
        signer=signer if cfg.publish_manifests else None,
        publish_chunks=cfg.publish_chunks,
        epoch_chunks=cfg.epoch_chunks,
        chunk_ms=cfg.chunk_ms,
        cosign_hold_ms=COSIGN_HOLD_CHUNKS * cfg.chunk_ms if cfg.cosign else None,
    )

    transport = transport or default_transport(cfg.url_peers)
    identity = load_or_create_identity(cfg.identity_dir)
    listener = await transport.listen(cfg.listen, identity, cfg.cache_mb * 1024 * 1024, advertise=cfg.advertise)
    try:
        writers = listener.publish_broadcast(broadcast, core.tracks)
        for url in cfg.relays:
            await listener.push(url, broadcast)
        signer_id = signer.signer_id if cfg.publish_manifests and signer else None
        startup = StartupObject(
            listener.endpoint_addr, broadcast, stream_id, tuple(core.tracks), signer_id, tuple(cfg.relays)
        )
        startup.announce(out, cfg.addr_file)
        report = functools.partial(_listener_event, out if cfg.json else None)
        startup.follow(listener, cfg.addr_file, report)
        log.info("serving %s (%s) on %s", broadcast, ", ".join(core.tracks), shown_addr(listener.endpoint_addr))

        if cfg.startup_delay_ms and await _wait(stop, cfg.startup_delay_ms / 1000):
            return
        ingest = ingest_reads(head.head, reads, realtime=cfg.realtime)
        cosigning = (
            asyncio.create_task(_cosign(core, writers, transport, cfg.cosign, broadcast, cfg.chunk_ms))
            if cfg.cosign
            else None
        )
        try:
            await _ingest(core, writers, ingest, cfg.chunk_ms, name, stop, out if cfg.json else None)
        finally:
            if cosigning is not None:
                cosigning.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await cosigning
                for w in core.flush_cosigned():  # held manifests are never lost, even if ingest failed
                    with contextlib.suppress(ValueError):
                        writers[w.track].write_group(w.sequence, w.payload)
        log.info(
            "input ended: %d chunks, %d objects, %d manifests, %d damaged chunks dropped",
            core.stats.chunks,
            core.stats.objects,
            core.stats.manifests,
            core.stats.damaged_dropped,
        )
        if cfg.linger_ms and not stop.is_set():
            await _wait(stop, cfg.linger_ms / 1000)
    finally:
        await listener.close()


#: How long (in chunk durations) a co-signer holds its own manifest for the other leader's signature.
COSIGN_HOLD_CHUNKS = 3


async def _cosign(
    core: PublishCore,
    writers: dict[str, TrackWriter],
    transport: Transport,
    addr: str,
    broadcast: str,
    chunk_ms: int,
) -> None:
    """Feed the other leader's manifests to the core, and let held manifests go out when due.

    If the other leader cannot be reached or goes away, this leader goes on alone (its manifests then
    carry its signature only, after the hold) and dials again with backoff: co-signing never stops
    a leader.
    """

    def write(ws: list[Any]) -> None:
        for w in ws:
            try:
                writers[w.track].write_group(w.sequence, w.payload)
            except ValueError as exc:  # a finished track (shutting down): nothing more to publish
                log.debug("co-signing: not published: %s", exc)

    async def feed() -> None:
        backoff = 1.0
        while True:
            session = None
            try:
                session = await transport.connect(parse_endpoint_addr(addr), 10.0)
                sub = await session.subscribe(broadcast, MANIFESTS_TRACK)
                log.info("co-signing with the leader at %s", session.remote.to_arg())
                backoff = 1.0
                async for ev in sub:
                    write(core.on_peer_manifest(ev.payload, int(time.time() * 1000)))
                log.info("co-signing: the other leader's manifests ended")
                return
            except (EcError, PeerLostError, NotFoundError) as exc:
                log.warning("co-signing: the other leader is unavailable (%s); signing alone, retrying in %g s",
                            exc, backoff)  # fmt: skip
            finally:
                if session is not None:
                    await session.close()
            await asyncio.sleep(backoff)
            backoff = min(30.0, backoff * 2)

    feeder = asyncio.create_task(feed())
    try:
        while True:
            await asyncio.sleep(chunk_ms / 4000)
            write(core.tick(int(time.time() * 1000)))
    finally:
        feeder.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await feeder


def _listener_event(out: TextIO | None, event: dict[str, Any]) -> None:
    """A listener event (rotation, refused session): a log line, and a JSON line with --json."""
    log.log(logging.getLevelName(listener_event_level(event).upper()), "%s", event)
    if out is not None:
        emit_json(out, event)


async def _wait(stop: asyncio.Event, seconds: float) -> bool:
    """Sleep up to ``seconds``; True if a stop signal came first."""
    try:
        await asyncio.wait_for(stop.wait(), seconds)
        return True
    except TimeoutError:
        return False


def ingest_reads(
    head: list[bytes],
    rest: Iterator[bytes],
    *,
    realtime: bool,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> Iterator[bytes]:
    """What ingest reads: the probed head, then the rest of the source; with ``--realtime`` paced by its
    PCR from the first byte ingest takes.

    Why here and not around the probe: the probe (and ``--startup-delay-ms``, and setting up the
    listener) come before ingest. A clock started with the probe counts that time as media already
    due, so when ingest began it released that much media at once.
    """
    reads = itertools.chain(head, rest)
    return pace_by_pcr(reads, clock=clock, sleep=sleep) if realtime else reads


async def _ingest(
    core: PublishCore,
    writers: dict[str, TrackWriter],
    reads: Iterator[bytes],
    chunk_ms: int,
    name: str,
    stop: asyncio.Event,
    events: TextIO | None,
) -> None:
    chunker = GuardedChunker(chunk_ms, name)

    def apply(chunks: list[Any]) -> None:
        for c in chunks:
            for w in core.on_chunk(c, int(time.time() * 1000)):
                writers[w.track].write_group(w.sequence, w.payload)
            st = core.stats
            progress = {"event": "published", "chunk_index": c.index, "chunks": st.chunks, "objects": st.objects,
                        "manifests": st.manifests, "damaged": st.damaged_dropped}  # fmt: skip
            log.info("published %s", progress)
            if events is not None:
                emit_json(events, progress)

    async for data in iterate_in_thread(reads, stop_on=stop):  # (a stop ends it even while a tuner reconnects)
        apply(chunker.feed(data))
        if stop.is_set():
            break
    apply(chunker.flush())
    for w in core.finish(int(time.time() * 1000)):
        writers[w.track].write_group(w.sequence, w.payload)
    for wr in writers.values():
        wr.finish()
