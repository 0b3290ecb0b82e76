"""The home node's asyncio shell: the plan's actions carried out as pipeline tasks in one process.

Per channel (:class:`ChannelRun`) the roles run as tasks of the existing entry points, each with
the channel's own stop event and an :class:`~ec_node.home.status.EventSink` as its ``out``:
the publisher (``run_publish``: leader = signed manifests, objects = chunks, both = one
publisher) starts first; once it has printed its startup line the relay (``run_relay``, pulling
from ``remotes`` or the local publisher) and then the watcher (``run_subscribe``, pulling from the
local relay, else the local publisher, else ``remotes``; always verifying) start. A task that
fails stops its channel's other tasks; the plan decides when the channel runs again. Nothing a
channel does stops another: its exceptions end its own tasks only.

The node owns the signals: SIGINT/SIGTERM stop every channel (each gets ``STOP_GRACE_S`` to
finish its tracks, then is cancelled), SIGHUP re-reads the config and applies it
(:meth:`~ec_node.home.plan.Plan.reload`); a config that no longer validates is refused with one
line and the node keeps running the old one.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO, cast

from ec_node.errors import ConfigError, EcError, OutputError, TunerBusyError, UnreachableError
from ec_node.home.config import ChannelSpec, ConfigFileError, NodeConfig, parse_config, with_lineup
from ec_node.home.plan import Action, Outcome, Plan, Start, Stop
from ec_node.home.status import Board, ChannelStatus, EventSink, StatusServer
from ec_node.pipeline.aio import emit_json
from ec_node.transport.addr import parse_host_port

log = logging.getLogger(__name__)

STOP_GRACE_S = 10.0  # a channel's tasks get this long to finish their tracks before they are cancelled
#: pipeline events the node passes on (``--json``), tagged with their channel and role
FORWARDED = frozenset({"segment", "rejected", "gap", "untrusted_signer", "peer_dropped"})
FILE_LINGER_MS = 10_000  # a file channel keeps serving this long after its input ends (its watcher catches up)


def read_config(path: Path) -> NodeConfig:
    """Read and validate the config file (ConfigFileError, exit 2, for a missing or bad one)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigFileError(
            f"{path}: no such config file (write an example with: ec-node node --init -o {path})"
        ) from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigFileError(f"{path}: cannot read the config: {getattr(e, 'strerror', None) or e}") from None
    return parse_config(text, path.absolute())


def query_device(cfg: NodeConfig) -> tuple[int | None, list[str] | None]:
    """Ask the tuner what the config leaves open: its tuner count, its lineup (blocking; UnreachableError)."""
    if cfg.device is None or not cfg.uses_tuner:
        return cfg.tuners, None
    from ec_node.hdhr.client import HdhrClient

    client = HdhrClient(cfg.device)
    tuners = cfg.tuners
    if tuners is None:
        try:
            tuners = client.discover().tuner_count
        except UnreachableError as e:
            raise UnreachableError(f"{e} (set [tuner] tuners = N to start without asking it)") from None
        if tuners is None:
            log.warning("%s does not say how many tuners it has; assuming 1 (set [tuner] tuners = N)", cfg.device)
            tuners = 1
    lineup = [e.guide_number for e in client.lineup()] if cfg.lineup_all else None
    return tuners, lineup


def load_signers(cfg: NodeConfig) -> dict[Path, str]:
    """The signer id of every leader's key (KeyFileError, exit 6, for a missing or unusable one)."""
    from ec_node.integrity.signer import Signer

    out: dict[Path, str] = {}
    for c in cfg.channels:
        if "leader" in c.roles and c.signing_key is not None and c.signing_key not in out:
            out[c.signing_key] = Signer.load(c.signing_key).signer_id
    return out


@dataclass
class NodeOptions:
    """How `ec-node node` was started."""

    config: Path
    json: bool = False  # the node's events as JSON lines on ``out``
    live: bool = False  # the live table on stderr (a terminal)


class ChannelRun:
    """One run of one channel's tasks, until they end, fail or are stopped."""

    def __init__(
        self, spec: ChannelSpec, status: ChannelStatus, signers: dict[Path, str], emit: Callable[..., None]
    ) -> None:
        self.spec = spec
        self.status = status
        self.signers = signers
        self.emit = emit
        self.stop = asyncio.Event()
        self.stopping = False
        self.tasks: dict[str, asyncio.Task[None]] = {}

    def request_stop(self) -> None:
        """Ask every task to finish (tracks finished, sessions closed)."""
        self.stopping = True
        self.stop.set()

    def _sink(self, role: str, startup: asyncio.Future[dict[str, Any]] | None = None) -> TextIO:
        def on_event(ev: dict[str, Any]) -> None:
            if startup is not None and not startup.done() and "endpoint_addr" in ev and "event" not in ev:
                startup.set_result(ev)
            if self.status.apply(role, ev) is not None:
                self.emit({"event": "live", "channel": self.spec.name, "role": role})
            kind = ev.get("event")
            if kind in FORWARDED:  # (the pipeline logs these itself: no second log line)
                self.emit({**ev, "channel": self.spec.name, "role": role}, logging.DEBUG)

        return cast(TextIO, EventSink(on_event, f"channel {self.spec.name} {role}"))

    async def run(self) -> tuple[Outcome, str | None]:
        """Run the roles; how it ended, and the error's one line if it failed."""
        s = self.spec
        self.status.new_run()
        try:
            s.dir.mkdir(parents=True, exist_ok=True)
            pub = await self._start("publisher", self._publish) if s.publishes else None
            if s.publishes and pub is None:
                return await self._finish()
            relay = await self._start("relay", lambda st: self._relay(st, pub)) if "relay" in s.roles else None
            if "relay" in s.roles and relay is None:
                return await self._finish()
            if "watch" in s.roles:
                self._spawn("watch", self._watch(pub, relay))
            return await self._finish()
        except asyncio.CancelledError:
            await self._cancel_all()
            raise
        except Exception as e:  # a mistake setting up this channel: its own fault only
            await self._cancel_all()
            return self._outcome(e)

    # -- roles ------------------------------------------------------------------------------------

    def _spawn(self, role: str, coro: Any) -> None:
        self.tasks[role] = asyncio.create_task(coro, name=f"{self.spec.name}/{role}")

    async def _start(self, role: str, make: Callable[[TextIO], Any]) -> dict[str, Any] | None:
        """Start ``role`` and wait for its startup line; None if it ended (or the run stopped) first."""
        startup: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._spawn(role, make(self._sink(role, startup)))
        stopper = asyncio.ensure_future(self.stop.wait())
        try:
            waits: set[asyncio.Future[Any]] = {startup, self.tasks[role], stopper}
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopper.cancel()
        return startup.result() if startup.done() and not self.tasks[role].done() else None

    def _url_peers(self) -> Any:
        from ec_node.transport.relay_auth import UrlPeerOptions, load_jwt

        s = self.spec
        return UrlPeerOptions(s.tls_fingerprints, s.tls_ca, load_jwt(s.jwt_file) if s.jwt_file else None)

    def _publish(self, sink: TextIO) -> Any:
        from ec_node.pipeline.publish import PublishConfig, run_publish

        s = self.spec
        cfg = PublishConfig(
            input=str(s.source),
            realtime=s.realtime and not s.uses_tuner,  # a tuner is real time by itself
            listen=s.listen,
            advertise=s.advertise,
            identity_dir=s.identity,
            signing_key=s.signing_key if "leader" in s.roles else None,
            publish_manifests="leader" in s.roles,
            publish_chunks="objects" in s.roles,
            addr_file=s.dir / "publisher.json",
            linger_ms=0 if s.uses_tuner else FILE_LINGER_MS,
            cache_mb=s.cache_mb,
            json=True,
            relays=list(s.push),
            url_peers=self._url_peers(),
        )
        return run_publish(cfg, out=sink, stop=self.stop)

    def _trust(self) -> list[str]:
        s = self.spec
        if s.trust_signers:
            return list(s.trust_signers)
        if "leader" in s.roles and s.signing_key is not None:
            return [self.signers[s.signing_key]]
        return []

    def _sources(self, objects_from: dict[str, Any] | None, pub: dict[str, Any] | None) -> dict[str, Any]:
        """``remotes``, ``remote_manifests`` and ``broadcast`` for a puller of this channel.

        Objects come from ``objects_from`` (a local node's startup line) or else the configured
        ``remotes``; manifests from that same node if it serves them, else ``remote_manifests``,
        else the local leader, else the first remote.
        """
        s = self.spec

        def tracks(node: dict[str, Any] | None) -> list[str]:
            return list(node.get("tracks") or []) if node is not None else []

        remotes = [json.dumps(objects_from["endpoint_addr"])] if objects_from is not None else list(s.remotes)
        manifests: str | None = None
        if "manifests" in tracks(objects_from):
            manifests = None  # the same node
        elif s.remote_manifests:
            manifests = s.remote_manifests
        elif pub is not None and "manifests" in tracks(pub):
            manifests = json.dumps(pub["endpoint_addr"])
        elif objects_from is not None and s.remotes:
            manifests = s.remotes[0]
        broadcast = (objects_from or pub or {}).get("broadcast")
        return {"remotes": remotes, "remote_manifests": manifests, "broadcast": broadcast}

    def _relay(self, sink: TextIO, pub: dict[str, Any] | None) -> Any:
        from ec_node.pipeline.relay import RelayConfig, run_relay

        s = self.spec
        local = pub if pub is not None and not s.remotes and "chunks" in (pub.get("tracks") or []) else None
        cfg = RelayConfig(
            **self._sources(local, pub),
            require_manifest=True,
            trust_signers=self._trust(),
            json=True,
            listen=s.relay_listen,
            advertise=s.relay_advertise,
            identity_dir=s.relay_identity,
            cache_mb=s.cache_mb,
            addr_file=s.dir / "relay.json",
            relays=[] if s.publishes else list(s.push),
            url_peers=self._url_peers(),
        )
        return run_relay(cfg, out=sink, stop=self.stop)

    def _watch(self, pub: dict[str, Any] | None, relay: dict[str, Any] | None) -> Any:
        from ec_node.pipeline.hls import DEFAULT_HLS_WINDOW
        from ec_node.pipeline.subscribe import SubscribeConfig, run_subscribe

        s = self.spec
        local = relay or (pub if pub is not None and "chunks" in (pub.get("tracks") or []) else None)
        cfg = SubscribeConfig(
            **self._sources(local, pub),
            subscribe_manifests=True,
            require_manifest=True,
            trust_signers=self._trust(),
            json=True,
            output_dir=s.output_dir,
            hls_window=DEFAULT_HLS_WINDOW if s.hls_window is None else s.hls_window,
            http=s.watch_http,
            url_peers=self._url_peers(),
        )
        return run_subscribe(cfg, out=self._sink("watch"), stop=self.stop)

    # -- ending -----------------------------------------------------------------------------------

    async def _finish(self) -> tuple[Outcome, str | None]:
        """Wait until the run ends: a task failed, the tuner's publisher ended, all ended, or a stop."""
        first_error: BaseException | None = None
        pending: set[asyncio.Future[Any]] = set(self.tasks.values())
        stopper = asyncio.ensure_future(self.stop.wait())
        try:
            while pending and not self.stop.is_set():
                done, pending = await asyncio.wait(pending | {stopper}, return_when=asyncio.FIRST_COMPLETED)
                pending.discard(stopper)
                for t in done:
                    if t is stopper:
                        continue
                    exc = t.exception()
                    if exc is not None and first_error is None:
                        first_error = exc
                if first_error is not None or self._tuner_publisher_ended():
                    self.stop.set()
        finally:
            stopper.cancel()
        await self._wind_down()
        if self.stopping:
            return Outcome.STOPPED, None
        if first_error is not None:
            return self._outcome(first_error)
        return Outcome.OK, None

    def _tuner_publisher_ended(self) -> bool:
        t = self.tasks.get("publisher")
        return self.spec.uses_tuner and t is not None and t.done()

    async def _wind_down(self) -> None:
        """Let every task finish after the stop; cancel what is still running after the grace."""
        self.stop.set()
        tasks = [t for t in self.tasks.values() if not t.done()]
        if tasks:
            _, late = await asyncio.wait(tasks, timeout=STOP_GRACE_S)
            if late:
                log.warning("channel %s: %d tasks did not stop in %.0f s; cancelling them",
                            self.spec.name, len(late), STOP_GRACE_S)  # fmt: skip
                await self._cancel_all()
        for t in self.tasks.values():  # mark every exception retrieved
            if t.done() and not t.cancelled():
                t.exception()

    async def _cancel_all(self) -> None:
        tasks = [t for t in self.tasks.values() if not t.done()]
        for t in tasks:
            t.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=STOP_GRACE_S)

    def _outcome(self, e: BaseException) -> tuple[Outcome, str | None]:
        if isinstance(e, TunerBusyError):
            return Outcome.BUSY, str(e)
        if isinstance(e, EcError):
            return Outcome.FAILED, " ".join(str(e).split())
        from ec_node.cli.exits import exit_code_for

        if exit_code_for(e) is not None:  # a user-caused failure from a pure core (bad key, identity, input)
            return Outcome.FAILED, " ".join(str(e).split())
        log.error("channel %s: internal error", self.spec.name, exc_info=e)
        return Outcome.FAILED, f"internal error: {type(e).__name__}: {e}"


class HomeNode:
    """The node: plan, board, channel runs, status server and signals."""

    def __init__(self, cfg: NodeConfig, tuners: int | None, signers: dict[Path, str], opts: NodeOptions,
                 out: TextIO) -> None:  # fmt: skip
        self.cfg = cfg
        self.opts = opts
        self.out = out
        self.signers = signers
        self.plan = Plan(cfg.channels, tuners)
        self.board = Board(self.plan, device=cfg.device)
        self.server = StatusServer(self.board)
        self.runs: dict[str, tuple[ChannelRun, asyncio.Task[None]]] = {}
        self.exits: asyncio.Queue[tuple[str, Outcome, str | None]] = asyncio.Queue()
        self.stop = asyncio.Event()
        self.reload = asyncio.Event()

    def emit(self, ev: dict[str, Any], level: int = logging.INFO) -> None:
        """A node event: a JSON line (``--json``) and a log line."""
        if self.opts.json:
            emit_json(self.out, ev)
        fields = " ".join(f"{k}={v}" for k, v in ev.items() if k not in ("event", "channel") and v is not None)
        who = f"channel {ev['channel']}: " if "channel" in ev else ""
        log.log(level, "%s%s %s", who, ev.get("event"), fields)

    async def run(self) -> None:
        """Serve until SIGINT/SIGTERM."""
        loop = asyncio.get_running_loop()
        for sig, ev in ((signal.SIGINT, self.stop), (signal.SIGTERM, self.stop), (signal.SIGHUP, self.reload)):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, ev.set)
        try:
            self.cfg.state_dir.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise OutputError(f"cannot make the state folder {self.cfg.state_dir}: {e.strerror or e}") from None
        url = None
        if self.cfg.http is not None:
            url = await self.server.start(*parse_host_port(self.cfg.http, "[node] http", any_port=True))
        try:
            self.emit({"event": "node_started", "config": str(self.cfg.path), "http": url,
                       "channels": [c.name for c in self.cfg.channels], "tuners": self.plan.tuners,
                       "pid": os.getpid()})  # fmt: skip
            await self._loop()
        finally:
            await self._shutdown()
            await self.server.stop()
            self.emit({"event": "node_stopped"})

    async def _loop(self) -> None:
        self._apply(self.plan.step(time.monotonic()))
        waits: dict[str, asyncio.Future[Any]] = {}
        while not self.stop.is_set():
            for key, make in (("stop", self.stop.wait), ("reload", self.reload.wait), ("exit", self.exits.get)):
                if key not in waits:
                    waits[key] = asyncio.ensure_future(make())
            deadline = self.plan.next_deadline()
            timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
            done, _ = await asyncio.wait(waits.values(), timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
            now = time.monotonic()
            if waits["exit"] in done:
                name, outcome, error = waits.pop("exit").result()
                self._exited(name, outcome, error, now)
            if waits["reload"] in done:
                waits.pop("reload")
                self.reload.clear()
                await self._reload()
            if not done:
                self._apply(self.plan.step(now))
        for w in waits.values():
            w.cancel()

    def _exited(self, name: str, outcome: Outcome, error: str | None, now: float) -> None:
        self.runs.pop(name, None)
        actions = self.plan.exited(name, outcome, now, error)
        st = self.plan.channels.get(name)
        retry = round(st.retry_at - now, 1) if st is not None and st.retry_at is not None else None
        level = logging.WARNING if outcome in (Outcome.FAILED, Outcome.BUSY) else logging.INFO
        self.emit({"event": "channel_stopped", "channel": name, "outcome": outcome.value, "error": error,
                   "state": st.state if st else "removed", "retry_in_s": retry}, level)  # fmt: skip
        self.board.forget_removed()
        self._apply(actions)

    def _apply(self, actions: Sequence[Action]) -> None:
        for a in actions:
            if isinstance(a, Start):
                status = self.board.channel(a.name, a.spec.roles)
                run = ChannelRun(a.spec, status, self.signers, self.emit)
                task = asyncio.create_task(self._run_channel(run), name=f"channel {a.name}")
                self.runs[a.name] = (run, task)
                pst = self.plan.channels[a.name]
                self.emit({"event": "channel_started", "channel": a.name, "roles": list(a.spec.roles),
                           "tuner": a.tuner, "starts": pst.starts})  # fmt: skip
            elif isinstance(a, Stop):
                got = self.runs.get(a.name)
                if got is not None:
                    log.info("channel %s: stopping (%s)", a.name, a.reason)
                    got[0].request_stop()

    async def _run_channel(self, run: ChannelRun) -> None:
        try:
            outcome, error = await run.run()
        except asyncio.CancelledError:
            outcome, error = Outcome.STOPPED, None
        except Exception as e:  # never let one channel's bug reach the node
            log.error("channel %s: internal error", run.spec.name, exc_info=e)
            outcome, error = Outcome.FAILED, f"internal error: {type(e).__name__}: {e}"
        await self.exits.put((run.spec.name, outcome, error))

    async def _reload(self) -> None:
        """SIGHUP: read the config again and apply what changed (a bad config is refused, the old one kept)."""
        path = self.cfg.path
        try:
            cfg = read_config(path)
            tuners, lineup = await asyncio.to_thread(query_device, cfg)
            if lineup is not None:
                cfg = with_lineup(cfg, lineup)
            signers = await asyncio.to_thread(load_signers, cfg)
        except Exception as e:
            from ec_node.cli.exits import exit_code_for

            if exit_code_for(e) is None:
                raise
            self.emit({"event": "reload_failed", "error": " ".join(str(e).split())}, logging.ERROR)
            return
        for key in ("http", "log_file"):
            if getattr(cfg, key) != getattr(self.cfg, key):
                log.warning("[node] %s changed: it takes effect when the node is restarted", key)
        before = {n: st.spec for n, st in self.plan.channels.items()}
        self.cfg, self.signers = cfg, signers
        for run, _ in self.runs.values():
            run.signers = signers
        self.board.device = cfg.device
        actions = self.plan.reload(cfg.channels, tuners, time.monotonic())
        after = {c.name: c for c in cfg.channels}
        self.emit({"event": "reloaded", "config": str(path),
                   "added": [n for n in after if n not in before],
                   "changed": [n for n in after if n in before and before[n] != after[n]],
                   "removed": [n for n in before if n not in after],
                   "kept": [n for n in after if n in before and before[n] == after[n]]})  # fmt: skip
        self._apply(actions)
        self.board.forget_removed()

    async def _shutdown(self) -> None:
        self._apply(self.plan.stop_all())
        for run, _ in self.runs.values():
            run.request_stop()
        tasks = [t for _, t in self.runs.values()]
        if tasks:
            names = ", ".join(self.runs)
            log.info("stopping channels %s (up to %.0f s each)", names, STOP_GRACE_S)
            _, late = await asyncio.wait(tasks, timeout=STOP_GRACE_S * 2 + 5)
            for t in late:
                t.cancel()
            if late:
                await asyncio.wait(late, timeout=5)
        while not self.exits.empty():
            name, outcome, error = self.exits.get_nowait()
            self.runs.pop(name, None)
            self.plan.exited(name, outcome, time.monotonic(), error)
            self.emit({"event": "channel_stopped", "channel": name, "outcome": outcome.value, "error": error,
                       "state": "stopped", "retry_in_s": None})  # fmt: skip


async def run_node(opts: NodeOptions, out: TextIO = sys.stdout) -> None:
    """Load the config, ask the tuner what it leaves open, and run until SIGINT/SIGTERM."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()

    def early_hup() -> None:
        log.warning("SIGHUP while starting: nothing to reload yet")

    for sig, handler in ((signal.SIGINT, stop.set), (signal.SIGTERM, stop.set), (signal.SIGHUP, early_hup)):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, handler)
    cfg = read_config(opts.config)
    if not cfg.channels and not cfg.lineup_all:
        raise ConfigError(f"{cfg.path}: no channels to run")
    if cfg.uses_tuner and (cfg.tuners is None or cfg.lineup_all):
        log.info("asking the tuner at %s for its %s", cfg.device, "lineup" if cfg.lineup_all else "tuner count")
    asked = asyncio.ensure_future(asyncio.to_thread(query_device, cfg))
    stopper = asyncio.ensure_future(stop.wait())
    await asyncio.wait({asked, stopper}, return_when=asyncio.FIRST_COMPLETED)
    stopper.cancel()
    if not asked.done():
        log.info("stopped while asking the tuner")
        return
    tuners, lineup = asked.result()
    if lineup is not None:
        cfg = with_lineup(cfg, lineup)
    signers = await asyncio.to_thread(load_signers, cfg)
    if cfg.log_file is not None:
        _log_to_file(cfg.log_file)
    node = HomeNode(cfg, tuners, signers, opts, out)
    node.stop = stop
    display = _Display(node.board, cfg.status_every_s, live=opts.live)
    async with display:
        await node.run()


def _log_to_file(path: Path) -> None:
    """``[node] log_file``: log lines go to this file (appended) instead of stderr."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handler = logging.FileHandler(path, encoding="utf-8")
    except OSError as e:
        raise OutputError(f"cannot write the log file {path}: {e.strerror or e}") from None
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
    root = logging.getLogger()
    for h in list(root.handlers):
        if isinstance(h, logging.StreamHandler) and getattr(h, "stream", None) in (sys.stderr, sys.__stderr__):
            root.removeHandler(h)
    root.addHandler(handler)


class _Display:
    """People's view: the live table on a terminal, else a status line per channel now and then."""

    def __init__(self, board: Board, every_s: float, *, live: bool) -> None:
        self.board = board
        self.every_s = every_s
        self.live = live
        self._task: asyncio.Task[None] | None = None
        self._live: Any = None
        self._handlers: list[logging.Handler] = []

    async def __aenter__(self) -> _Display:
        if self.live:
            from rich.console import Console
            from rich.live import Live

            console = Console(stderr=True)
            self._live = Live(self.board.table(), console=console, refresh_per_second=2,
                              redirect_stdout=False, redirect_stderr=False, transient=False)  # fmt: skip
            self._live.start()
            root = logging.getLogger()
            self._handlers = [h for h in root.handlers if isinstance(h, logging.StreamHandler)
                              and getattr(h, "stream", None) in (sys.stderr, sys.__stderr__)]  # fmt: skip
            for h in self._handlers:
                root.removeHandler(h)
            handler = _ConsoleHandler(console)
            handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
            root.addHandler(handler)
            self._handlers.append(handler)
        self._task = asyncio.create_task(self._tick())
        return self

    async def _tick(self) -> None:
        while True:
            if self._live is not None:
                await asyncio.sleep(1.0)
                self._live.update(self.board.table())
            else:
                await asyncio.sleep(self.every_s)
                for line in self.board.lines():
                    log.info("%s", line)

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._live is not None:
            self._live.update(self.board.table())
            self._live.stop()
            root = logging.getLogger()
            console_handler = self._handlers.pop()
            root.removeHandler(console_handler)
            for h in self._handlers:
                root.addHandler(h)


class _ConsoleHandler(logging.Handler):
    """Log lines printed above the live table."""

    def __init__(self, console: Any) -> None:
        super().__init__()
        self.console = console

    def emit(self, record: logging.LogRecord) -> None:
        """Print one formatted record through the console."""
        try:
            self.console.print(self.format(record), markup=False, highlight=False, soft_wrap=True)
        except Exception:
            self.handleError(record)


__all__ = ["ChannelRun", "HomeNode", "NodeOptions", "load_signers", "query_device", "read_config", "run_node"]
