"""`ec-node relay`: subscribe upstream, re-serve the broadcast to any number of downstream peers.

Order of work: listen, create both tracks, announce, print the startup object, then pull through
the node core in the relay role (:mod:`ec_node.pipeline.node_shell`). Its only effects of its own
are writing the groups the core releases to its tracks and finishing them. When every objects
upstream has ended the tracks are finished (downstream sees a clean end) but the node keeps
serving its cache to late joiners until SIGINT/SIGTERM.

A relay re-serves both tracks: ``manifests`` are verified with ``--require-manifest`` and passed on
(if they parse and name the stream) without it. Keys: with ``--require-manifest`` the relay
verifies objects fully, which needs the stream key. Without ``--network-secret`` that key is
derived from the stream id alone (a public stream); a relay for a private swarm passes the secret,
or ``--keyless`` to check manifests and object metadata only (it then cannot see ciphertext
damage; subscribers still can).
"""

from __future__ import annotations

import asyncio
import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from ec_node.errors import UsageError
from ec_node.node.events import FinishTrack, ServeGroup, Track
from ec_node.node.settings import Role
from ec_node.pipeline.aio import install_stop_signals
from ec_node.pipeline.node_shell import (
    Effects,
    NodeShell,
    PullConfig,
    Reporter,
    default_transport,
    prepare_pull,
    pull_broadcast,
    raise_unless_ok,
)
from ec_node.pipeline.startup import (
    StartupObject,
    broadcast_from_startup,
    check_reachable,
    listener_event_level,
    shown_addr,
)
from ec_node.transport.base import Transport
from ec_node.transport.identity import load_or_create_identity
from ec_node.transport.shedding import ShedLimits

log = logging.getLogger(__name__)


@dataclass
class RelayConfig(PullConfig):
    """`relay`'s flags: what to pull (shared with the subscriber) and how to serve it."""

    listen: str | None = "127.0.0.1:0"  # None: --no-listen (push to relays only)
    advertise: tuple[str, ...] = ()  # addresses put in endpoint_addr instead of the bound one
    relays: list[str] = field(default_factory=list)  # relay URLs to push the re-served broadcast into
    keyless: bool = False
    identity_dir: Path | None = None
    cache_mb: int = 64
    addr_file: Path | None = None
    max_subscribers: int | None = 64  # downstream sessions held at once
    max_lag_mb: int | None = 32  # a downstream session further behind than this is shed
    max_total_lag_mb: int | None = 256  # ... and the furthest behind while all together lag more


async def run_relay(
    cfg: RelayConfig,
    out: TextIO = sys.stdout,
    transport: Transport | None = None,
    stop: asyncio.Event | None = None,
) -> None:
    """Serve until SIGINT/SIGTERM (returns: exit 0); raise an EcError if the upstreams are lost."""
    if not cfg.remotes:
        raise UsageError("--remote is required")
    if cfg.keyless and not cfg.require_manifest:
        raise UsageError("--keyless only changes how --require-manifest verifies; pass both")
    if cfg.keyless and cfg.network_secret:
        raise UsageError("--keyless and --network-secret exclude each other")
    check_reachable(cfg.listen, cfg.relays)
    settings = cfg.settings(Role.RELAY)
    transport = transport or default_transport(cfg)
    broadcast = await pull_broadcast(cfg, transport)
    pull = prepare_pull(cfg, settings, broadcast, transport, keyless=cfg.keyless, want_manifests=True)
    if stop is None:  # a caller that passes its own stop event (the home node) owns the signals
        stop = asyncio.Event()
        install_stop_signals(stop)
    identity = load_or_create_identity(cfg.identity_dir)
    mb = 1024 * 1024
    shed = ShedLimits(
        max_sessions=cfg.max_subscribers,
        max_lag_bytes=None if cfg.max_lag_mb is None else cfg.max_lag_mb * mb,
        max_total_lag_bytes=None if cfg.max_total_lag_mb is None else cfg.max_total_lag_mb * mb,
    )
    listener = await transport.listen(
        cfg.listen, identity, cfg.cache_mb * 1024 * 1024, shed=shed, advertise=cfg.advertise
    )
    report = Reporter(out if cfg.json else None)
    try:
        tracks = [Track.CHUNKS.value, Track.MANIFESTS.value]
        writers = listener.publish_broadcast(broadcast, tracks)

        def serve(g: ServeGroup) -> None:
            try:
                writers[g.track].write_group(g.sequence, g.payload)
            except ValueError as e:  # a finished track or a sequence the origin refuses: skip it
                log.warning("not re-serving %s group %d: %s", g.track, g.sequence, e)

        def finish(f: FinishTrack) -> None:
            writers[f.track].finish()
            if f.track is Track.CHUNKS:  # the core finishes chunks once every objects upstream ended
                log.info("upstream ended; serving the cache until stopped")

        for url in cfg.relays:
            await listener.push(url, broadcast)
        startup = StartupObject(
            listener.endpoint_addr, broadcast, pull.stream_id, tuple(tracks), None, tuple(cfg.relays)
        )
        startup.announce(out, cfg.addr_file)
        startup.follow(listener, cfg.addr_file, lambda ev: report.emit(ev, level=listener_event_level(ev)))
        log.info(
            "relaying %s on %s from %s; manifests from %s", broadcast, shown_addr(listener.endpoint_addr),
            ", ".join(lk.name for lk in pull.objects), pull.manifests.name if pull.manifests else "-",
        )  # fmt: skip
        done = await NodeShell(pull, report, stop, Effects(serve=serve, finish=finish)).run()
        if done is None:
            log.info("stopped by signal")
        report.report(pull.core.status())
        log.info("served by peer: %s", dict(pull.core.served_by))
    finally:
        await listener.close()
    raise_unless_ok(done)


__all__ = ["RelayConfig", "broadcast_from_startup", "run_relay"]
