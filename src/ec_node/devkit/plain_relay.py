"""A plain MoQ relay made of the ``moq`` module's own origin fan-out: a yardstick and a standard test relay.

It has none of ec-node's pipeline (no verification, no re-sequencing, no Python per group): one bounded
``moq.OriginProducer`` is the *subscribe* origin of an upstream ``moq.Client`` and the *publish* origin
of a ``moq.Server``, so moq-net itself forwards every broadcast the upstream announces, subscribing
upstream only while someone downstream wants a track (moq-transport-notes §3.6). What it adds is what
the notes (§3.7) say a product must fix: a bounded cache, an own accept loop that holds each accepted
session (``Server.serve()`` logs noise on every disconnect), ``cert_fingerprints()`` read before the
first accept, and an upstream pinned by certificate fingerprint exactly as ec-node pins a peer
(:func:`~ec_node.transport.addr.parse_endpoint_addr`: ``{"id", "addrs"}``, ``@PATH`` or a URL).

It prints ec-node's startup object (:class:`~ec_node.pipeline.startup.StartupObject`) once it serves,
so ec-node subscribers and relays dial it like any node::

    python -m ec_node.devkit.plain_relay --remote @publisher.json --listen 127.0.0.1:0 --addr-file relay.json

Limitation (moq-ffi 0.4.18, measured): the origin fan-out cannot relay a track that had already
*finished* upstream when a downstream subscriber first asks for it -- the first subscriber gets one
group reset with CANCEL, later ones an empty track. Live tracks (a ``--realtime`` or tuner publisher)
relay fine, including their end.

Runs until SIGINT/SIGTERM (exit 0); exit 4 when the upstream cannot be reached or its session ends,
exit 2 for bad arguments. Logs (stderr) name each accepted and closed downstream session.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import logging
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import moq

from ec_node.errors import EcError, ExitCode, UnreachableError, UsageError
from ec_node.pipeline.aio import install_stop_signals
from ec_node.pipeline.startup import StartupObject, read_startup_file
from ec_node.transport.addr import EndpointAddr, parse_endpoint_addr
from ec_node.transport.identity import load_or_create_identity
from ec_node.transport.moq_transport import describe_moq_error, start_server

log = logging.getLogger("ec_node.plain_relay")

DEFAULT_TRACKS = ("chunks", "manifests")
_SIDE_ORIGIN_BYTES = 1024 * 1024  # origins nobody publishes into (required by the wiring, kept small)


@dataclass(frozen=True)
class PlainRelayConfig:
    """What the relay needs: one upstream, where to listen, and the cache bound."""

    remote: str  # EndpointAddr JSON, @PATH (a startup file also names the broadcast) or URL
    listen: str = "127.0.0.1:0"
    broadcast: str | None = None  # default: the @PATH startup file's, else the first one announced
    addr_file: Path | None = None
    cache_mb: int = 64
    identity_dir: Path | None = None
    connect_timeout_s: float = 10.0
    announce_timeout_s: float = 10.0


def upstream_urls(addr: EndpointAddr) -> tuple[list[str], list[str] | None]:
    """The URLs to try and the fingerprints to pin, the way ec-node's transport dials ``addr``."""
    if addr.url is not None:
        return [addr.url], None  # a relay with a public certificate: normal TLS
    return [f"moql://{a}" for a in addr.addrs], [addr.id] if addr.id else None


class PlainRelay:
    """The wiring and the accept loop; :meth:`run` serves until ``stop`` is set or the upstream ends."""

    def __init__(self, cfg: PlainRelayConfig, out: TextIO = sys.stdout) -> None:
        if cfg.cache_mb <= 0:
            raise UsageError(f"--cache-mb must be positive, got {cfg.cache_mb}")
        host = cfg.listen.rpartition(":")[0].strip("[]")
        if host in ("0.0.0.0", "::", ""):
            raise UsageError("--listen needs a concrete address (its own is what the startup object advertises)")
        with contextlib.suppress(ValueError):
            if not ipaddress.ip_address(host).is_loopback:
                log.warning("listening on non-loopback %s", host)
        self.cfg = cfg
        self.out = out
        try:
            self.remote = parse_endpoint_addr(cfg.remote)
        except EcError:
            raise
        except Exception as exc:  # the pure parser's own error type (no exit code): a usage error here
            raise UsageError(f"--remote: {exc}") from None
        self.origin = moq.OriginProducer(cache_capacity_bytes=cfg.cache_mb * 1024 * 1024)
        self.sessions: dict[int, moq.Session] = {}
        self.accepted = 0
        self._holders: set[asyncio.Task[None]] = set()  # referenced, or asyncio may drop them

    async def run(self, stop: asyncio.Event) -> None:
        """Dial, listen, announce the startup object, serve; raise UnreachableError if the upstream goes."""
        upstream = await self._dial()
        try:
            broadcast, startup_hint = await self._broadcast()
            identity = load_or_create_identity(self.cfg.identity_dir)
            side = moq.OriginProducer(cache_capacity_bytes=_SIDE_ORIGIN_BYTES)
            server = await start_server(self.cfg.listen, identity, self.origin, side)
            try:
                endpoint = EndpointAddr(id=identity.fingerprint, addrs=(server.local_addr,))
                StartupObject(
                    endpoint,
                    broadcast,
                    startup_hint.stream_id if startup_hint else broadcast,
                    startup_hint.tracks if startup_hint else DEFAULT_TRACKS,
                    startup_hint.signer_id if startup_hint else None,
                ).announce(self.out, self.cfg.addr_file)
                log.info("plain relay for %s on %s from %s", broadcast, server.local_addr, self.cfg.remote)
                await self._serve(server, upstream, stop)
            finally:
                for session in self.sessions.values():
                    with contextlib.suppress(moq.Error):
                        session.shutdown()
                for task in self._holders:
                    task.cancel()
                await asyncio.gather(*self._holders, return_exceptions=True)
                self.sessions.clear()
                await server.__aexit__(None, None, None)
        finally:
            with contextlib.suppress(moq.Error):
                await upstream.__aexit__(None, None, None)

    async def _dial(self) -> moq.Client:
        urls, pins = upstream_urls(self.remote)
        errors: list[str] = []
        for url in urls:
            client = moq.Client(
                url,
                tls_fingerprints=pins,
                reconnect=False,
                subscribe=self.origin,  # what upstream announces lands in the served origin
                publish=moq.OriginProducer(cache_capacity_bytes=_SIDE_ORIGIN_BYTES),
            )
            try:
                await asyncio.wait_for(client.__aenter__(), self.cfg.connect_timeout_s)
                return client
            except TimeoutError:
                errors.append(f"{url}: no answer within {self.cfg.connect_timeout_s:g} s")
            except moq.Error as exc:
                errors.append(f"{url}: {describe_moq_error(exc)}")
            with contextlib.suppress(moq.Error):
                await client.__aexit__(None, None, None)
        raise UnreachableError("cannot connect to upstream: " + "; ".join(errors))

    async def _broadcast(self) -> tuple[str, StartupObject | None]:
        """The broadcast to advertise, once the upstream has announced it (so dialers find it at once)."""
        hint = read_startup_file(Path(self.cfg.remote[1:])) if self.cfg.remote.startswith("@") else None
        name = self.cfg.broadcast or (hint.broadcast if hint else None)
        consumer = self.origin.consume()
        try:
            if name is None:
                async with consumer.announced() as updates:
                    update = await asyncio.wait_for(anext(updates), self.cfg.announce_timeout_s)
                    name = update.prefix
            else:
                waiter = consumer.announced_broadcast(name)
                try:
                    await asyncio.wait_for(waiter.available(), self.cfg.announce_timeout_s)
                finally:
                    waiter.cancel()
        except TimeoutError:
            raise UnreachableError(
                f"upstream announced {'no broadcast' if name is None else repr(name)} "
                f"within {self.cfg.announce_timeout_s:g} s"
            ) from None
        if hint is not None and hint.broadcast != name:
            hint = None  # the startup file describes another broadcast
        return name, hint

    async def _serve(self, server: moq.Server, upstream: moq.Client, stop: asyncio.Event) -> None:
        assert upstream.session is not None
        accept = asyncio.create_task(self._accept_loop(server), name="plain-relay-accept")
        lost = asyncio.create_task(upstream.session.closed(), name="plain-relay-upstream")
        stopped = asyncio.create_task(stop.wait(), name="plain-relay-stop")
        done: set[asyncio.Task[object]] = set()
        try:
            finished, _ = await asyncio.wait({accept, lost, stopped}, return_when=asyncio.FIRST_COMPLETED)
            done = set(finished)
        finally:
            for task in (accept, lost, stopped):
                task.cancel()
            results = await asyncio.gather(accept, lost, stopped, return_exceptions=True)
        if stop.is_set():
            log.info("stopped by signal; %d sessions open, %d accepted in all", len(self.sessions), self.accepted)
            return
        if lost not in done:
            raise EcError(f"the listener stopped accepting: {results[0]!r}")
        reason = results[1]
        why = describe_moq_error(reason) if isinstance(reason, BaseException) else "closed"
        raise UnreachableError(f"upstream session ended: {why}")

    async def _accept_loop(self, server: moq.Server) -> None:
        async for request in server:
            self.accepted += 1
            task = asyncio.create_task(self._hold(request, self.accepted), name=f"plain-relay-session-{self.accepted}")
            self._holders.add(task)
            task.add_done_callback(self._holders.discard)

    async def _hold(self, request: moq.Request, number: int) -> None:
        """Hold the session until it closes (dropping it would close it) and log both ends."""
        try:
            session = await request.accept()
        except moq.Error as exc:
            log.info("session %d: handshake failed: %s", number, describe_moq_error(exc))
            return
        self.sessions[number] = session
        log.info("session %d accepted (%d open)", number, len(self.sessions))
        try:
            await session.closed()
            why = "closed"
        except moq.Error as exc:
            why = describe_moq_error(exc)
        finally:
            self.sessions.pop(number, None)
        log.info("session %d ended: %s (%d open)", number, why, len(self.sessions))


async def run_plain_relay(cfg: PlainRelayConfig, out: TextIO = sys.stdout) -> None:
    """Serve until SIGINT/SIGTERM; raise an EcError (UsageError, UnreachableError) otherwise."""
    stop = asyncio.Event()
    install_stop_signals(stop)
    await PlainRelay(cfg, out).run(stop)


def main(argv: list[str] | None = None) -> int:
    """CLI entry (``python -m ec_node.devkit.plain_relay``); returns the exit code."""
    p = argparse.ArgumentParser(prog="python -m ec_node.devkit.plain_relay", description=__doc__.split("\n")[0])
    p.add_argument("--remote", required=True, help="upstream: EndpointAddr JSON, @STARTUP.json or moql:// URL")
    p.add_argument("--listen", default="127.0.0.1:0", help="HOST:PORT to serve on (default %(default)s)")
    p.add_argument("--broadcast", help="broadcast to advertise (default: from @STARTUP.json, else the first)")
    p.add_argument("--addr-file", type=Path, help="also write the startup JSON here")
    p.add_argument("--cache-mb", type=int, default=64, help="bound of the relay's group cache (default 64)")
    p.add_argument("--identity", type=Path, dest="identity_dir", help="directory keeping the TLS identity")
    p.add_argument("--connect-timeout", type=float, default=10.0)
    p.add_argument("-v", "--verbose", action="store_true", help="log at INFO (default WARNING)")
    args = p.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
        stream=sys.stderr,
    )
    cfg = PlainRelayConfig(
        remote=args.remote, listen=args.listen, broadcast=args.broadcast, addr_file=args.addr_file,
        cache_mb=args.cache_mb, identity_dir=args.identity_dir, connect_timeout_s=args.connect_timeout,
    )  # fmt: skip
    try:
        asyncio.run(run_plain_relay(cfg))
    except EcError as exc:
        log.error("%s", exc)
        return int(exc.code)
    return int(ExitCode.OK)


if __name__ == "__main__":
    sys.exit(main())
