"""What each channel of the home node is doing, learnt from the JSON events its pipeline tasks print.

Every task (a channel's publisher, relay, watcher) is given an :class:`EventSink` as its ``out``:
a small text stream that parses the JSON lines run_publish / run_relay / run_subscribe write and
hands them to the :class:`Board`, the same way :class:`~ec_node.serve.state.WatchState` learns
from a subscriber. The board answers ``/status`` (JSON), ``/metrics`` (Prometheus text from a
registry of its own) and draws the live table on a terminal. Counters add up over a channel's
restarts (Prometheus counters never go back).

RSS is the process's: the channels share one interpreter, so it is not split per channel.
"""

from __future__ import annotations

import io
import json
import logging
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from prometheus_client.core import CollectorRegistry, CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import generate_latest
from prometheus_client.registry import Collector

from ec_node.home.plan import ChannelState, Plan
from ec_node.pipeline.aio import rss_mb

log = logging.getLogger(__name__)

#: the totals a publisher's ``published`` event carries for its run
_PUBLISHED = ("chunks", "objects", "manifests", "damaged")


class EventSink(io.TextIOBase):
    """A text stream that turns each JSON line written to it into a call of ``on_event`` (other lines: logged)."""

    def __init__(self, on_event: Callable[[dict[str, Any]], None], name: str) -> None:
        super().__init__()
        self.on_event = on_event
        self.name_ = name
        self._buf = ""

    def writable(self) -> bool:
        """Always: it is an output stream."""
        return True

    def write(self, s: str) -> int:
        """Buffer ``s``; each complete line is parsed and handed on."""
        self._buf += s
        while "\n" in self._buf:
            line, self._buf = self._buf.split("\n", 1)
            self._line(line)
        return len(s)

    def _line(self, line: str) -> None:
        if not line.strip():
            return
        try:
            obj = json.loads(line)
        except json.JSONDecodeError:
            log.info("%s: %s", self.name_, line)
            return
        if isinstance(obj, dict):
            self.on_event(obj)


@dataclass
class RoleRun:
    """One task's view of its run: what its startup line said and its run's totals."""

    addr: dict[str, Any] | None = None
    broadcast: str | None = None
    signer_id: str | None = None
    live: bool = False


@dataclass
class ChannelStatus:
    """Counters and states of one channel, across its restarts."""

    name: str
    roles: tuple[str, ...]
    published: Counter[str] = field(default_factory=Counter)  # totals of finished runs
    published_run: Counter[str] = field(default_factory=Counter)  # the current run's totals
    segments: int = 0
    manifests: int = 0
    served: int = 0
    served_run: int = 0
    gaps: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    latency_ms: float | None = None
    peers: dict[tuple[str, str, str], bool] = field(default_factory=dict)  # (role, peer, track) -> up
    runs: dict[str, RoleRun] = field(default_factory=dict)
    watch_url: str | None = None
    untrusted: str | None = None

    def new_run(self) -> None:
        """The channel's tasks start again: keep the totals, forget the run."""
        self.published += self.published_run
        self.published_run = Counter()
        self.served += self.served_run
        self.served_run = 0
        self.peers.clear()
        self.runs.clear()

    def total(self, key: str) -> int:
        """A publisher total over every run."""
        return self.published[key] + self.published_run[key]

    @property
    def served_total(self) -> int:
        """Groups a relay served, over every run."""
        return self.served + self.served_run

    def apply(self, role: str, ev: dict[str, Any]) -> str | None:
        """Learn from one event of ``role``'s task; returns ``role`` the first time that task is live."""
        run = self.runs.setdefault(role, RoleRun())
        kind = ev.get("event")
        was_live = run.live
        if kind is None and "endpoint_addr" in ev:  # the startup line
            run.addr = ev.get("endpoint_addr")
            run.broadcast = ev.get("broadcast")
            run.signer_id = ev.get("signer_id")
        elif kind == "published":
            for k in _PUBLISHED:
                if isinstance(ev.get(k), int):
                    self.published_run[k] = ev[k]
            run.live = True
        elif kind == "segment":
            self.segments += 1
            if isinstance(ev.get("latency_ms"), (int, float)):
                self.latency_ms = float(ev["latency_ms"])
            run.live = True
        elif kind == "status" and role == "relay":
            if isinstance(ev.get("served"), int):
                self.served_run = ev["served"]
                run.live = run.live or ev["served"] > 0
        elif kind == "manifest" and role == "watch":
            self.manifests += 1
        elif kind == "rejected":
            self.rejected[str(ev.get("reason"))] += 1
        elif kind == "gap":
            self.gaps += 1
        elif kind == "untrusted_signer":
            self.untrusted = ", ".join(str(s) for s in ev.get("signers") or [])
        elif kind == "http":
            self.watch_url = str(ev.get("url"))
        elif kind == "subscribed":
            for p in ev.get("objects_peers") or []:
                self.peers.setdefault((role, str(p), "chunks"), False)
            if ev.get("manifests_peer"):
                self.peers.setdefault((role, str(ev["manifests_peer"]), "manifests"), False)
        elif isinstance(kind, str) and kind.startswith("peer_"):
            state = kind.removeprefix("peer_")
            if state in ("connected", "stalled", "lost", "gone", "ended", "dropped"):
                self.peers[(role, str(ev.get("peer")), str(ev.get("track") or "chunks"))] = state == "connected"
        return role if run.live and not was_live else None

    def peers_up(self) -> tuple[int, int]:
        """(links up, links known)."""
        return sum(self.peers.values()), len(self.peers)


class Board:
    """Every channel's status, plus the plan's view (state, tuner, restarts), for people and machines."""

    def __init__(self, plan: Plan, *, device: str | None = None, started: float | None = None) -> None:
        self.plan = plan
        self.device = device
        self.started = time.monotonic() if started is None else started
        self.channels: dict[str, ChannelStatus] = {}
        self.registry = CollectorRegistry(auto_describe=True)
        self.registry.register(_Collector(self))

    def channel(self, name: str, roles: tuple[str, ...]) -> ChannelStatus:
        """The status of ``name`` (created on first use; roles follow the config)."""
        st = self.channels.get(name)
        if st is None:
            st = self.channels[name] = ChannelStatus(name, roles)
        st.roles = roles
        return st

    def forget_removed(self) -> None:
        """Drop the status of channels the plan no longer has."""
        for name in list(self.channels):
            if name not in self.plan.channels:
                del self.channels[name]

    def _state(self, name: str) -> tuple[str, ChannelState | None]:
        pst = self.plan.channels.get(name)
        if pst is None:
            return "removed", None
        st = self.channels.get(name)
        if pst.state == "running" and st is not None:
            return ("live" if any(r.live for r in st.runs.values()) else "starting"), pst
        return pst.state, pst

    # -- /status ----------------------------------------------------------------------------------

    def status(self, now: float | None = None) -> dict[str, Any]:
        """The ``/status`` JSON: the node, then each channel in config order."""
        now = time.monotonic() if now is None else now
        chans = {}
        for name in self.plan.order:
            pst = self.plan.channels.get(name)
            if pst is None:
                continue
            st = self.channel(name, pst.spec.roles)
            state, _ = self._state(name)
            up, known = st.peers_up()
            pub = st.runs.get("publisher")
            rel = st.runs.get("relay")
            chans[name] = {
                "roles": list(pst.spec.roles),
                "state": state,
                "tuner": pst.tuner,
                "guide_number": pst.spec.guide_number,
                "starts": pst.starts,
                "last_error": pst.last_error,
                "retry_in_s": round(max(0.0, pst.retry_at - now), 1) if pst.retry_at is not None else None,
                "broadcast": (pub or rel or RoleRun()).broadcast,
                "publisher": {
                    "endpoint_addr": pub.addr if pub else None,
                    "signer_id": pub.signer_id if pub else None,
                    **{k: st.total(k) for k in _PUBLISHED},
                }
                if pst.spec.publishes
                else None,
                "relay": {"endpoint_addr": rel.addr if rel else None, "served": st.served_total}
                if "relay" in pst.spec.roles
                else None,
                "watch": {
                    "segments": st.segments,
                    "manifests": st.manifests,
                    "url": st.watch_url,
                    "output_dir": str(pst.spec.output_dir),
                }
                if "watch" in pst.spec.roles
                else None,
                "segments": st.segments,
                "rejected": dict(st.rejected),
                "gaps": st.gaps,
                "untrusted_signer": st.untrusted,
                "peers": {"up": up, "known": known,
                          "links": [{"role": r, "peer": p, "track": t, "up": u} for (r, p, t), u in st.peers.items()]},
                "latency_ms": st.latency_ms,
            }  # fmt: skip
        in_use = sum(1 for c in self.plan.channels.values() if c.tuner is not None)
        return {
            "node": {
                "uptime_s": round(now - self.started, 1),
                "rss_mb": rss_mb(),
                "device": self.device,
                "tuners": self.plan.tuners,
                "tuners_in_use": in_use,
            },
            "channels": chans,
        }

    # -- /metrics ---------------------------------------------------------------------------------

    def metrics(self) -> bytes:
        """Prometheus text exposition of this node's registry (never the global one)."""
        return generate_latest(self.registry)

    # -- people -----------------------------------------------------------------------------------

    def lines(self) -> Iterator[str]:
        """One plain log line per channel (for logs and a non-terminal stderr)."""
        s = self.status()
        for name, c in s["channels"].items():
            bits = [c["state"]]
            if c["tuner"] is not None:
                bits.append(f"tuner {c['tuner']}")
            if c["publisher"] is not None:
                bits.append(f"{c['publisher']['chunks']} chunks published")
            if c["relay"] is not None:
                bits.append(f"{c['relay']['served']} groups served")
            if c["watch"] is not None:
                bits.append(f"{c['segments']} segments")
            bits.append(f"{sum(c['rejected'].values())} rejected")
            bits.append(f"peers {c['peers']['up']}/{c['peers']['known']}")
            if c["latency_ms"] is not None:
                bits.append(f"latency {c['latency_ms']:.0f} ms")
            if c["last_error"] and c["state"] != "live":
                bits.append(f"last error: {c['last_error']}")
            yield f"channel {name}: " + ", ".join(bits)

    def table(self) -> Any:
        """The live table (a rich renderable): one compact row per channel."""
        from rich import box
        from rich.table import Table

        s = self.status()
        node = s["node"]
        tuners = f"tuners {node['tuners_in_use']}/{node['tuners']}" if node["tuners"] else "no tuner"
        t = Table(title=f"ec-node node  {tuners}  RSS {node['rss_mb']:.0f} MB", title_justify="left",
                  box=box.SIMPLE_HEAD, pad_edge=False, expand=False)  # fmt: skip
        t.add_column("channel", no_wrap=True, max_width=16, overflow="ellipsis")
        t.add_column("roles", no_wrap=True)  # initials: Leader Objects Relay Watch
        t.add_column("state", no_wrap=True, min_width=8)
        for col in ("pub", "seg", "rej", "peers", "ms"):
            t.add_column(col, no_wrap=True, justify="right")
        t.add_column("note", no_wrap=True, overflow="ellipsis", ratio=1)
        colours = {"live": "green", "starting": "yellow", "queued": "cyan", "retrying": "red", "ended": "dim"}
        for name, c in s["channels"].items():
            rej = ",".join(f"{k}:{v}" for k, v in sorted(c["rejected"].items())) or "0"
            note = c["untrusted_signer"] and f"untrusted signer {c['untrusted_signer'][:16]}..."
            if not note and c["state"] == "retrying":
                note = f"retry in {c['retry_in_s']:.0f} s: {c['last_error']}"
            t.add_row(
                name,
                "".join(r[0].upper() for r in c["roles"]),
                f"[{colours.get(c['state'], 'white')}]{c['state']}[/]",
                str(c["publisher"]["chunks"]) if c["publisher"] else "-",
                str(c["segments"]) if c["watch"] else "-",
                rej,
                f"{c['peers']['up']}/{c['peers']['known']}",
                f"{c['latency_ms']:.0f}" if c["latency_ms"] is not None else "-",
                note or "",
            )
        return t


class _Collector(Collector):
    """Builds the metric families from the board at each scrape."""

    def __init__(self, board: Board) -> None:
        self.board = board

    def collect(self) -> Iterable[Metric]:
        b = self.board
        running = GaugeMetricFamily("ec_node_channel_running", "1 while the channel's tasks run", labels=["channel"])
        live = GaugeMetricFamily(
            "ec_node_channel_live", "1 once the running channel publishes or writes", labels=["channel"]
        )
        starts = CounterMetricFamily("ec_node_channel_starts", "times the channel was started", labels=["channel"])
        helps = {"chunks": "chunks the publisher cut", "objects": "objects it published",
                 "manifests": "signed manifests it published", "damaged": "damaged chunks it dropped"}  # fmt: skip
        published = {k: CounterMetricFamily(f"ec_node_published_{k}", helps[k], labels=["channel"]) for k in _PUBLISHED}
        segments = CounterMetricFamily("ec_node_segments", "verified segments written", labels=["channel"])
        served = CounterMetricFamily(
            "ec_node_relay_served_groups", "groups the channel's relay served", labels=["channel"]
        )
        gaps = CounterMetricFamily("ec_node_gaps", "gaps (chunks given up on) reported", labels=["channel"])
        rejected = CounterMetricFamily("ec_node_rejected", "objects rejected, by reason", labels=["channel", "reason"])
        peers = GaugeMetricFamily("ec_node_peers_up", "peer links up", labels=["channel"])
        latency = GaugeMetricFamily(
            "ec_node_segment_latency_ms", "object received to segment on disk", labels=["channel"]
        )
        for name in b.plan.order:
            pst = b.plan.channels.get(name)
            if pst is None:
                continue
            st = b.channel(name, pst.spec.roles)
            state, _ = b._state(name)
            running.add_metric([name], 1.0 if pst.state == "running" else 0.0)
            live.add_metric([name], 1.0 if state == "live" else 0.0)
            starts.add_metric([name], pst.starts)
            if pst.spec.publishes:
                for k, fam in published.items():
                    fam.add_metric([name], st.total(k))
            if "watch" in pst.spec.roles:
                segments.add_metric([name], st.segments)
            if "relay" in pst.spec.roles:
                served.add_metric([name], st.served_total)
            gaps.add_metric([name], st.gaps)
            for reason, n in sorted(st.rejected.items()):
                rejected.add_metric([name, reason], n)
            peers.add_metric([name], st.peers_up()[0])
            if st.latency_ms is not None:
                latency.add_metric([name], st.latency_ms)
        tuners = GaugeMetricFamily("ec_node_tuners_in_use", "tuners held by running channels")
        tuners.add_metric([], sum(1 for c in b.plan.channels.values() if c.tuner is not None))
        rss = GaugeMetricFamily("ec_node_resident_memory_bytes", "resident memory of the node process")
        rss.add_metric([], rss_mb() * 1e6)
        yield from (running, live, starts, *published.values(), segments, served, gaps, rejected, peers, latency)
        yield from (tuners, rss)


class StatusServer:
    """``/status`` (JSON) and ``/metrics`` (Prometheus text) over HTTP, read from the board."""

    def __init__(self, board: Board) -> None:
        self.board = board
        self._runner: Any = None
        self.url = ""

    async def start(self, host: str, port: int) -> str:
        """Bind and serve; the base URL. OutputError if the address cannot be bound."""
        from aiohttp import web

        from ec_node.serve.server import serve_app

        async def status(_: web.Request) -> web.Response:
            return web.json_response(self.board.status(), headers={"Cache-Control": "no-cache"})

        async def metrics(_: web.Request) -> web.Response:
            from prometheus_client.exposition import CONTENT_TYPE_LATEST

            return web.Response(body=self.board.metrics(), headers={"Content-Type": CONTENT_TYPE_LATEST})

        async def index(_: web.Request) -> web.Response:
            return web.json_response({"status": "/status", "metrics": "/metrics"})

        app = web.Application()
        app.add_routes([web.get("/", index), web.get("/status", status), web.get("/metrics", metrics)])
        self._runner, self.url = await serve_app(app, host, port, "the node's status")
        return self.url

    async def stop(self) -> None:
        """Stop serving."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


__all__ = ["Board", "ChannelStatus", "EventSink", "StatusServer"]
