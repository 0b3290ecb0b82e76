"""A plain MoQ relay made of the ``moq`` module's own origin fan-out: a yardstick and a standard test relay.

It has none of ec-node's pipeline (no verification, no re-sequencing, no Python per group): one bounded
``moq.OriginProducer`` carries every broadcast and moq-net itself forwards it, subscribing to the
source only while someone downstream wants a track (moq-transport-notes §3.6). Two modes:

* **pull** (``--remote``): the origin is the *subscribe* origin of an upstream ``moq.Client`` and the
  *publish* origin of a ``moq.Server``, so whatever the upstream announces is served. The upstream is
  pinned by certificate fingerprint exactly as ec-node pins a peer
  (:func:`~ec_node.transport.addr.parse_endpoint_addr`: ``{"id", "addrs"}``, ``@PATH`` or a URL)::

      python -m ec_node.devkit.plain_relay --remote @publisher.json --listen 127.0.0.1:0 --addr-file relay.json

* **accept** (``--accept``): a standard relay that publishers push into, as moq-relay is used
  (interop-and-browsers §4). The origin is both the server's ``publish=`` and ``subscribe=``: a client
  that dials in with ``moq.Client(url, publish=origin)`` and announces a broadcast is carried to every
  client that dials in and subscribes, late joiners included (with ``Subscription(max_age_us=...)`` they
  get the cached history of a live track)::

      python -m ec_node.devkit.plain_relay --accept --listen 127.0.0.1:0 --addr-file relay.json [--jwt-key KEY]

  Broadcast names are the publishers' own, in one namespace shared by all sessions: the URL path of a
  session is checked against its token (below) but does not prefix or scope names, unlike moq-relay
  (where a publisher at ``/anon`` appears as ``anon/<name>`` to a subscriber at ``/``).

What it adds is what the notes (§3.7) say a product must fix: a bounded cache, an own accept loop that
holds each accepted session (``Server.serve()`` logs noise on every disconnect) and
``cert_fingerprints()`` read before the first accept. It prints ec-node's startup object
(:class:`~ec_node.pipeline.startup.StartupObject`: ``endpoint_addr`` = ``{"id": certificate SHA-256,
"addrs": [host:port]}``) once it serves, and writes it to ``--addr-file``. In pull mode it names the
upstream's broadcast, so ec-node subscribers and relays dial it like any node. In accept mode it names
``--broadcast`` if given (advertised, not awaited); otherwise ``broadcast`` and ``stream_id`` are the
empty string and ``tracks`` is empty (StartupObject has no null broadcast): such a file is not a valid
``@PATH`` remote for ec-node, pass its ``endpoint_addr`` and ``--broadcast`` instead.

**JWT** (``--jwt-key FILE``, either mode; needs PyJWT, in the ``test`` extra): the file's exact bytes are
an HS256 secret. Each session must carry ``?jwt=<token>`` in its URL query (``moql://host:port/PATH?jwt=``,
``moqt://`` or ``https://`` alike; the server sees path and query for all three), verified by PyJWT
(HS256 only; ``exp`` honoured when present, as moq-relay does, and the session is closed at ``exp``).
Claims as moq-relay's: ``root`` (the request path must equal it or lie under it; moq-relay also accepts
a path *above* the root, this relay does not), ``put`` and ``get`` (a string or a list of broadcast-name
prefixes relative to ``root``, ``""`` = anything), reduced to the request path as moq-relay does. Then:

* a direction whose reduced list contains ``""`` is granted;
* a direction whose reduced list is empty (claim absent, or no prefix reaches this path) is refused by
  giving the session an empty origin for it (``Request.set_publish`` / ``set_consume``): a refused
  ``get`` sees no broadcast, a refused ``put`` announces into a sink nobody reads (the client is not told);
* **per-broadcast scopes cannot be enforced**: moq 0.5.1's ``Request`` can only swap a session's whole
  publish or consume origin, and an origin cannot be filtered, re-rooted or aliased into another without
  copying every group in Python. A token whose reduced ``put`` or ``get`` is narrower than the whole
  namespace (e.g. ``put: ["alice"]``) is therefore rejected (403) rather than over-granted;
* a token granting nothing at this path, a missing, malformed, wrongly signed or expired token, or a
  path outside ``root`` is rejected (401).

A rejected client's connect *succeeds*; a few ms later its ``session.closed()`` raises
``moq.Error.Protocol`` (SESSION scope, code 2, kind UNAUTHORIZED; ``moq.is_auth(exc)`` is true) for 401
and 403 alike, and so does the close at ``exp``. Each rejection is logged as one line naming the
reason and the path, never the query. Tokens for different roots on one relay are not isolated from
each other (one namespace, above): run one relay per trust domain.

Limitation (moq-ffi 0.4.18, measured): the origin fan-out cannot relay a track that had already
*finished* upstream when a downstream subscriber first asks for it -- the first subscriber gets one
group reset with CANCEL, later ones an empty track. Live tracks (a ``--realtime`` or tuner publisher)
relay fine, including their end.

Runs until SIGINT/SIGTERM (exit 0); exit 4 when the upstream cannot be reached or its session ends,
exit 2 for bad arguments (and an unreadable ``--jwt-key``). Logs (stderr) name each accepted, rejected
and closed downstream session, and in accept mode each broadcast announced or retracted.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import logging
import stat
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import parse_qsl

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
JWT_ALGORITHM = "HS256"
MAX_JWT_KEY_BYTES = 64 * 1024
# The session close code the peer reads as MoqProtocolKind.UNAUTHORIZED (measured: it is what
# Request.reject(401) and reject(403) send; Session.cancel(2) arrives the same way, so moq.is_auth holds).
_UNAUTHORIZED_CLOSE = 2


@dataclass(frozen=True)
class PlainRelayConfig:
    """What the relay needs: an upstream (pull mode) or none (accept mode), where to listen, the cache bound."""

    remote: str | None = None  # EndpointAddr JSON, @PATH (a startup file also names the broadcast) or URL;
    # None: accept mode (publishers dial in and announce)
    listen: str = "127.0.0.1:0"
    broadcast: str | None = None  # pull: default the @PATH file's, else the first announced; accept: advertised
    addr_file: Path | None = None
    cache_mb: int = 64
    identity_dir: Path | None = None
    connect_timeout_s: float = 10.0
    announce_timeout_s: float = 10.0
    jwt_key: Path | None = None  # HS256 secret file: every session must carry a valid ?jwt=


def _no_query(text: str) -> str:
    """``text`` without any URL query (which may hold a token), for logs and errors."""
    return text.split("?", 1)[0] + ("?<redacted>" if "?" in text else "")


def upstream_urls(addr: EndpointAddr) -> tuple[list[str], list[str] | None]:
    """The URLs to try and the fingerprints to pin, the way ec-node's transport dials ``addr``."""
    if addr.url is not None:
        return [addr.url], None  # a relay with a public certificate: normal TLS
    if not addr.id:
        return [f"moql://{a}" for a in addr.addrs], None
    return [f"moql://{a}" for a in addr.addrs], list(addr.cert_sha256) or [addr.id]


# --- JWT (moq-relay style claims), pure -----------------------------------------------------------------


class AuthRejected(Exception):
    """A session's token does not let it in: ``code`` (401/403) goes to ``Request.reject``; ``reason`` is
    safe to log (it never contains the token)."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


@dataclass(frozen=True)
class Grant:
    """What a verified token lets one session do on this relay (all-or-nothing per direction)."""

    publish: bool  # may announce broadcasts into the relay (claim ``put``)
    subscribe: bool  # may see and subscribe to the relay's broadcasts (claim ``get``)
    expires_at: float | None  # unix time of ``exp``: the session is closed then


def _norm_path(path: str) -> str:
    """A path the way moq-net compares them: no leading, trailing or doubled slashes."""
    return "/".join(part for part in path.split("/") if part)


def _claim_prefixes(claims: dict[str, Any], name: str) -> list[str]:
    value = claims.get(name, [])
    if isinstance(value, str):  # moq-token accepts one string or a list
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise AuthRejected(401, f"claim {name!r} is not a string or a list of strings")
    return [_norm_path(v) for v in value]


def _reduce(prefixes: list[str], suffix: str) -> list[str]:
    """Prefixes relative to ``root`` made relative to the request path ``root/suffix`` (moq-relay's rule):
    one the path lies under becomes ``""`` (anything), one under the path keeps its remainder, others drop."""
    out: list[str] = []
    for p in prefixes:
        if not suffix:
            out.append(p)
        elif p == suffix or suffix.startswith(p + "/") or not p:
            out.append("")
        elif p.startswith(suffix + "/"):
            out.append(p[len(suffix) + 1 :])
    return out


def _jwt_from_query(query: str | None) -> str | None:
    token = None
    for key, value in parse_qsl(query or "", keep_blank_values=False):
        if key == "jwt":
            token = value  # the last non-empty one, as moq-relay reads it
    return token


def verify_request(secret: bytes, path: str, query: str | None) -> Grant:
    """The grant for a session asking for ``path`` with URL ``query``; AuthRejected if it may not come in."""
    import jwt  # PyJWT: imported here so the relay runs without it when no --jwt-key is given

    token = _jwt_from_query(query)
    if token is None:
        raise AuthRejected(401, "no jwt in the URL query")
    try:
        claims = jwt.decode(
            token,
            secret,
            algorithms=[JWT_ALGORITHM],
            options={"verify_signature": True, "verify_exp": True},
            leeway=0,
        )
    except jwt.ExpiredSignatureError:
        raise AuthRejected(401, "token expired") from None
    except jwt.InvalidSignatureError:
        raise AuthRejected(401, "token signature does not verify") from None
    except jwt.InvalidAlgorithmError:
        raise AuthRejected(401, f"token algorithm is not {JWT_ALGORITHM}") from None
    except jwt.InvalidTokenError as exc:  # malformed, bad iat/nbf/aud, ...: the class name, never the text
        raise AuthRejected(401, f"invalid token ({type(exc).__name__})") from None
    if not isinstance(claims, dict):
        raise AuthRejected(401, "token payload is not an object")
    exp = claims.get("exp")  # PyJWT has checked it is a number in the future, if present
    root_claim = claims.get("root", "")
    if not isinstance(root_claim, str):
        raise AuthRejected(401, "claim 'root' is not a string")
    root, conn = _norm_path(root_claim), _norm_path(path)
    if root and conn != root and not conn.startswith(root + "/"):
        raise AuthRejected(401, f"path {conn!r} is outside the token's root {root!r}")
    suffix = conn[len(root) :].lstrip("/")
    put = _reduce(_claim_prefixes(claims, "put"), suffix)
    get = _reduce(_claim_prefixes(claims, "get"), suffix)
    if not put and not get:
        raise AuthRejected(401, f"token grants neither put nor get at path {conn!r}")
    for name, prefixes in (("put", put), ("get", get)):
        if prefixes and "" not in prefixes:
            raise AuthRejected(
                403, f"{name} {sorted(prefixes)} is narrower than the relay can enforce (per-broadcast scopes)"
            )
    return Grant(publish="" in put, subscribe="" in get, expires_at=float(exp) if exp is not None else None)


def make_token(
    secret: bytes,
    *,
    root: str = "",
    put: list[str] | None = None,
    get: list[str] | None = None,
    ttl_s: float = 3600,
) -> str:
    """An HS256 token with moq-relay's claims (``root``, ``put``, ``get``, ``iat``, ``exp`` = now + ``ttl_s``).

    ``put``/``get`` None leaves the claim out (no permission); ``[""]`` allows anything. A negative
    ``ttl_s`` makes an already expired token (for tests)."""
    import jwt

    now = time.time()
    claims: dict[str, Any] = {"iat": int(now), "exp": int(now + ttl_s)}
    if root:
        claims["root"] = root
    if put is not None:
        claims["put"] = list(put)
    if get is not None:
        claims["get"] = list(get)
    return str(jwt.encode(claims, secret, algorithm=JWT_ALGORITHM))


def load_jwt_key(path: Path) -> bytes:
    """The HS256 secret: the file's exact bytes. UsageError if unreadable, empty or PyJWT is missing."""
    try:
        import jwt  # noqa: F401  (fail at start, not at the first session)
    except ImportError:
        raise UsageError("--jwt-key needs PyJWT (pip install PyJWT; it is in ec-node's test extra)") from None
    try:
        with path.open("rb") as fh:
            secret = fh.read(MAX_JWT_KEY_BYTES + 1)
            mode = path.stat().st_mode
    except OSError as exc:
        raise UsageError(f"--jwt-key {path}: {exc.strerror or exc}") from None
    if not secret:
        raise UsageError(f"--jwt-key {path} is empty")
    if len(secret) > MAX_JWT_KEY_BYTES:
        raise UsageError(f"--jwt-key {path} is larger than {MAX_JWT_KEY_BYTES} bytes, not a secret")
    if mode & (stat.S_IRGRP | stat.S_IROTH):
        log.warning("--jwt-key %s is readable by others (chmod 600 it)", path)
    if len(secret) < 32:
        log.warning("--jwt-key %s holds %d bytes; HS256 wants at least 32", path, len(secret))
    return secret


# --- the relay -------------------------------------------------------------------------------------------


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
        self.remote: EndpointAddr | None = None
        if cfg.remote is not None:
            try:
                self.remote = parse_endpoint_addr(cfg.remote)
            except EcError:
                raise
            except Exception as exc:  # the pure parser's own error type (no exit code): a usage error here
                raise UsageError(f"--remote: {exc}") from None
        self.secret = load_jwt_key(cfg.jwt_key) if cfg.jwt_key is not None else None
        self.origin = moq.OriginProducer(cache_capacity_bytes=cfg.cache_mb * 1024 * 1024)
        # nobody ever writes into _nothing (served to sessions refused ``get``); nobody ever reads _sink
        # (where sessions refused ``put``, and pull mode's downstream sessions, announce)
        self._nothing = moq.OriginProducer(cache_capacity_bytes=_SIDE_ORIGIN_BYTES)
        self._sink = moq.OriginProducer(cache_capacity_bytes=_SIDE_ORIGIN_BYTES)
        self.sessions: dict[int, moq.Session] = {}
        self.accepted = 0  # requests taken from the listener
        self.rejected = 0
        self._holders: set[asyncio.Task[None]] = set()  # referenced, or asyncio may drop them

    async def run(self, stop: asyncio.Event) -> None:
        """Dial (pull mode), listen, announce the startup object, serve; UnreachableError if the upstream goes."""
        upstream = await self._dial() if self.remote is not None else None
        try:
            if upstream is not None:
                broadcast, startup_hint = await self._broadcast()
            else:
                broadcast, startup_hint = self.cfg.broadcast or "", None
            identity = load_or_create_identity(self.cfg.identity_dir)
            consume = self._sink if upstream is not None else self.origin
            server = await start_server(self.cfg.listen, identity, self.origin, consume)
            try:
                endpoint = EndpointAddr(
                    id=identity.node_id, addrs=(server.local_addr,), cert_sha256=identity.cert_sha256
                )
                StartupObject(
                    endpoint,
                    broadcast,
                    startup_hint.stream_id if startup_hint else broadcast,
                    startup_hint.tracks if startup_hint else (DEFAULT_TRACKS if broadcast else ()),
                    startup_hint.signer_id if startup_hint else None,
                ).announce(self.out, self.cfg.addr_file)
                auth = "jwt" if self.secret is not None else "open"
                if upstream is not None:
                    log.info(
                        "plain relay (%s) for %s on %s from %s",
                        auth,
                        broadcast,
                        server.local_addr,
                        _no_query(self.cfg.remote or ""),
                    )
                else:
                    log.info("plain relay (%s) accepting publishers on %s", auth, server.local_addr)
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
            if upstream is not None:
                with contextlib.suppress(moq.Error):
                    await upstream.__aexit__(None, None, None)

    async def _dial(self) -> moq.Client:
        assert self.remote is not None
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
                errors.append(f"{_no_query(url)}: no answer within {self.cfg.connect_timeout_s:g} s")
            except moq.Error as exc:
                errors.append(f"{_no_query(url)}: {describe_moq_error(exc)}")
            with contextlib.suppress(moq.Error):
                await client.__aexit__(None, None, None)
        raise UnreachableError("cannot connect to upstream: " + "; ".join(errors))

    async def _broadcast(self) -> tuple[str, StartupObject | None]:
        """The broadcast to advertise, once the upstream has announced it (so dialers find it at once)."""
        remote = self.cfg.remote or ""
        hint = read_startup_file(Path(remote[1:])) if remote.startswith("@") else None
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

    async def _serve(self, server: moq.Server, upstream: moq.Client | None, stop: asyncio.Event) -> None:
        accept = asyncio.create_task(self._accept_loop(server), name="plain-relay-accept")
        stopped = asyncio.create_task(stop.wait(), name="plain-relay-stop")
        lost: asyncio.Task[None] | None = None
        if upstream is not None:
            assert upstream.session is not None
            lost = asyncio.create_task(upstream.session.closed(), name="plain-relay-upstream")
        watch = asyncio.create_task(self._watch_announcements(), name="plain-relay-announcements")
        waited: list[asyncio.Task[Any]] = [accept, stopped] + ([lost] if lost is not None else [])
        done: set[asyncio.Task[Any]] = set()
        try:
            finished, _ = await asyncio.wait(waited, return_when=asyncio.FIRST_COMPLETED)
            done = set(finished)
        finally:
            for task in (*waited, watch):
                task.cancel()
            results = await asyncio.gather(*waited, return_exceptions=True)
            await asyncio.gather(watch, return_exceptions=True)
        if stop.is_set():
            log.info(
                "stopped by signal; %d sessions open, %d requests in all, %d rejected",
                len(self.sessions), self.accepted, self.rejected,
            )  # fmt: skip
            return
        if lost is None or lost not in done:
            raise EcError(f"the listener stopped accepting: {results[0]!r}")
        reason = results[2]
        why = describe_moq_error(reason) if isinstance(reason, BaseException) else "closed"
        raise UnreachableError(f"upstream session ended: {why}")

    async def _watch_announcements(self) -> None:
        """Log each broadcast that appears in (or leaves) the served origin."""
        try:
            async with self.origin.consume().announced() as updates:
                async for update in updates:
                    log.info("broadcast %r %s", update.prefix, "announced" if update.active else "retracted")
        except moq.Error as exc:
            log.info("announcement log stopped: %s", describe_moq_error(exc))

    async def _accept_loop(self, server: moq.Server) -> None:
        async for request in server:
            self.accepted += 1
            task = asyncio.create_task(self._hold(request, self.accepted), name=f"plain-relay-session-{self.accepted}")
            self._holders.add(task)
            task.add_done_callback(self._holders.discard)

    async def _admit(self, request: moq.Request, number: int) -> Grant | None:
        """Check the token (if the relay has a key) and wire the refused directions; None when rejected."""
        if self.secret is None:
            return Grant(publish=True, subscribe=True, expires_at=None)
        try:
            grant = verify_request(self.secret, request.path, request.query)
        except AuthRejected as exc:
            self.rejected += 1
            # the reason names no token, and the query (which holds it) is never logged
            log.warning("session %d rejected (%d): %s; path %r, query withheld", number, exc.code, exc.reason,
                        request.path)  # fmt: skip
            try:
                await request.reject(exc.code)
            except moq.Error as err:
                log.info("session %d: reject failed: %s", number, describe_moq_error(err))
            return None
        if not grant.subscribe:
            request.set_publish(self._nothing)
        if not grant.publish:
            request.set_consume(self._sink)
        return grant

    async def _hold(self, request: moq.Request, number: int) -> None:
        """Hold the session until it closes (dropping it would close it) and log both ends."""
        grant = await self._admit(request, number)
        if grant is None:
            return
        try:
            session = await request.accept()
        except moq.Error as exc:
            log.info("session %d: handshake failed: %s", number, describe_moq_error(exc))
            return
        self.sessions[number] = session
        rights = "/".join(r for r, ok in (("put", grant.publish), ("get", grant.subscribe)) if ok)
        log.info("session %d accepted at %r, %s (%d open)", number, request.path, rights, len(self.sessions))
        closed = asyncio.ensure_future(session.closed())
        try:
            timeout = None if grant.expires_at is None else max(0.0, grant.expires_at - time.time())
            await asyncio.wait({closed}, timeout=timeout)
            if not closed.done():  # the token's exp: moq-relay ends the session then too
                log.info("session %d: token expired, closing", number)
                session.cancel(_UNAUTHORIZED_CLOSE)
            await closed
            why = "closed"
        except moq.Error as exc:
            why = describe_moq_error(exc)
        finally:
            closed.cancel()
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
    mode = p.add_mutually_exclusive_group(required=True)
    mode.add_argument("--remote", help="pull mode: upstream EndpointAddr JSON, @STARTUP.json or moql:// URL")
    mode.add_argument("--accept", action="store_true", help="accept mode: publishers dial in and announce")
    p.add_argument("--listen", default="127.0.0.1:0", help="HOST:PORT to serve on (default %(default)s)")
    p.add_argument("--broadcast", help="broadcast to advertise (pull default: from @STARTUP.json, else the first)")
    p.add_argument("--addr-file", type=Path, help="also write the startup JSON here")
    p.add_argument("--cache-mb", type=int, default=64, help="bound of the relay's group cache (default 64)")
    p.add_argument("--identity", type=Path, dest="identity_dir", help="directory keeping the TLS identity")
    p.add_argument("--connect-timeout", type=float, default=10.0)
    p.add_argument("--jwt-key", type=Path, help="HS256 secret file: sessions need a valid ?jwt= (moq-relay claims)")
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
        jwt_key=args.jwt_key,
    )  # fmt: skip
    try:
        asyncio.run(run_plain_relay(cfg))
    except EcError as exc:
        log.error("%s", exc)
        return int(exc.code)
    return int(ExitCode.OK)


if __name__ == "__main__":
    sys.exit(main())
