"""`ec-node relay`: subscribe upstream, re-serve the broadcast to any number of downstream peers.

Order of work: listen, create every track, announce, print the same startup line as
`moq-publish`, then pull: one :class:`PeerLink` per ``--remote`` on ``chunks`` and one on
``manifests``. Every frame goes through :class:`RelayCore`; only its writes reach the tracks. When
every objects upstream has ended the tracks are finished (downstream sees a clean end) but the
node keeps serving its cache to late joiners until SIGINT/SIGTERM.

Keys: with ``--require-manifest`` the relay verifies objects fully, which needs the stream key.
Without ``--network-secret`` that key is derived from the stream id alone (a public stream); a
relay for a private swarm passes the secret, or ``--keyless`` to check manifests and object
metadata only (it then cannot see ciphertext damage; subscribers still can).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from ec_node.errors import UnreachableError, UsageError
from ec_node.integrity.frames import CHUNKS_TRACK, MANIFESTS_TRACK
from ec_node.integrity.keys import derive_stream_key, parse_network_secret, parse_signer_id
from ec_node.integrity.stream_id import validate_stream_id
from ec_node.integrity.verifier import Verifier
from ec_node.pipeline.aio import emit_json, install_stop_signals, write_json_file
from ec_node.pipeline.peers import PeerItem, PeerLink
from ec_node.pipeline.relay_core import RelayCore, RelayStep
from ec_node.transport.addr import MAX_ADDR_TEXT_BYTES, EndpointAddr, parse_endpoint_addr
from ec_node.transport.base import TrackWriter, Transport
from ec_node.transport.identity import load_or_create_identity

log = logging.getLogger(__name__)

STATUS_EVERY_S = 10.0
QUEUE_ITEMS = 32  # frames in flight from all upstreams (each up to a few MB)


@dataclass
class RelayConfig:
    remotes: list[str]
    listen: str = "127.0.0.1:0"
    remote_manifests: str | None = None
    broadcast: str | None = None
    stream_id: str | None = None
    require_manifest: bool = False
    trust_signers: list[str] = field(default_factory=list)
    network_secret: str | None = None
    keyless: bool = False
    identity_dir: Path | None = None
    cache_mb: int = 64
    receive_buffer_mb: int = 32
    addr_file: Path | None = None
    max_peer_rejections: int | None = 16
    stall_s: float = 10.0
    connect_timeout_s: float = 10.0
    reconnect_for_s: float = 30.0
    manifest_timeout_s: float = 30.0


def default_transport(receive_buffer_bytes: int) -> Transport:
    from ec_node.transport.moq_transport import moq_transport

    return moq_transport(receive_buffer_bytes=receive_buffer_bytes)


def broadcast_from_startup(remote: str) -> str:
    """The ``broadcast`` of a ``@PATH`` startup object (what `moq-publish`/`relay` print)."""
    hint = "pass --broadcast (it can only be read from an --remote @PATH startup file)"
    if not remote.startswith("@"):
        raise UsageError(f"no broadcast name: {hint}")
    path = Path(remote[1:])
    try:
        with path.open("rb") as fh:
            data = fh.read(MAX_ADDR_TEXT_BYTES + 1)
    except OSError as e:
        raise UsageError(f"cannot read {path}: {e.strerror or e}") from None
    obj: Any = None
    if len(data) <= MAX_ADDR_TEXT_BYTES:
        text = data.decode("utf-8", "replace")
        for candidate in (text, next((ln for ln in text.splitlines() if ln.strip()), "")):
            try:
                obj = json.loads(candidate)
                break
            except (json.JSONDecodeError, RecursionError):
                continue
    name = obj.get("broadcast") if isinstance(obj, dict) else None
    if not isinstance(name, str) or not name:
        raise UsageError(f"{path} holds no startup object with a broadcast name: {hint}")
    return name


async def run_relay(cfg: RelayConfig, out: TextIO = sys.stdout, transport: Transport | None = None) -> None:
    """Serve until SIGINT/SIGTERM (returns: exit 0); raise an EcError if the upstreams are lost."""
    if not cfg.remotes:
        raise UsageError("--remote is required")
    if cfg.max_peer_rejections is not None and cfg.max_peer_rejections < 0:
        raise UsageError("--max-peer-rejections must be >= 0")
    if cfg.keyless and not cfg.require_manifest:
        raise UsageError("--keyless only changes how --require-manifest verifies; pass both")
    if cfg.keyless and cfg.network_secret:
        raise UsageError("--keyless and --network-secret exclude each other")
    if cfg.trust_signers and not cfg.require_manifest:
        log.warning("--trust-signer has no effect without --require-manifest")
    broadcast = cfg.broadcast or broadcast_from_startup(cfg.remotes[0])
    stream_id = validate_stream_id(cfg.stream_id or broadcast)
    secret = parse_network_secret(cfg.network_secret)
    trusted = [parse_signer_id(s) for s in cfg.trust_signers]
    obj_addrs = [parse_endpoint_addr(r) for r in cfg.remotes]
    man_addr: EndpointAddr | None = None
    if cfg.remote_manifests:
        man_addr = parse_endpoint_addr(cfg.remote_manifests)
    elif cfg.require_manifest:
        man_addr = obj_addrs[0]

    verifier = None
    if cfg.require_manifest:
        key = None if cfg.keyless else derive_stream_key(stream_id, secret)
        verifier = Verifier(stream_id, key, trusted_signers=trusted, max_retained_slots=8192)
    core = RelayCore(stream_id, verifier, max_peer_rejections=cfg.max_peer_rejections)
    tracks = [CHUNKS_TRACK] + ([MANIFESTS_TRACK] if man_addr is not None else [])

    stop = asyncio.Event()
    install_stop_signals(stop)
    transport = transport or default_transport(cfg.receive_buffer_mb * 1024 * 1024)
    identity = load_or_create_identity(cfg.identity_dir)
    listener = await transport.listen(cfg.listen, identity, cfg.cache_mb * 1024 * 1024)
    queue: asyncio.Queue[PeerItem] = asyncio.Queue(QUEUE_ITEMS)

    def link(addr: EndpointAddr, track: str) -> PeerLink:
        return PeerLink(
            transport, addr, broadcast, track, queue, stall_s=cfg.stall_s,
            connect_timeout_s=cfg.connect_timeout_s, reconnect_for_s=cfg.reconnect_for_s,
        )  # fmt: skip

    obj_links = [link(a, CHUNKS_TRACK) for a in obj_addrs]
    man_link = link(man_addr, MANIFESTS_TRACK) if man_addr is not None else None
    try:
        writers = listener.publish_broadcast(broadcast, tracks)
        startup: dict[str, Any] = {
            "endpoint_addr": listener.endpoint_addr.to_json(),
            "broadcast": broadcast,
            "stream_id": stream_id,
            "tracks": tracks,
            "signer_id": None,
        }
        if cfg.addr_file is not None:
            write_json_file(cfg.addr_file, startup)
        emit_json(out, startup)
        log.info(
            "relaying %s (%s) on %s from %s%s", broadcast, ", ".join(tracks), listener.endpoint_addr.to_json(),
            ", ".join(lk.name for lk in obj_links),
            f"; manifests from {man_link.name}" if man_link else "",
        )  # fmt: skip
        for lk in [*obj_links, *([man_link] if man_link else [])]:
            lk.start()
        shell = _Shell(core, writers, queue, stop, obj_links, man_link, cfg)
        await shell.run()
    finally:
        for lk in [*obj_links, *([man_link] if man_link else [])]:
            await lk.close()
        await listener.close()


class _Shell:
    """The relay's event loop: queue items in, core steps applied to the writers."""

    def __init__(
        self,
        core: RelayCore,
        writers: dict[str, TrackWriter],
        queue: asyncio.Queue[PeerItem],
        stop: asyncio.Event,
        obj_links: list[PeerLink],
        man_link: PeerLink | None,
        cfg: RelayConfig,
    ) -> None:
        self.core = core
        self.writers = writers
        self.queue = queue
        self.stop = stop
        self.cfg = cfg
        self.man_link = man_link
        self.man_done = man_link is None
        self.state: dict[int, str] = {i: "running" for i in range(len(obj_links))}  # running|end|gone|dropped
        self.obj_links = obj_links
        self.finished = False

    async def run(self) -> None:
        deadline: float | None = None
        next_status = time.monotonic() + STATUS_EVERY_S
        while not self.stop.is_set():
            wait = STATUS_EVERY_S
            if not self.finished and all(s != "running" for s in self.state.values()):
                if "end" not in self.state.values():
                    why = ", ".join(f"{lk.name}: {self.state[i]}" for i, lk in enumerate(self.obj_links))
                    raise UnreachableError(f"every objects upstream is lost or dropped ({why})")
                waiting = self.core.pending_count > 0 and not self.man_done
                if waiting:
                    # objects that came in last may still get their manifest
                    now = time.monotonic()
                    deadline = deadline or now + self.cfg.manifest_timeout_s
                    if now >= deadline:
                        log.warning("no manifest for %d buffered objects in time; dropped", self.core.pending_count)
                        self.apply(self.core.on_manifests_gone())
                        waiting = False
                    else:
                        wait = min(wait, deadline - now)
                if not waiting:
                    await self.finish()
                    continue
            if self.finished:
                await self.stop.wait()
                break
            item = await self._next(wait)
            if time.monotonic() >= next_status:
                next_status = time.monotonic() + STATUS_EVERY_S
                self.log_status("status")
            if item is not None:
                await self.handle(item)
        log.info("stopped by signal")
        self.log_status("done")

    async def _next(self, timeout: float) -> PeerItem | None:
        get = asyncio.ensure_future(self.queue.get())
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

    def _index(self, item: PeerItem) -> list[int]:
        return [i for i, lk in enumerate(self.obj_links) if lk.name == item.peer and self.state[i] == "running"]

    async def handle(self, item: PeerItem) -> None:
        objects = item.track == CHUNKS_TRACK
        if item.kind == "too_large":
            log.warning("%s from %s: group %d over the size limit, refused", item.track, item.peer, item.sequence)
            if objects:
                step = self.core.on_oversized(item.sequence, item.peer)
                await self.drop_peers(step)
        elif item.kind == "group":
            if objects:
                step = self.core.on_object(item.payload, item.peer)
            else:
                step = self.core.on_manifest(item.payload, item.peer, item.sequence)
            self.apply(step)
            await self.drop_peers(step)
        elif item.kind == "gap":
            log.info("%s from %s: groups %s never arrived", item.track, item.peer, item.detail)
        elif item.kind in ("connected", "stalled"):
            log.info("%s upstream %s %s %s", item.track, item.peer, item.kind, item.detail)
        elif item.kind == "lost":
            log.warning("%s upstream %s lost (reconnecting): %s", item.track, item.peer, item.detail)
        elif item.kind in ("end", "gone"):
            if objects:
                for i in self._index(item)[:1]:
                    self.state[i] = item.kind
            else:
                self.manifests_over(item)
            if item.kind == "end":
                log.info("%s upstream %s ended its track", item.track, item.peer)
            else:
                log.warning("%s upstream %s gone: %s", item.track, item.peer, item.detail)

    def manifests_over(self, item: PeerItem) -> None:
        if self.man_done:
            return
        self.man_done = True
        if item.kind == "gone" and self.core.require_manifest:
            # a verifying relay without manifests can never re-serve another object
            raise UnreachableError(f"manifests upstream {item.peer} is gone: {item.detail}")
        self.apply(self.core.on_manifests_gone())
        if item.kind == "end":
            self.writers[MANIFESTS_TRACK].finish()

    def apply(self, step: RelayStep) -> None:
        for w in step.writes:
            try:
                self.writers[w.track].write_group(w.sequence, w.payload)
            except ValueError as e:  # finished track or a sequence the origin refuses: skip it
                log.warning("not re-serving %s group %d: %s", w.track, w.sequence, e)

    async def drop_peers(self, step: RelayStep) -> None:
        for d in step.dropped_peers:
            log.warning(
                "dropping upstream %s: %d invalid objects (more than --max-peer-rejections %s), last %s",
                d.peer, d.rejections, self.core.max_peer_rejections, d.last_reason,
            )  # fmt: skip
            for i, lk in enumerate(self.obj_links):
                if lk.name == d.peer and self.state[i] == "running":
                    self.state[i] = "dropped"
                    await lk.close()

    async def finish(self) -> None:
        self.finished = True
        for w in self.writers.values():
            w.finish()
        if self.man_link is not None:
            await self.man_link.close()
        self.log_status("upstream ended; serving the cache until stopped")

    def log_status(self, what: str) -> None:
        st = self.core.stats
        log.info(
            "%s: objects in=%d out=%d dup=%d, manifests in=%d out=%d rejected=%d, pending=%d, "
            "rejections=%s by peer=%s, served by=%s",
            what, st.objects_in, st.objects_out, st.duplicates, st.manifests_in, st.manifests_out,
            st.manifests_rejected, self.core.pending_count, dict(st.rejected_by_reason),
            dict(self.core.peer_rejections), dict(self.core.served_by),
        )  # fmt: skip
