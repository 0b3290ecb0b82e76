"""HDHomeRun HTTP client: device info, lineup and live MPEG-TS streams (stdlib only).

Error semantics follow the official guide: 404/801 is a configuration error, 503 with 805
(or 803/804/no code) means busy, so back off and retry; 806/807 mean no signal. A device
closing the body (``duration`` reached, or a cut mid-stream) just ends the iterator.
"""

from __future__ import annotations

import contextlib
import http.client
import logging
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from types import TracebackType
from typing import TypeVar
from urllib.parse import urlsplit

from ec_node.errors import ConfigError, EcError, TunerBusyError, UnreachableError
from ec_node.hdhr.api import (
    DeviceInfo,
    LineupEntry,
    StreamVerdict,
    classify_stream_response,
    describe_error,
    duration_query,
    format_host,
    not_found_error,
    parse_discover_json,
    parse_host,
    parse_lineup_json,
)

log = logging.getLogger(__name__)

CHUNK_SIZE = 64 * 1024
BUSY_RETRIES = 5
BUSY_BACKOFF_S = 1.0
MAX_BACKOFF_S = 10.0

_T = TypeVar("_T")


@dataclass(frozen=True)
class Busy:
    """An attempt's answer that every tuner is in use; ``what`` is the device's reason, for the log."""

    what: str


def retry_while_busy(
    attempt: Callable[[], _T | Busy],
    *,
    who: str,
    gave_up: Callable[[str], EcError],
    retries: int = BUSY_RETRIES,
    backoff_s: float = BUSY_BACKOFF_S,
    sleep: Callable[[float], None] = time.sleep,
) -> _T:
    """Call ``attempt`` until it is not :class:`Busy`, backing off exponentially (capped at MAX_BACKOFF_S).

    Why one helper: a busy tuner answers 503/805 whether it is asked through the lineup (the
    client) or by a bare stream URL (ingest); both back off the same way. After ``retries``
    retries the exception ``gave_up(what)`` is raised.
    """
    n = 0
    while True:
        got = attempt()
        if not isinstance(got, Busy):
            return got
        if n >= retries:
            raise gave_up(got.what)
        delay = min(backoff_s * (2**n), MAX_BACKOFF_S)
        n += 1
        log.warning("%s busy (%s); retry %d/%d in %.1f s", who, got.what, n, retries, delay)
        sleep(delay)


class HdhrStream(Iterator[bytes]):
    """An open live stream: iterate for byte chunks; ends quietly when the device closes it.

    ``resource`` is the tuner the device allocated (``X-HDHomeRun-Resource``), ``end_reason``
    is ``"eof"``, ``"reset"``, ``"timeout"`` or ``"closed"`` once iteration has stopped.
    """

    def __init__(self, conn: http.client.HTTPConnection, resp: http.client.HTTPResponse, url: str) -> None:
        self._conn = conn
        self._resp = resp
        self.url = url
        self.resource: str | None = resp.getheader("X-HDHomeRun-Resource")
        self.content_type: str | None = resp.getheader("Content-Type")
        self.bytes_read = 0
        self.end_reason: str | None = None

    def __iter__(self) -> HdhrStream:
        return self

    def __next__(self) -> bytes:
        if self.end_reason is not None:
            raise StopIteration
        try:
            chunk = self._resp.read1(CHUNK_SIZE)
        except (ConnectionResetError, BrokenPipeError, http.client.IncompleteRead) as e:
            log.warning("HDHomeRun stream %s ended abruptly: %s", self.url, e)
            self._finish("reset")
            raise StopIteration from None
        except TimeoutError:
            log.warning("HDHomeRun stream %s stalled; treating as end of stream", self.url)
            self._finish("timeout")
            raise StopIteration from None
        except (OSError, ValueError) as e:  # ValueError: read on a closed response
            if self.end_reason is None:
                log.warning("HDHomeRun stream %s ended: %s", self.url, e)
                self._finish("reset")
            raise StopIteration from None
        if not chunk:
            self._finish("eof")
            raise StopIteration
        self.bytes_read += len(chunk)
        return chunk

    def _finish(self, reason: str) -> None:
        if self.end_reason is None:
            self.end_reason = reason
        try:
            self._resp.close()
        finally:
            self._conn.close()

    def close(self) -> None:
        """Release the tuner: closing the connection is what frees it on a real device."""
        self._finish("closed")

    def __enter__(self) -> HdhrStream:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):  # best effort at interpreter teardown
            self._conn.close()


class HdhrClient:
    """Talks to one device at ``host[:port]`` (port 80 unless given; the stream port comes from the lineup)."""

    def __init__(self, host: str, *, timeout_s: float = 10.0) -> None:
        self.host, self.port = parse_host(host)
        self.timeout_s = timeout_s
        self._lineup: list[LineupEntry] | None = None

    @property
    def where(self) -> str:
        """``host:port`` of the control port, for error messages."""
        return format_host(self.host, self.port)

    # -- control port -----------------------------------------------------------------------

    def _get_json_body(self, path: str) -> bytes:
        conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout_s)
        try:
            conn.request("GET", path, headers={"Accept": "application/json"})
            resp = conn.getresponse()
            body = resp.read(4 * 1024 * 1024 + 1)
        except (OSError, http.client.HTTPException) as e:
            raise UnreachableError(f"HDHomeRun {self.where} unreachable: {_why(e)}") from e
        finally:
            conn.close()
        if resp.status != 200:
            raise UnreachableError(f"{self.where} is not an HDHomeRun: GET {path} returned HTTP {resp.status}")
        return body

    def discover(self) -> DeviceInfo:
        """``/discover.json``; UnreachableError if the host is down or is not an HDHomeRun."""
        return parse_discover_json(self._get_json_body("/discover.json"), self.where)

    def lineup(self, *, refresh: bool = False) -> list[LineupEntry]:
        """``/lineup.json`` (cached after the first call unless ``refresh``)."""
        if self._lineup is None or refresh:
            self._lineup = parse_lineup_json(self._get_json_body("/lineup.json"), self.where)
        return list(self._lineup)

    def stream_url(self, guide_number: str) -> str:
        """The channel's stream URL from the lineup's ``URL`` (never built from BaseURL)."""
        gn = guide_number.strip()
        if gn.startswith("v"):
            gn = gn[1:]
        for entry in self.lineup():
            if entry.guide_number == gn:
                return entry.url
        raise not_found_error(gn, self.where)

    # -- stream port --------------------------------------------------------------------------

    def open_stream(
        self,
        guide_number: str,
        duration_s: float | None = None,
        *,
        busy_retries: int = BUSY_RETRIES,
        backoff_s: float = BUSY_BACKOFF_S,
    ) -> HdhrStream:
        """Tune and return the live body as an iterator of byte chunks.

        Errors surface here, before the first chunk: ConfigError (unknown channel, no signal),
        TunerBusyError (805 after ``busy_retries`` retries with exponential backoff from
        ``backoff_s``), UnreachableError (connection refused, timeout, not an HDHomeRun).
        """
        url = self.stream_url(guide_number) + duration_query(duration_s)

        def attempt() -> HdhrStream | Busy:
            conn, resp = self._request_stream(url)
            header = resp.getheader("X-HDHomeRun-Error")
            verdict, code = classify_stream_response(resp.status, header)
            if verdict is StreamVerdict.OK:
                return HdhrStream(conn, resp, url)
            conn.close()
            what = describe_error(code, header)
            if verdict is StreamVerdict.BUSY:
                return Busy(what)
            if verdict is StreamVerdict.NO_SIGNAL:
                raise ConfigError(f"no signal on channel {guide_number} at {self.where} ({what})")
            if verdict is StreamVerdict.CONFIG:
                if resp.status == 404:
                    raise not_found_error(guide_number, self.where)
                raise ConfigError(f"HDHomeRun {self.where} refused channel {guide_number} ({what})")
            raise UnreachableError(f"{self.where} is not an HDHomeRun: stream request returned HTTP {resp.status}")

        return retry_while_busy(
            attempt,
            who=f"HDHomeRun {self.where}",
            retries=busy_retries,
            backoff_s=backoff_s,
            gave_up=lambda what: TunerBusyError(
                f"no free tuner on {self.where} for channel {guide_number} after {busy_retries} retries ({what})"
            ),
        )

    def _request_stream(self, url: str) -> tuple[http.client.HTTPConnection, http.client.HTTPResponse]:
        parts = urlsplit(url)
        if parts.scheme != "http" or not parts.hostname:
            raise ConfigError(f"unsupported stream URL in lineup: {url!r}")
        where = format_host(parts.hostname, parts.port or 80)
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        # The header timeout must exceed the ~5 s a real tuner may take to lock.
        conn = http.client.HTTPConnection(parts.hostname, parts.port or 80, timeout=max(self.timeout_s, 6.0))
        try:
            conn.request("GET", path)
            resp = conn.getresponse()
        except (OSError, http.client.HTTPException) as e:
            conn.close()
            raise UnreachableError(f"HDHomeRun stream {where} unreachable: {_why(e)}") from e
        return conn, resp


def _why(e: BaseException) -> str:
    if isinstance(e, ConnectionRefusedError):
        return "connection refused"
    if isinstance(e, TimeoutError):
        return "timed out"
    if isinstance(e, socket.gaierror):
        return f"cannot resolve host ({e.strerror})"
    if isinstance(e, http.client.HTTPException):
        return f"not speaking HTTP ({type(e).__name__})"
    return str(e) or type(e).__name__
