"""What the watch server knows about its channel, learnt only from the node's JSON events.

Pure: :meth:`WatchState.apply` takes the same event objects ``--json`` prints (``segment``,
``rejected``, ``peer_connected`` ...), so a subscriber feeds it in-process and the demo feeds it
from a child's stdout. The HTTP shell (:mod:`ec_node.serve.server`) only reads it.
"""

from __future__ import annotations

from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any

#: verified segments the virtual tuner can still stream from (a slow client skips ahead past these)
RECENT_SEGMENTS = 8
#: segments a live playlist needs before a browser is pointed at it (RFC 8216 6.3.3)
MIN_LIVE_SEGMENTS = 3
_UP = {"connected"}
_DOWN = {"stalled", "lost", "gone", "ended"}


@dataclass(frozen=True)
class ChannelInfo:
    """The channel as PSIP names it (or as the broadcast name stands in for it)."""

    name: str
    guide_number: str
    video_codec: str | None = None
    audio_codec: str | None = None


@dataclass(frozen=True)
class RecentSegment:
    """A verified segment the virtual tuner may stream."""

    sequence: int
    chunk_index: int
    duration_ms: int


@dataclass
class Peer:
    """One peer the node pulls from, and its link's last state (``up`` while connected)."""

    name: str
    track: str
    up: bool = False
    state: str = "waiting"  # waiting, connected, stalled, lost, gone, ended (its track finished), dropped


@dataclass
class WatchState:
    """Counters, peers, the channel and the recent verified segments, as the events told them."""

    broadcast: str = ""
    stream_id: str = ""
    channel: ChannelInfo | None = None
    state: str = "waiting"  # waiting | live | ended
    reason: str | None = None
    rendition: bool | None = None  # None until the first segment decides it
    segments: int = 0
    rendition_segments: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    dropped: int = 0
    manifests: int = 0
    peers: dict[tuple[str, str], Peer] = field(default_factory=dict)
    latest: dict[str, Any] | None = None
    #: the last verified segments; ``sequence`` counts every segment ever
    recent: deque[RecentSegment] = field(default_factory=lambda: deque(maxlen=RECENT_SEGMENTS))

    def apply(self, ev: dict[str, Any]) -> None:
        """Learn from one event; unknown events and fields are ignored (newer nodes may add some)."""
        kind = ev.get("event")
        if kind == "subscribed":
            self.broadcast = str(ev.get("broadcast") or "")
            self.stream_id = str(ev.get("stream_id") or "")
            for name in ev.get("objects_peers") or []:
                self._peer(str(name), "chunks")
            if ev.get("manifests_peer"):
                self._peer(str(ev["manifests_peer"]), "manifests")
        elif kind == "channel":
            self.channel = ChannelInfo(
                str(ev.get("name") or self.broadcast[:16] or "ec-node"),
                str(ev.get("guide_number") or "1"),
                ev.get("video_codec"),
                ev.get("audio_codec"),
            )
        elif kind == "browser_rendition":
            self.rendition = bool(ev.get("enabled"))
        elif kind == "segment":
            self.segments += 1
            self.state = "live"
            self.recent.append(RecentSegment(self.segments, int(ev["chunk_index"]), int(ev.get("duration_ms", 0))))
            self.latest = {k: ev[k] for k in ("chunk_index", "duration_ms", "latency_ms") if k in ev}
        elif kind == "rendition":
            self.rendition_segments += 1
        elif kind == "rejected":
            self.rejected[str(ev.get("reason"))] += 1
        elif kind == "peer_dropped":
            self.dropped += 1
            for p in self.peers.values():
                if p.name == ev.get("peer"):
                    p.up, p.state = False, "dropped"
        elif kind == "manifest":
            self.manifests += 1
        elif isinstance(kind, str) and kind.startswith("peer_"):
            state = kind.removeprefix("peer_")
            if state in _UP | _DOWN:
                peer = self._peer(str(ev.get("peer")), str(ev.get("track")))
                peer.up, peer.state = state in _UP, state
        elif kind == "end":
            self.state = "ended"
            self.reason = ev.get("reason")

    def _peer(self, name: str, track: str) -> Peer:
        return self.peers.setdefault((name, track), Peer(name, track))

    @property
    def play(self) -> str | None:
        """The playlist a browser should play (under ``/hls/``), once a player can start on it.

        RFC 8216 6.3.3: a client starts no closer than three target durations to the end of a live
        playlist, and Chromium's own HLS fails on a shorter one; an ended playlist plays with one.
        """
        need = 1 if self.state == "ended" else MIN_LIVE_SEGMENTS
        if self.rendition:
            return "/hls/browser/index.m3u8" if self.rendition_segments >= need else None
        return "/hls/index.m3u8" if self.segments >= need and self.rendition is not None else None

    def status(self) -> dict[str, Any]:
        """``/status``: the JSON the watch page polls and scripts read."""
        ch = self.channel
        return {
            "channel": {"name": ch.name, "guide_number": ch.guide_number} if ch else None,
            "broadcast": self.broadcast,
            "stream_id": self.stream_id,
            "state": self.state,
            "reason": self.reason,
            "play": self.play,
            "counters": {
                "segments": self.segments,
                "rendition_segments": self.rendition_segments,
                "rejected": dict(self.rejected),
                "dropped": self.dropped,
                "manifests": self.manifests,
            },
            "peers": [{"name": p.name, "track": p.track, "up": p.up, "state": p.state} for p in self.peers.values()],
            "latest": self.latest,
        }

    def segments_after(self, sequence: int) -> list[RecentSegment]:
        """The recent segments newer than ``sequence`` (what a streaming client has not had yet)."""
        return [r for r in self.recent if r.sequence > sequence]
