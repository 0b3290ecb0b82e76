"""When a listener sheds a downstream session: too many sessions, or one that falls too far behind.

The moq stack queues groups for every subscriber without bound on the server side (a subscriber that
keeps its connection alive but drains slower than the track grows the server's memory for as long as
it stays), and it exposes no per-subscription progress. What it does expose is each session's
``bytes_sent``. A session's *lag* is the bytes the node has published since the session arrived minus
the bytes sent to it. Only a session that takes a real share of what is published (``min_share``: a
chunks subscriber) is judged by lag, so a manifests-only subscriber, which receives a tiny fraction
of the bytes by design, is never mistaken for a slow one. Pure: numbers in, a decision out.
"""

from __future__ import annotations

from dataclasses import dataclass

#: The application error code a shed session is closed with (moq reports it as app code 64 + this).
SHED_CODE = 429


@dataclass(frozen=True)
class ShedLimits:
    """``max_sessions``: sessions held at once (None: any); ``max_lag_bytes``: lag before a session is shed."""

    max_sessions: int | None = 64
    max_lag_bytes: int | None = 32 * 1024 * 1024
    min_share: float = 0.1


@dataclass(frozen=True)
class SessionMeter:
    """What was published and sent when the session was accepted."""

    published_at_start: int
    sent_at_start: int


def lag_bytes(meter: SessionMeter, published: int, sent: int) -> int:
    """Bytes published since the session arrived that it has not been sent (history sent counts toward it)."""
    return max(0, (published - meter.published_at_start) - (sent - meter.sent_at_start))


def shed_reason(meter: SessionMeter, published: int, sent: int, limits: ShedLimits) -> str | None:
    """Why this session should be shed now, or None."""
    if limits.max_lag_bytes is None:
        return None
    new = published - meter.published_at_start
    got = sent - meter.sent_at_start
    lag = lag_bytes(meter, published, sent)
    if lag > limits.max_lag_bytes and got >= limits.min_share * new:
        return f"fell {lag / 1e6:.1f} MB behind (limit {limits.max_lag_bytes / 1e6:.1f} MB)"
    return None


def refuse_reason(held: int, limits: ShedLimits) -> str | None:
    """Why a new session should be refused at the door, or None."""
    if limits.max_sessions is not None and held >= limits.max_sessions:
        return f"{held} sessions already (limit {limits.max_sessions})"
    return None
