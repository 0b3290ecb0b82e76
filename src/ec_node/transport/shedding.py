"""When a listener sheds a downstream session: too many sessions, or one that falls too far behind.

The moq stack queues groups for every subscriber without bound on the server side (a subscriber that
keeps its connection alive but drains slower than the track grows the server's memory for as long as
it stays), and it exposes no per-subscription progress. What it does expose is each session's
``bytes_sent``. A session's *deficit* is the bytes the node has published since the session arrived
minus the bytes sent to it; a late joiner is sent history first, so its deficit starts negative. Its
*lag* is how far the deficit has risen above the lowest it has been: a reader that keeps up stays
near its best, one that falls behind climbs. Only a session that takes a real share of what is
published (``min_share``: a chunks subscriber), at any check so far, is judged by lag, so a
manifests-only subscriber, which receives a tiny fraction of the bytes by design, is never mistaken
for a slow one, while a chunks reader that starves later still is. Pure:
numbers in, a decision out.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")

#: The application error code a shed session is closed with (moq reports it as app code 64 + this).
SHED_CODE = 429


@dataclass(frozen=True)
class ShedLimits:
    """``max_sessions``: sessions held at once (None: any); ``max_lag_bytes``: lag before a session is shed;
    ``max_total_lag_bytes``: the lag of all sessions together, beyond which the furthest behind go first
    (what bounds memory when the node as a whole cannot keep up, each session within its own limit)."""

    max_sessions: int | None = 64
    max_lag_bytes: int | None = 32 * 1024 * 1024
    max_total_lag_bytes: int | None = 256 * 1024 * 1024
    min_share: float = 0.1


@dataclass
class SessionMeter:
    """What was published and sent when the session was accepted, and its best (lowest) deficit since."""

    published_at_start: int
    sent_at_start: int
    best_deficit: int = 0
    chunks_reader: bool = False  # once it took a real share of the bytes, it stays judged by lag

    def lag(self, published: int, sent: int) -> int:
        """Update with the current totals; how far the session has fallen behind its best."""
        deficit = (published - self.published_at_start) - (sent - self.sent_at_start)
        self.best_deficit = min(self.best_deficit, deficit)
        return deficit - self.best_deficit


def shed_reason(meter: SessionMeter, published: int, sent: int, limits: ShedLimits) -> str | None:
    """Why this session should be shed now, or None (updates the meter)."""
    lag = meter.lag(published, sent)
    if limits.max_lag_bytes is None:
        return None
    new = published - meter.published_at_start
    got = sent - meter.sent_at_start
    if new > 0 and got >= limits.min_share * new:
        meter.chunks_reader = True  # (a reader that later starves is still a chunks reader)
    if lag > limits.max_lag_bytes and meter.chunks_reader:
        return f"fell {lag / 1e6:.1f} MB behind (limit {limits.max_lag_bytes / 1e6:.1f} MB)"
    return None


def pick_shed(meters: dict[T, SessionMeter], published: int, sent: dict[T, int], limits: ShedLimits) -> dict[T, str]:
    """The sessions to shed now, with why: each one over its own limit, then the furthest behind until the
    total is within its limit. Updates every meter."""
    out: dict[T, str] = {}
    lags: dict[T, int] = {}
    for key, meter in meters.items():
        why = shed_reason(meter, published, sent[key], limits)
        if why is not None:
            out[key] = why
        elif meter.chunks_reader:
            lags[key] = meter.lag(published, sent[key])
    total = sum(lags.values())
    budget = limits.max_total_lag_bytes
    for key in sorted(lags, key=lambda k: lags[k], reverse=True):
        if budget is None or total <= budget:
            break
        out[key] = (
            f"furthest behind ({lags[key] / 1e6:.1f} MB) while all sessions together lag {total / 1e6:.1f} MB "
            f"(limit {budget / 1e6:.1f} MB)"
        )
        total -= lags[key]
    return out


def refuse_reason(held: int, limits: ShedLimits) -> str | None:
    """Why a new session should be refused at the door, or None."""
    if limits.max_sessions is not None and held >= limits.max_sessions:
        return f"{held} sessions already (limit {limits.max_sessions})"
    return None
