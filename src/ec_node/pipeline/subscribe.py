"""`ec-node moq-subscribe`: objects from one or more peers, manifests from another, verified HLS out.

A thin shell: :func:`~ec_node.pipeline.node_shell.prepare_pull` builds the node core in the
subscriber role and its links; the only effect of its own is writing the segments the core
releases (and saying so, with the latency from arrival to disk). It never writes a byte the core
did not release.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from ec_node.errors import ExitCode
from ec_node.node.events import WriteSegment
from ec_node.node.settings import Role
from ec_node.pipeline.aio import install_stop_signals, rss_mb
from ec_node.pipeline.channel_output import ChannelOutput
from ec_node.pipeline.hls import DEFAULT_HLS_WINDOW
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
from ec_node.serve.server import WatchServer
from ec_node.serve.state import WatchState
from ec_node.transport.addr import parse_host_port
from ec_node.transport.base import Transport
from ec_node.ts.chunker import measure_duration_ms

log = logging.getLogger(__name__)


@dataclass
class SubscribeConfig(PullConfig):
    """`moq-subscribe`'s flags: what to pull (shared with the relay) and where HLS goes."""

    subscribe_manifests: bool = False
    max_invalid: int | None = None
    stop_after: int | None = None
    output_dir: Path = Path("hls")
    hls_window: int = DEFAULT_HLS_WINDOW
    http: str | None = None  # HOST:PORT of the watch server, or None
    browser_rendition: str = "auto"  # auto | always | off


async def run_subscribe(
    cfg: SubscribeConfig,
    out: TextIO = sys.stdout,
    transport: Transport | None = None,
    stop: asyncio.Event | None = None,
) -> None:
    """Run until --stop-after, the stream's end, or a failure (raised as an EcError with its exit code)."""
    if cfg.require_manifest and not cfg.subscribe_manifests:
        log.info("--require-manifest implies --subscribe-manifests")
    settings = cfg.settings(Role.SUBSCRIBER, max_invalid=cfg.max_invalid, stop_after=cfg.stop_after)
    transport = transport or default_transport(cfg)
    broadcast = await pull_broadcast(cfg, transport)
    pull = prepare_pull(
        cfg,
        settings,
        broadcast,
        transport,
        want_manifests=cfg.subscribe_manifests or cfg.require_manifest,
        measure=measure_duration_ms,
    )
    http = parse_host_port(cfg.http, "--http", any_port=True) if cfg.http else None
    watch = WatchServer(WatchState(), cfg.output_dir) if http else None
    report = Reporter(out if cfg.json else None, tap=watch.on_event if watch else None)
    output = ChannelOutput(cfg.output_dir, window=cfg.hls_window, chunk_ms=cfg.chunk_ms,
                           rendition=cfg.browser_rendition, emit=report.emit)  # fmt: skip
    try:
        if watch is not None and http is not None:
            url = await watch.start(*http)
            sys.stderr.write(f"ec-node: watch at {url}/  (HLS {url}/hls/master.m3u8, tuner {url}/discover.json)\n")
            report.emit({"event": "http", "url": url + "/"})

        def write(seg: WriteSegment) -> None:
            output.write(seg.chunk_index, seg.data, seg.duration_ms, seg.received_at)

        if stop is None:  # a caller that passes its own stop event (the home node) owns the signals
            stop = asyncio.Event()
            install_stop_signals(stop)
        report.emit({"event": "subscribed", "broadcast": broadcast, "stream_id": pull.stream_id,
                     "objects_peers": [lk.name for lk in pull.objects],
                     "manifests_peer": pull.manifests.name if pull.manifests else None})  # fmt: skip
        done = await NodeShell(pull, report, stop, Effects(write_segment=write)).run()
        code, reason = (ExitCode.OK, "stopped by signal") if done is None else (done.code, done.reason)
        await output.close()
        st = pull.core.status()
        report.emit({"event": "end", "exit_code": int(code), "reason": reason, "segments": st.segments,
                     "missing": st.missing, "rejected": st.rejected, "discarded": st.dropped,
                     "peers_dropped": st.peers_dropped, "upstream_faults": st.upstream_faults,
                     "manifests": st.manifests, "rss_mb": rss_mb()})  # fmt: skip
        log.info("done: %s (%d segments, %d rejected)", reason, st.segments, st.rejected)
    finally:
        output.release()
        if watch is not None:
            await watch.stop()
    raise_unless_ok(done)


__all__ = ["SubscribeConfig", "run_subscribe"]
