"""A faithful fake HDHomeRun on loopback: HTTP API, PCR-paced streams, tuner allocation, UDP discovery.

Three listeners, each on its own thread (all stdlib):

* control HTTP (port 80 on a real device): ``/discover.json``, ``/lineup.json``,
  ``/lineup_status.json``, ``/status.json``, with real devices' field names and types;
* stream HTTP (5004): ``/auto/v<GuideNumber>`` and ``/tuner<N>/v<GuideNumber>``, ``?duration=``,
  errors 404/801, 503/804, 503/805 with ``X-HDHomeRun-Error``, ``X-HDHomeRun-Resource: tunerN``;
* UDP discovery (65001) answering libhdhomerun's DISCOVER_REQ.

Every stream replays the media file paced by its own PCR (see :mod:`ec_node.devkit.pacing` for the
loop/discontinuity rules). Streams of a channel that overlap in time carry the same bytes, as two
tuners on one station do: a stream starts at the pass of the channel's running streams, or, when
none runs, at the pass after the last one's, so a re-tune's broadcast time (STT) and continuity
counters run on as a real channel's would while its PTS starts over. Two emulators serve their
first streams alike.
``duration`` and ``cut_after_s`` count *media* seconds, which equal wall seconds at ``serve_speed=1``.
All channels carry the whole file (no PID filtering).

Fault injection (constructor args and CLI flags): ``tuning_delay_ms`` before headers,
``cut_after_s`` (close every stream after that much media), ``junk_at_s`` (100 non-TS bytes
once per stream), ``busy_for_s`` (503/805 for everything during the first seconds),
``serve_speed`` (0 = unpaced) and ``tune_error`` (answer every tune with 503 and this code,
e.g. 806 or 807, after the tuning delay). Per channel, at run time: :meth:`HdhrEmulator.take_off_air`
(the channel loses its signal: its streams end now and tuning it answers 503/807 until
:meth:`HdhrEmulator.put_on_air`), so a test can fault one channel and watch the others go on.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import logging
import re
import signal
import socket
import socketserver
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, urlsplit

from ec_node.devkit.pacing import TsMedia, load_ts, schedule
from ec_node.errors import BadInputError, ConfigError, UsageError
from ec_node.hdhr import discovery
from ec_node.hdhr.api import ERROR_TEXT
from ec_node.hdhr.device import (
    FIRMWARE_NAME,
    FIRMWARE_VERSION,
    LINEUP_STATUS,
    MODEL_NUMBER,
    Channel,
    DeviceIdentity,
    discover_json,
    lineup_json,
)
from ec_node.ts.inspect import probe_channels

log = logging.getLogger(__name__)

DEFAULT_DEVICE_ID = 0x1FA4E002
DEFAULT_CHANNEL = ("7.1", "WSYN-HD")
FRIENDLY_NAME = "HDHomeRun CONNECT QUATRO"
JUNK = bytes(b for b in range(0x80, 0xE4) if b != 0x47)  # 100 bytes with no sync byte
_STREAM_PATH = re.compile(r"/(?:auto|tuner([0-9]{1,3}))/v([0-9]{1,4}(?:\.[0-9]{1,4})?)")
_CHANNEL_ARG = re.compile(r"([0-9]{1,4}(?:\.[0-9]{1,4})?)=(.{1,64})")


@dataclass(frozen=True)
class EmulatedChannel:
    """One lineup entry the emulator serves, with the codecs and program number it reports."""

    guide_number: str
    guide_name: str
    video_codec: str | None = "MPEG2"
    audio_codec: str | None = "AC3"
    program_number: int = 1


def parse_channel_arg(text: str) -> tuple[str, str]:
    """``7.1=WSYN-HD`` → ("7.1", "WSYN-HD"); UsageError otherwise."""
    m = _CHANNEL_ARG.fullmatch(text.strip())
    if not m:
        raise UsageError(f"bad --channel {text!r}; expected GUIDENUMBER=NAME such as 7.1=WSYN-HD")
    return m.group(1), m.group(2)


def parse_device_id(text: str) -> int:
    """``1FA4E002`` → int; UsageError unless it is 8 hex digits passing libhdhomerun's checksum."""
    t = text.strip()
    if not re.fullmatch(r"[0-9A-Fa-f]{8}", t):
        raise UsageError(f"bad device id {text!r}; expected 8 hex digits such as 1FA4E002")
    value = int(t, 16)
    if not discovery.validate_device_id(value):
        raise UsageError(f"device id {t.upper()} fails the HDHomeRun checksum; real clients would ignore it")
    return value


@dataclass
class _Tuner:
    channel: EmulatedChannel
    target_ip: str


class _Server(ThreadingHTTPServer):
    """Threaded HTTP server whose stop() leaves no thread or connection behind."""

    daemon_threads = False  # tracked, so server_close() joins every handler thread
    block_on_close = True

    def __init__(self, addr: tuple[str, int], handler: type[BaseHTTPRequestHandler], emu: HdhrEmulator) -> None:
        self.emu = emu
        self._conns: set[socket.socket] = set()
        self._conns_lock = threading.Lock()
        super().__init__(addr, handler)

    def server_bind(self) -> None:
        socketserver.TCPServer.server_bind(self)  # skip HTTPServer's reverse-DNS getfqdn()
        host, port = self.server_address[:2]
        self.server_name, self.server_port = str(host), int(port)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._conns_lock:
            self._conns.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._conns_lock:
            self._conns.discard(request)
        super().shutdown_request(request)

    def abort_connections(self) -> None:
        with self._conns_lock:
            conns = list(self._conns)
        for s in conns:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    timeout = 15.0  # a client that stops reading cannot hold a tuner forever
    server_version = "HDHomeRun/1.0"
    sys_version = ""

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        log.debug("%s %s", self.client_address[0], format % args)

    def _send(
        self, status: int, body: bytes = b"", ctype: str = "text/plain", headers: dict[str, str] | None = None
    ) -> None:
        self.send_response(status)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if body and self.command != "HEAD":
            self.wfile.write(body)

    def _error(self, status: int, code: int | None) -> None:
        headers = {"X-HDHomeRun-Error": f"{code} {ERROR_TEXT[code]}"} if code else {}
        text = f"{status} {ERROR_TEXT[code] if code else self.responses.get(status, ('',))[0]}\n"
        self._send(status, text.encode(), headers=headers)


class _ControlHandler(_Handler):
    protocol_version = "HTTP/1.0"

    def do_GET(self) -> None:  # noqa: N802 - stdlib name
        path = urlsplit(self.path).path
        body = self.server.emu.control_json(path)
        if body is None:
            self._send(404, b"404 Not Found\n")
        else:
            self._send(200, json.dumps(body).encode(), "application/json")

    do_HEAD = do_GET  # noqa: N815


class _StreamHandler(_Handler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:  # noqa: N802 - stdlib name
        self.close_connection = True
        self.server.emu._serve_stream(self)


class HdhrEmulator:
    """Fake tuner serving ``media``. Use as a context manager, or start()/stop()."""

    def __init__(
        self,
        media: Path,
        *,
        tuners: int = 2,
        bind: str = "127.0.0.1",
        http_port: int = 0,
        stream_port: int = 0,
        discover_port: int = 0,
        device_id: int = DEFAULT_DEVICE_ID,
        channels: Sequence[tuple[str, str]] | None = None,
        tuning_delay_ms: int = 0,
        cut_after_s: float | None = None,
        junk_at_s: float | None = None,
        busy_for_s: float = 0.0,
        serve_speed: float = 1.0,
        tune_error: int | None = None,
    ) -> None:
        if not 1 <= tuners <= 64:
            raise UsageError(f"tuners must be 1..64, got {tuners}")
        if not discovery.validate_device_id(device_id):
            raise UsageError(f"device id {device_id:08X} fails the HDHomeRun checksum; real clients ignore it")
        if serve_speed < 0 or tuning_delay_ms < 0 or busy_for_s < 0:
            raise UsageError("serve speed, tuning delay and busy time must not be negative")
        if tune_error is not None and tune_error not in ERROR_TEXT:
            raise UsageError(f"unknown HDHomeRun error code {tune_error}")
        self.media_path = Path(media)
        self.tuners = tuners
        self.bind = bind
        self.device_id = device_id
        self.tuning_delay_ms = tuning_delay_ms
        self.cut_after_s = cut_after_s
        self.junk_at_s = junk_at_s
        self.busy_for_s = busy_for_s
        self.serve_speed = serve_speed
        self.tune_error = tune_error
        self._want_ports = (http_port, stream_port, discover_port)
        self.media: TsMedia = _load_media(self.media_path)
        self.channels = _make_channels(self.media.data, channels)
        self._tuners: list[_Tuner | None] = [None] * tuners
        self._lock = threading.Lock()
        self._released = threading.Condition(self._lock)
        self._stop = threading.Event()
        self._started_at = 0.0
        self._off_air: set[str] = set()  # guide numbers without a signal (take_off_air)
        self._streams: dict[int, tuple[str, threading.Event]] = {}  # live streams: guide number, cut
        self._threads: list[threading.Thread] = []
        self._control: _Server | None = None
        self._stream: _Server | None = None
        self._udp: socket.socket | None = None
        self.http_port = self.stream_port = self.discover_port = 0
        self.streams_served = 0
        self._passes: dict[str, tuple[int, int]] = {}  # per channel: (pass of its streams, how many run)

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self) -> HdhrEmulator:
        """Bind all three listeners and start their threads; ConfigError if one cannot listen."""
        http_port, stream_port, discover_port = self._want_ports
        try:
            self._control = _Server((self.bind, http_port), _ControlHandler, self)
            self._stream = _Server((self.bind, stream_port), _StreamHandler, self)
            self._udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            self._udp.bind((self.bind, discover_port))
        except OSError as e:
            self._close_sockets()
            raise ConfigError(f"emulator cannot listen on {self.bind}: {e.strerror or e}") from e
        self._udp.settimeout(1.0)
        self.http_port = self._control.server_address[1]
        self.stream_port = self._stream.server_address[1]
        self.discover_port = self._udp.getsockname()[1]
        self._started_at = time.monotonic()
        for name, target, args in (
            ("hdhr-control", self._control.serve_forever, (0.05,)),
            ("hdhr-stream", self._stream.serve_forever, (0.05,)),
            ("hdhr-discover", self._udp_loop, ()),
        ):
            t = threading.Thread(target=target, args=args, name=name, daemon=True)
            t.start()
            self._threads.append(t)
        log.info("HDHomeRun emulator %08X at %s", self.device_id, self.base_url)
        return self

    def stop(self) -> None:
        """Stop listening, end every stream, join every thread."""
        self._stop.set()
        with self._lock:
            for _, cut in self._streams.values():
                cut.set()
        if self._udp is not None:  # wake the discovery thread now rather than at its next timeout
            with contextlib.suppress(OSError):
                self._udp.sendto(b"", self._udp.getsockname())
        for srv in (self._control, self._stream):
            if srv is not None:
                srv.shutdown()
                srv.abort_connections()
        for t in self._threads:
            t.join()
        self._threads.clear()
        self._close_sockets()

    def _close_sockets(self) -> None:
        for srv in (self._control, self._stream):
            if srv is not None:
                srv.abort_connections()
                srv.server_close()  # joins handler threads
        if self._udp is not None:
            self._udp.close()
        self._control = self._stream = None
        self._udp = None

    def __enter__(self) -> HdhrEmulator:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def run_until_signal(self, on_ready: Callable[[dict[str, Any]], None]) -> None:
        """CLI shell: start, report readiness, serve until SIGINT/SIGTERM, stop cleanly."""
        got = threading.Event()
        old = {s: signal.signal(s, lambda *_: got.set()) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            self.start()
            try:
                on_ready(self.info())
                while not got.wait(0.5):
                    pass
            finally:
                self.stop()
        finally:
            for s, h in old.items():
                signal.signal(s, h)

    # -- identity -------------------------------------------------------------------------------

    @property
    def host(self) -> str:
        """Address clients should use: loopback when bound to all interfaces."""
        return "127.0.0.1" if self.bind in ("", "0.0.0.0") else self.bind

    @property
    def base_url(self) -> str:
        """Control API URL, advertised in discover.json and discovery replies."""
        return f"http://{self.host}:{self.http_port}"

    @property
    def lineup_url(self) -> str:
        """``LineupURL``, advertised in discover.json and discovery replies."""
        return f"{self.base_url}/lineup.json"

    @property
    def device_auth(self) -> str:
        """Stable fake ``DeviceAuth`` token derived from the device id."""
        return base64.b64encode(hashlib.sha256(f"{self.device_id:08X}".encode()).digest()[:18]).decode()

    def stream_url(self, guide_number: str, tuner: int | None = None) -> str:
        """Stream URL for a channel, on any free tuner (``auto``) or the given one."""
        where = "auto" if tuner is None else f"tuner{tuner}"
        return f"http://{self.host}:{self.stream_port}/{where}/v{guide_number}"

    def info(self) -> dict[str, Any]:
        """The JSON ready line: device id, ports, URLs and channels."""
        return {
            "event": "ready",
            "device_id": f"{self.device_id:08X}",
            "base_url": self.base_url,
            "lineup_url": self.lineup_url,
            "http_port": self.http_port,
            "stream_port": self.stream_port,
            "discover_port": self.discover_port,
            "tuners": self.tuners,
            "channels": [
                {"GuideNumber": c.guide_number, "GuideName": c.guide_name, "URL": self.stream_url(c.guide_number)}
                for c in self.channels
            ],
        }

    # -- control API ------------------------------------------------------------------------------

    def control_json(self, path: str) -> Any | None:
        """Body for a control API path, or None (404) for an unknown one."""
        if path == "/discover.json":
            dev = DeviceIdentity(self.device_id, FRIENDLY_NAME, MODEL_NUMBER, FIRMWARE_NAME, FIRMWARE_VERSION,
                                 self.device_auth, self.tuners)  # fmt: skip
            return discover_json(dev, self.base_url)
        if path == "/lineup.json":
            return lineup_json(
                [
                    Channel(c.guide_number, c.guide_name, self.stream_url(c.guide_number), c.video_codec, c.audio_codec)
                    for c in self.channels
                ]  # fmt: skip
            )
        if path == "/lineup_status.json":
            return {**LINEUP_STATUS, "ScanPossible": 1, "SourceList": ["Antenna", "Cable"]}
        if path == "/status.json":
            return self.status()
        return None

    def status(self) -> list[dict[str, Any]]:
        """``/status.json``: one entry per tuner, with channel and client IP when in use."""
        with self._lock:
            snap = list(self._tuners)
        out: list[dict[str, Any]] = []
        for i, t in enumerate(snap):
            if t is None:
                out.append({"Resource": f"tuner{i}", "InUse": 0})
            else:
                out.append(
                    {
                        "Resource": f"tuner{i}",
                        "InUse": 1,
                        "VctNumber": t.channel.guide_number,
                        "VctName": t.channel.guide_name,
                        "Frequency": 177000000,
                        "ProgramNumber": t.channel.program_number,
                        "LockSupported": 1,
                        "SignalStrength": 100,
                        "SignalQuality": 100,
                        "SymbolQuality": 100,
                        "NetworkRate": 19392000,
                        "TargetIP": t.target_ip,
                    }
                )
        return out

    # -- tuners -----------------------------------------------------------------------------------

    def _allocate(self, want: int | None, channel: EmulatedChannel, ip: str) -> int:
        """Tuner index ≥ 0, or -(error code)."""
        with self._lock:
            if want is not None:
                if self._tuners[want] is not None:
                    return -804
                self._tuners[want] = _Tuner(channel, ip)
                return want
            for i, t in enumerate(self._tuners):
                if t is None:
                    self._tuners[i] = _Tuner(channel, ip)
                    return i
            return -805

    def _release(self, index: int) -> None:
        with self._lock:
            self._tuners[index] = None
            self._released.notify_all()

    def wait_tuners_free(self, timeout: float | None = None) -> bool:
        """Block until no tuner is allocated (a client's disconnect is seen on the next write)."""
        with self._released:
            return self._released.wait_for(lambda: all(t is None for t in self._tuners), timeout)

    def tuners_in_use(self) -> int:
        """Number of tuners currently allocated to streams."""
        with self._lock:
            return sum(t is not None for t in self._tuners)

    # -- per-channel faults -----------------------------------------------------------------------

    def take_off_air(self, guide_number: str) -> int:
        """The channel loses its signal: every stream of it ends now (the client sees the body end)
        and tuning it answers 503 with 807 No Video Data until :meth:`put_on_air`. Other channels
        are untouched. Returns how many streams were cut."""
        with self._lock:
            self._off_air.add(guide_number)
            cuts = [cut for gn, cut in self._streams.values() if gn == guide_number]
        for cut in cuts:
            cut.set()
        log.info("channel %s off the air (%d streams cut)", guide_number, len(cuts))
        return len(cuts)

    def put_on_air(self, guide_number: str) -> None:
        """The channel's signal is back: tuning it streams again."""
        with self._lock:
            self._off_air.discard(guide_number)
        log.info("channel %s back on the air", guide_number)

    def streams_of(self, guide_number: str) -> int:
        """How many streams of this channel are being served now."""
        with self._lock:
            return sum(1 for gn, _ in self._streams.values() if gn == guide_number)

    # -- streams ----------------------------------------------------------------------------------

    def _serve_stream(self, h: _StreamHandler) -> None:
        parts = urlsplit(h.path)
        m = _STREAM_PATH.fullmatch(parts.path)
        if m is None:
            if parts.path.startswith(("/auto/", "/tuner")):
                h._error(404, 801)
            else:
                h._send(404, b"404 Not Found\n")
            return
        want = int(m.group(1)) if m.group(1) is not None else None
        channel = next((c for c in self.channels if c.guide_number == m.group(2)), None)
        if want is not None and want >= self.tuners:
            h._send(404, b"404 Not Found\n")
            return
        if channel is None:
            h._error(404, 801)
            return
        duration: float | None = None
        q = parse_qs(parts.query)
        if "duration" in q:
            try:
                duration = float(q["duration"][0])
                if not duration > 0 or duration != duration:
                    raise ValueError
            except ValueError:
                h._send(400, b"400 Bad Request\n")
                return
        if time.monotonic() - self._started_at < self.busy_for_s:
            h._error(503, 805)
            return
        got = self._allocate(want, channel, h.client_address[0])
        if got < 0:
            h._error(503, -got)
            return
        gn = channel.guide_number
        with self._lock:  # the pass this stream carries: its channel's running streams', else the next
            last, running = self._passes.get(gn, (-1, 0))
            first_pass = last if running else last + 1
            self._passes[gn] = (first_pass, running + 1)
        try:
            if self.tuning_delay_ms and self._stop.wait(self.tuning_delay_ms / 1000):
                return
            if self.tune_error is not None:
                h._error(503, self.tune_error)
                return
            with self._lock:
                off_air = channel.guide_number in self._off_air
            if off_air:
                h._error(503, 807)
                return
            h.send_response(200)
            h.send_header("Content-Type", "video/mpeg")
            h.send_header("X-HDHomeRun-Resource", f"tuner{got}")
            h.send_header("Connection", "close")
            h.end_headers()
            self._pump(h, duration, gn, first_pass)
        finally:
            with self._lock:
                at, running = self._passes[gn]
                self._passes[gn] = (at, running - 1)
            self._release(got)

    def _pump(self, h: _StreamHandler, duration: float | None, guide_number: str, first_pass: int) -> None:
        cut = threading.Event()  # set by take_off_air (this channel) or stop (every stream)
        token = id(cut)
        with self._lock:
            self._streams[token] = (guide_number, cut)
            if guide_number in self._off_air or self._stop.is_set():
                cut.set()
        try:
            self._pump_until(h, duration, cut, first_pass)
        finally:
            with self._lock:
                self._streams.pop(token, None)

    def _pump_until(self, h: _StreamHandler, duration: float | None, cut: threading.Event, first_pass: int) -> None:
        limit = duration
        if self.cut_after_s is not None:
            limit = self.cut_after_s if limit is None else min(limit, self.cut_after_s)
        junk_at = self.junk_at_s
        start = time.monotonic()
        with self._lock:
            self.streams_served += 1
        try:
            for seg in schedule(self.media, first_pass=first_pass):
                if limit is not None and seg.media_s >= limit:
                    break
                if self.serve_speed > 0:
                    wait = start + seg.media_s / self.serve_speed - time.monotonic()
                    if wait > 0 and cut.wait(wait):
                        break
                if cut.is_set():
                    break
                if junk_at is not None and seg.media_s >= junk_at:
                    h.wfile.write(JUNK)
                    junk_at = None
                h.wfile.write(seg.data)
        except OSError as e:  # client went away (reset, broken pipe, write timeout)
            log.debug("stream client %s gone: %s", h.client_address[0], e)

    # -- UDP discovery ----------------------------------------------------------------------------

    def _udp_loop(self) -> None:
        sock = self._udp
        assert sock is not None
        while not self._stop.is_set():
            try:
                data, addr = sock.recvfrom(discovery.MAX_PACKET + 1)
            except TimeoutError:
                continue
            except OSError:
                break
            try:
                pkt = discovery.parse_packet(data)
            except discovery.DiscoveryPacketError as e:
                log.debug("ignoring bad discovery packet from %s: %s", addr[0], e)
                continue
            if not discovery.request_matches(pkt, discovery.DEVICE_TYPE_TUNER, self.device_id):
                continue
            reply = discovery.build_reply(
                self.device_id,
                tuner_count=self.tuners,
                base_url=self.base_url,
                lineup_url=self.lineup_url,
                device_auth=self.device_auth,
            )
            try:
                sock.sendto(reply, addr)
            except OSError as e:
                log.debug("discovery reply to %s failed: %s", addr, e)


def _load_media(path: Path) -> TsMedia:
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise BadInputError(f"cannot read media {path}: {e.strerror or e}") from e
    return load_ts(raw)


def _make_channels(data: bytes, channels: Sequence[tuple[str, str]] | None) -> list[EmulatedChannel]:
    probed = probe_channels(data)
    first = probed[0] if probed else None
    vc = first.video_codec if first else "MPEG2"
    ac = first.audio_codec if first else "AC3"
    prog = first.program_number if first else 1
    if channels:
        seen: set[str] = set()
        out = []
        for gn, name in channels:
            if gn in seen:
                raise UsageError(f"channel {gn} given twice")
            seen.add(gn)
            out.append(EmulatedChannel(gn, name, vc, ac, prog))
        return out
    from_psip = [
        EmulatedChannel(p.guide_number, p.guide_name or p.guide_number, p.video_codec, p.audio_codec, p.program_number)
        for p in probed
        if p.guide_number
    ]
    return from_psip or [EmulatedChannel(DEFAULT_CHANNEL[0], DEFAULT_CHANNEL[1], vc, ac, prog)]
