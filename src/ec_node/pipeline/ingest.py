"""Ingest sources: where MPEG-TS bytes come from, and reconnecting when a live one is cut.

A source spec is a path, ``-`` (stdin), an ``http(s)://`` URL of a TS stream (such as an
HDHomeRun stream URL), or ``hdhr://HOST[:PORT]/<GuideNumber>``. What the bytes mean is
:mod:`ec_node.ts`'s business (the PCR clock that measures what a connection delivered, the
input guard that they are TS at all); a busy tuner is retried by :mod:`ec_node.hdhr.client`.
"""

from __future__ import annotations

import logging
import math
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from ec_node.errors import BadInputError, EcError, TunerBusyError, UnreachableError
from ec_node.hdhr.client import BUSY_BACKOFF_S, BUSY_RETRIES, Busy, HdhrClient, HdhrStream, retry_while_busy
from ec_node.ts.pcr import PcrClock

log = logging.getLogger(__name__)

READ_SIZE = 1024 * 1024


@dataclass(frozen=True)
class SourceSpec:
    """A parsed ``--input``: which kind of source, and where."""

    kind: str  # "file" | "stdin" | "url" | "hdhr"
    locator: str
    host: str | None = None
    channel: str | None = None


def parse_source(spec: str) -> SourceSpec:
    """Tell a path, ``-``, a URL and ``hdhr://HOST/<GuideNumber>`` apart (UsageError for a bad hdhr spec)."""
    if spec == "-":
        return SourceSpec("stdin", "-")
    if spec.startswith(("http://", "https://")):
        return SourceSpec("url", spec)
    if spec.startswith("hdhr://"):
        rest = spec[len("hdhr://") :]
        host, _, channel = rest.partition("/")
        if not host or not channel:
            from ec_node.errors import UsageError

            raise UsageError(f"bad hdhr source {spec!r}: expected hdhr://HOST[:PORT]/<GuideNumber>")
        return SourceSpec("hdhr", spec, host=host, channel=channel)
    return SourceSpec("file", spec)


def read_file(path: Path, read_size: int = READ_SIZE) -> Iterator[bytes]:
    """A file's bytes in reads; missing, directory or unreadable is BadInputError before the first read."""
    try:
        f = path.open("rb")
    except FileNotFoundError:
        raise BadInputError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise BadInputError(f"{path}: is a directory") from None
    except PermissionError:
        raise BadInputError(f"{path}: permission denied") from None
    with f:
        while True:
            data = f.read(read_size)
            if not data:
                return
            yield data


def read_stdin(read_size: int = READ_SIZE) -> Iterator[bytes]:
    """Standard input's bytes as they arrive (``read1``: no waiting for a full buffer)."""
    stream = sys.stdin.buffer
    while True:
        data = stream.read1(read_size) if hasattr(stream, "read1") else stream.read(read_size)
        if not data:
            return
        yield data


# -- live sources: reconnect when the far end closes the stream -------------------------------------


@dataclass(frozen=True)
class ReconnectPolicy:
    """How hard to try when a live source ends early.

    ``max_attempts`` consecutive reconnects that deliver no data (the open fails, or the body
    is empty) end the ingest with the last error; any reconnect that delivers data resets the
    count. Delays double from ``backoff_s`` up to ``max_backoff_s``. A stream that ends within
    ``end_slack_s`` of the requested duration ended where it was asked to.
    """

    max_attempts: int = 5
    backoff_s: float = 0.5
    max_backoff_s: float = 8.0
    end_slack_s: float = 1.0


@dataclass(frozen=True)
class Next:
    """What to do after a connection ended: ``done``, ``reconnect`` (after ``delay_s``) or ``give_up``."""

    action: Literal["done", "reconnect", "give_up"]
    attempt: int = 0
    delay_s: float = 0.0
    request_s: float | None = None  # seconds to ask the source for; None = no limit


@dataclass
class ReconnectPlan:
    """The reconnect decisions of one live ingest, without I/O (the shell is :func:`reconnecting`)."""

    duration_s: float | None
    policy: ReconnectPolicy = field(default_factory=ReconnectPolicy)
    consumed_s: float = 0.0  # media seconds delivered by all connections so far
    failures: int = 0  # consecutive reconnect attempts that delivered nothing
    reconnects: int = 0  # reconnect attempts made, in total

    def remaining_s(self) -> float | None:
        """Seconds still owed of the requested duration (None: no limit)."""
        return None if self.duration_s is None else max(0.0, self.duration_s - self.consumed_s)

    def stream_ended(self, nbytes: int, media_s: float, natural_end: bool) -> Next:
        """A connection ended after delivering ``nbytes`` covering ``media_s`` seconds."""
        self.consumed_s += media_s
        if natural_end:
            return Next("done")
        rem = self.remaining_s()
        if rem is not None and rem <= self.policy.end_slack_s:
            return Next("done")  # the source stopped where it was asked to
        if nbytes > 0 or self.reconnects == 0:
            self.failures = 0  # data flowed (or this was the first connection, not a reconnect)
        else:
            self.failures += 1
        return self._next()

    def open_failed(self) -> Next:
        """A reopen raised: one more consecutive failure."""
        self.failures += 1
        return self._next()

    def _next(self) -> Next:
        p = self.policy
        if self.failures >= p.max_attempts:
            return Next("give_up", attempt=self.failures)
        self.reconnects += 1
        delay = min(p.backoff_s * (2**self.failures), p.max_backoff_s)
        return Next("reconnect", attempt=self.failures + 1, delay_s=delay, request_s=self.remaining_s())


@dataclass
class Connection:
    """One open live stream: its reads, and whether it ended by itself (a complete finite body)."""

    reads: Iterator[bytes]
    natural_end: Callable[[], bool] = lambda: False
    end_reason: Callable[[], str] = lambda: "eof"
    close: Callable[[], None] = lambda: None


def reconnecting(
    first: Connection,
    reopen: Callable[[float | None], Connection],
    *,
    what: str,
    duration_s: float | None = None,
    policy: ReconnectPolicy | None = None,
    sleep: Callable[[float], None] = time.sleep,
    stop: threading.Event | None = None,
) -> Iterator[bytes]:
    """Bytes of ``first`` and then of each reopened connection until the duration is delivered.

    Each reopen asks for the seconds still owed. What the device sends after a reconnect does
    not continue the old bytes: the chunker sees the splice, drops the chunk(s) touching it and
    numbers later chunks from their own PTS, so the gap shows downstream as a discontinuity.
    ``stop`` (SIGINT/SIGTERM, from the shell) ends it quietly, at once if it comes during a backoff.
    """
    plan = ReconnectPlan(duration_s, policy or ReconnectPolicy())
    limit = plan.policy.max_attempts
    conn: Connection | None = first
    last_error: EcError | None = None

    def backoff(delay_s: float) -> bool:
        """Wait before the next attempt; True if told to stop meanwhile."""
        if stop is None:
            sleep(delay_s)
            return False
        return stop.wait(delay_s)

    try:
        while True:
            if conn is None:  # the last reopen raised
                nxt = plan.open_failed()
                if nxt.action == "reconnect":
                    log.warning(
                        "reconnect to %s failed: %s; retrying (attempt %d/%d) in %.1f s",
                        *(what, last_error, nxt.attempt, limit, nxt.delay_s),
                    )
            else:
                clock = PcrClock()
                nbytes = 0
                t0 = time.monotonic()
                for data in conn.reads:
                    nbytes += len(data)
                    clock.feed(data)
                    yield data
                wall = time.monotonic() - t0
                reason = conn.end_reason()
                conn.close()
                natural = conn.natural_end()
                conn = None
                last_error = None
                # wall time too: a source without PCRs (or a stalled one) still uses up the duration
                nxt = plan.stream_ended(nbytes, max(clock.seconds, wall), natural)
                if nxt.action == "reconnect":
                    log.warning(
                        "%s closed the stream after %.1f MB (%s, %.1f s of media); "
                        "reconnecting (attempt %d/%d) in %.1f s",
                        *(what, nbytes / 1e6, reason, clock.seconds, nxt.attempt, limit, nxt.delay_s),
                    )
            if nxt.action == "done":
                if plan.reconnects:
                    log.info("%s: %.1f s of media over %d reconnects", what, plan.consumed_s, plan.reconnects)
                return
            if nxt.action == "give_up":
                if last_error is None:
                    raise UnreachableError(f"{what}: gave up after {limit} reconnects that sent nothing")
                raise type(last_error)(f"{what}: gave up after {limit} failed reconnects: {last_error}")
            if backoff(nxt.delay_s):
                log.info("%s: stopped while reconnecting", what)
                return
            try:
                conn = reopen(nxt.request_s)
            except EcError as e:
                last_error = e
                continue
            log.info("%s: reconnected (attempt %d)", what, nxt.attempt)
    finally:
        if conn is not None:
            conn.close()


def _hdhr_connection(stream: HdhrStream) -> Connection:
    return Connection(stream, end_reason=lambda: stream.end_reason or "eof", close=stream.close)


def open_hdhr(
    host: str,
    channel: str,
    duration_s: float | None = None,
    policy: ReconnectPolicy | None = None,
    stop: threading.Event | None = None,
) -> Iterator[bytes]:
    """A tuner's stream, reopened (busy retries included) whenever the device ends it early.

    The first open is eager so that an unknown channel, no signal or all tuners busy surface
    as the caller's error before any byte is read.
    """
    client = HdhrClient(host)
    first = _hdhr_connection(client.open_stream(channel, duration_s))
    what = f"tuner {client.where} channel {channel}"

    def reopen(request_s: float | None) -> Connection:
        # Devices take whole seconds and the client rounds up; round the remainder down instead,
        # so the total never exceeds the duration (it falls short by less than the end slack).
        whole = None if request_s is None else max(1, math.floor(request_s))
        return _hdhr_connection(client.open_stream(channel, whole))

    return reconnecting(first, reopen, what=what, duration_s=duration_s, policy=policy, stop=stop)


def _open_url(
    url: str,
    deadline_s: float | None,
    *,
    busy_retries: int = BUSY_RETRIES,
    backoff_s: float = BUSY_BACKOFF_S,
    sleep: Callable[[float], None] = time.sleep,
) -> Connection:
    """GET ``url``. A 503 (an HDHomeRun's "all tuners busy") is retried with the client's backoff."""
    import http.client
    import urllib.error
    import urllib.request

    from ec_node.hdhr.api import StreamVerdict, classify_stream_response, describe_error

    def attempt() -> http.client.HTTPResponse | Busy:
        try:
            return urllib.request.urlopen(url, timeout=15)
        except urllib.error.HTTPError as e:
            header = e.headers.get("X-HDHomeRun-Error") if e.headers else None
            e.close()
            verdict, code = classify_stream_response(e.code, header)
            if e.code != 503 or verdict is not StreamVerdict.BUSY:
                raise BadInputError(f"{url}: HTTP {e.code} {e.reason}") from None
            return Busy(describe_error(code, header) if header else "HTTP 503")
        except (urllib.error.URLError, OSError) as e:
            raise UnreachableError(f"{url}: {getattr(e, 'reason', e)}") from None

    resp = retry_while_busy(
        attempt,
        who=url,
        retries=busy_retries,
        backoff_s=backoff_s,
        sleep=sleep,
        gave_up=lambda what: TunerBusyError(f"{url}: still busy after {busy_retries} retries ({what})"),
    )

    state = {"reason": "eof", "complete": False}

    def reads() -> Iterator[bytes]:
        deadline = None if deadline_s is None else time.monotonic() + deadline_s
        while True:
            try:
                data = resp.read1(READ_SIZE)
            except (OSError, http.client.HTTPException) as e:
                state["reason"] = f"reset: {e}"  # the server closing mid-body is an end of stream
                return
            if not data:
                # a body of known length read in full (or a chunked body's last chunk) is a finite
                # resource that ended; a close-delimited body is a live stream that was cut
                state["complete"] = resp.length == 0 or bool(getattr(resp, "chunked", False))
                return
            yield data
            if deadline is not None and time.monotonic() >= deadline:
                state["reason"], state["complete"] = "duration reached", True
                return

    return Connection(
        reads(),
        natural_end=lambda: bool(state["complete"]),
        end_reason=lambda: str(state["reason"]),
        close=resp.close,
    )


def read_url(
    url: str,
    duration_s: float | None = None,
    policy: ReconnectPolicy | None = None,
    stop: threading.Event | None = None,
) -> Iterator[bytes]:
    """An HTTP(S) TS stream, reopened when a live (close-delimited) body ends early.

    ``duration_s`` is enforced here by the wall clock, across reconnects.
    """
    first = _open_url(url, duration_s)
    return reconnecting(
        first, lambda request_s: _open_url(url, request_s), what=url, duration_s=duration_s, policy=policy, stop=stop
    )


def open_source(spec: str, duration_s: float | None = None, stop: threading.Event | None = None) -> Iterator[bytes]:
    """Bytes of the source, as they arrive. Live sources (hdhr, URL) reconnect when cut, until ``stop``."""
    s = parse_source(spec)
    if s.kind == "stdin":
        return read_stdin()
    if s.kind == "file":
        return read_file(Path(s.locator))
    if s.kind == "url":
        return read_url(s.locator, duration_s, stop=stop)
    assert s.host is not None and s.channel is not None
    return open_hdhr(s.host, s.channel, duration_s, stop=stop)


class PcrPacer:
    """When each piece of a stream may go, so that its PCR clock runs at ``speed`` times real time (pure).

    The first PCR fed anchors the clock at the time it was fed: a piece whose media time is ``m``
    seconds after that PCR is due ``m / speed`` seconds after it. Where the PCR clock jumps (a loop
    or a splice, by :mod:`ec_node.ts.pcr`'s rule) the anchor starts over. Nothing is anchored before
    the first piece is fed, so pacing starts when its caller starts feeding (ingest), not before.
    """

    def __init__(self, speed: float = 1.0) -> None:
        if speed <= 0:
            raise ValueError("speed must be positive")
        self.speed = speed
        self.clock = PcrClock()
        self._epoch = 0
        self._anchor = 0.0

    def wait_s(self, data: bytes, now: float) -> float:
        """Take the next piece at ``now``; seconds to wait before releasing it (0: at once)."""
        self.clock.feed(data)
        if self.clock.epochs != self._epoch:
            self._epoch, self._anchor = self.clock.epochs, now
        if not self._epoch:
            return 0.0  # no PCR yet: nothing to pace by
        return max(0.0, self._anchor + self.clock.epoch_seconds / self.speed - now)


def pace_by_pcr(
    reads: Iterable[bytes],
    speed: float = 1.0,
    piece: int = 64 * 1024,
    *,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> Iterator[bytes]:
    """Release bytes no faster than the stream's own PCR clock (``--realtime`` for files).

    Reads are cut into ``piece``-byte parts so a large read is not released in one burst. A
    generator: its clock starts at the first ``next()``, so wrap exactly what is to be paced, when
    it is to be paced (the publisher paces ingest, not the probe of the stream's head before it).
    """
    pacer = PcrPacer(speed)
    for read in reads:
        for i in range(0, len(read), piece):
            data = read[i : i + piece]
            delay = pacer.wait_s(data, clock())
            if delay > 0:
                sleep(delay)
            yield data


__all__ = [
    "SourceSpec",
    "parse_source",
    "open_source",
    "open_hdhr",
    "read_url",
    "reconnecting",
    "Connection",
    "Next",
    "ReconnectPlan",
    "ReconnectPolicy",
    "pace_by_pcr",
    "PcrPacer",
]
