"""The watch server: an aiohttp shell over a :class:`~ec_node.serve.state.WatchState` and the HLS directory.

Routes (all GET):

- ``/`` the watch page, ``/static/*`` its files, ``/vendor/hls.min.js`` hls.js from npm (``web/``);
- ``/hls/*`` the output directory: ``index.m3u8`` (source), ``browser/index.m3u8`` (browser
  rendition), ``master.m3u8`` naming both, and their segments;
- ``/status`` the JSON the page polls;
- a virtual HDHomeRun: ``/discover.json``, ``/lineup.json``, ``/lineup_status.json`` and
  ``/auto/v<GuideNumber>``, the verified chunks as one continuous MPEG-TS; ``/playlist.m3u`` for
  IPTV clients.

It only serves what is already verified: segment files the sink wrote and the state's events.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
from pathlib import Path
from typing import Any

from aiohttp import web

from ec_node.errors import OutputError
from ec_node.hdhr.device import (
    FIRMWARE_NAME,
    FIRMWARE_VERSION,
    LINEUP_STATUS,
    MODEL_NUMBER,
    Channel,
    DeviceIdentity,
    device_id_from,
    discover_json,
    lineup_json,
    m3u_playlist,
)
from ec_node.pipeline.hls import segment_name
from ec_node.serve.state import WatchState

log = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).parent / "static"
#: where `scripts/bootstrap.sh` installs the npm packages of the page (override: EC_NODE_WEB_DIR)
WEB_DIR = Path(os.environ.get("EC_NODE_WEB_DIR") or Path(__file__).resolve().parents[3] / "web")
HLS_JS = "node_modules/hls.js/dist/hls.min.js"
MAX_STREAMS = 4  # concurrent /auto streams: the TunerCount a media server sees
_TYPES = {".m3u8": "application/vnd.apple.mpegurl", ".ts": "video/mp2t", ".m4s": "video/iso.segment",
          ".mp4": "video/mp4", ".html": "text/html", ".js": "text/javascript", ".css": "text/css"}  # fmt: skip
_NO_CACHE = {"Cache-Control": "no-cache"}


async def serve_app(app: web.Application, host: str, port: int, what: str) -> tuple[web.AppRunner, str]:
    """Serve ``app`` on ``host:port`` (0: any port); returns the runner and the URL it is reachable at.

    An address that cannot be bound is OutputError (exit 7), naming ``what`` was to be served.
    """
    runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=1.0)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
    except OSError as e:
        await runner.cleanup()
        raise OutputError(f"cannot serve {what} on {host}:{port}: {e.strerror or e}") from None
    bound = runner.addresses[0]
    shown = f"[{bound[0]}]" if ":" in bound[0] else bound[0]
    return runner, f"http://{shown}:{bound[1]}"


class WatchServer:
    """HTTP for viewers, media servers and scripts; fed events with :meth:`on_event` on its loop."""

    def __init__(
        self, state: WatchState, hls_dir: Path, *, max_streams: int = MAX_STREAMS, web_dir: Path = WEB_DIR
    ) -> None:
        self.state = state
        self.hls_dir = Path(hls_dir).resolve()
        self.web_dir = web_dir
        self.max_streams = max_streams
        self.streams = 0
        self._tick = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self.url = ""

    # -- feeding --------------------------------------------------------------------------------
    def on_event(self, ev: dict[str, Any]) -> None:
        """Apply one node event, waking streams on a new segment or the end (call on the server's loop)."""
        self.state.apply(ev)
        if ev.get("event") in ("segment", "end"):
            self._tick.set()
            self._tick = asyncio.Event()

    # -- lifecycle ------------------------------------------------------------------------------
    async def start(self, host: str, port: int) -> str:
        """Bind and serve; return the base URL (``http://host:port``). OutputError if the port is taken."""
        app = web.Application()
        app.add_routes(
            [
                web.get("/", self._page),
                web.get("/static/{name}", self._static),
                web.get("/vendor/hls.min.js", self._hls_js),
                web.get("/status", self._status),
                web.get("/hls/{path:.+}", self._hls),
                web.get("/discover.json", self._discover),
                web.get("/lineup.json", self._lineup),
                web.get("/lineup_status.json", self._lineup_status),
                web.get("/playlist.m3u", self._m3u),
                web.get("/lineup.m3u", self._m3u),
                web.get("/auto/v{guide}", self._auto),
            ]
        )
        self._runner, self.url = await serve_app(app, host, port, "HTTP")
        return self.url

    async def stop(self) -> None:
        """Stop serving; open streams end."""
        self._tick.set()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # -- handlers -------------------------------------------------------------------------------
    async def _page(self, request: web.Request) -> web.StreamResponse:
        return _file(STATIC_DIR / "watch.html", _NO_CACHE)

    async def _static(self, request: web.Request) -> web.StreamResponse:
        return _file(_inside(STATIC_DIR, request.match_info["name"]))

    async def _hls_js(self, request: web.Request) -> web.StreamResponse:
        return _file(self.web_dir / HLS_JS)

    async def _status(self, request: web.Request) -> web.StreamResponse:
        return web.json_response(self.state.status(), headers={**_NO_CACHE, "Access-Control-Allow-Origin": "*"})

    async def _hls(self, request: web.Request) -> web.StreamResponse:
        path = _inside(self.hls_dir, request.match_info["path"])
        cache = _NO_CACHE if path.suffix == ".m3u8" else {"Cache-Control": "max-age=3600"}
        return _file(path, {**cache, "Access-Control-Allow-Origin": "*"})

    def _channels(self, base: str) -> list[Channel]:
        ch = self.state.channel
        if ch is None:
            return []
        return [Channel(ch.guide_number, ch.name, f"{base}/auto/v{ch.guide_number}", ch.video_codec, ch.audio_codec)]

    def _device(self) -> DeviceIdentity:
        seed = (self.state.stream_id or self.state.broadcast).encode()
        name = self.state.channel.name if self.state.channel else self.state.broadcast[:16]
        return DeviceIdentity(
            device_id_from(seed), f"every.channel {name}".strip(), MODEL_NUMBER, FIRMWARE_NAME, FIRMWARE_VERSION,
            device_id_from(seed + b"auth").to_bytes(4, "big").hex(), self.max_streams,
        )  # fmt: skip

    async def _discover(self, request: web.Request) -> web.StreamResponse:
        return web.json_response(discover_json(self._device(), _base(request)))

    async def _lineup(self, request: web.Request) -> web.StreamResponse:
        return web.json_response(lineup_json(self._channels(_base(request))))

    async def _lineup_status(self, request: web.Request) -> web.StreamResponse:
        return web.json_response(LINEUP_STATUS)

    async def _m3u(self, request: web.Request) -> web.StreamResponse:
        return web.Response(text=m3u_playlist(self._channels(_base(request))), content_type="audio/x-mpegurl")

    async def _auto(self, request: web.Request) -> web.StreamResponse:
        """The channel as a tuner streams it: verified chunks back to back, from the latest one on."""
        ch = self.state.channel
        if ch is None or request.match_info["guide"] != ch.guide_number:
            return _tuner_error(404, "801 Unknown Channel")
        if self.streams >= self.max_streams:
            return _tuner_error(503, "805 All Tuners In Use")
        try:
            duration_s = float(request.query.get("duration", "0"))
        except ValueError:
            return web.Response(status=400, text="duration must be a number of seconds\n")
        resp = web.StreamResponse(headers={"Content-Type": "video/mpeg", "X-HDHomeRun-Resource": "ec-node"})
        recent = self.state.segments_after(0)
        start = recent[-1].sequence - 1 if recent else self.state.segments  # the latest chunk: it starts with PAT/PMT
        self.streams += 1
        try:
            await resp.prepare(request)
            await self._pump(resp, start, duration_s)
            with contextlib.suppress(ConnectionError):
                await resp.write_eof()
        except ConnectionError:
            pass  # the client went away
        finally:
            self.streams -= 1
        return resp

    async def _pump(self, resp: web.StreamResponse, seq: int, duration_s: float) -> None:
        """Write every verified segment after ``seq`` as it comes, until the end or ``duration_s`` of media."""
        sent_s = 0.0
        while duration_s <= 0 or sent_s < duration_s:
            tick = self._tick
            todo = self.state.segments_after(seq)
            if not todo:
                if self.state.state == "ended" or self._runner is None:
                    return
                await tick.wait()
                continue
            if todo[0].sequence != seq + 1:
                log.info("stream client fell behind: skipping to chunk %d", todo[0].chunk_index)
            for seg in todo:
                seq = seg.sequence
                try:
                    data = await asyncio.to_thread((self.hls_dir / segment_name(seg.chunk_index)).read_bytes)
                except FileNotFoundError:
                    continue  # retired meanwhile: as a tuner drops what it could not send
                await resp.write(data)
                sent_s += seg.duration_ms / 1000


def _base(request: web.Request) -> str:
    return str(request.url.origin())


def _tuner_error(status: int, text: str) -> web.Response:
    return web.Response(status=status, text=text + "\n", headers={"X-HDHomeRun-Error": text})


def _inside(root: Path, rel: str) -> Path:
    """``root/rel`` if it stays inside root (no ``..``, no hidden files), else 404."""
    path = (root / rel).resolve()
    if not path.is_relative_to(root.resolve()) or any(part.startswith(".") for part in Path(rel).parts):
        raise web.HTTPNotFound()
    return path


def _file(path: Path, headers: dict[str, str] | None = None) -> web.StreamResponse:
    if not path.is_file():
        raise web.HTTPNotFound()
    ctype = _TYPES.get(path.suffix, "application/octet-stream")
    return web.FileResponse(path, headers={**(headers or {}), "Content-Type": ctype})


class ThreadedWatchServer:
    """A :class:`WatchServer` on its own loop in a thread, for synchronous callers (the demo, tests)."""

    def __init__(
        self, state: WatchState, hls_dir: Path, host: str = "127.0.0.1", port: int = 0, *, web_dir: Path = WEB_DIR
    ) -> None:
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._done: asyncio.Event | None = None
        self.server: WatchServer | None = None
        self._thread = threading.Thread(target=self._run, args=(state, hls_dir, host, port, web_dir), daemon=True)
        self._thread.start()
        self._ready.wait()
        if self._error is not None:
            raise self._error
        assert self.server is not None
        self.url: str = self.server.url

    def _run(self, state: WatchState, hls_dir: Path, host: str, port: int, web_dir: Path) -> None:
        async def main() -> None:
            self._done = asyncio.Event()
            self.server = WatchServer(state, hls_dir, web_dir=web_dir)
            try:
                await self.server.start(host, port)
            except BaseException as e:  # reported to the constructor's caller
                self._error = e
                self._ready.set()
                return
            self._ready.set()
            await self._done.wait()
            await self.server.stop()

        self._loop.run_until_complete(main())
        self._loop.close()

    def on_event(self, ev: dict[str, Any]) -> None:
        """Thread-safe :meth:`WatchServer.on_event`."""
        if self.server is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self.server.on_event, ev)

    def flush(self) -> None:
        """Return once every event given so far has been applied (an event to wait on, not a sleep)."""

        async def nothing() -> None:
            return None

        if not self._loop.is_closed():
            asyncio.run_coroutine_threadsafe(nothing(), self._loop).result(timeout=10)

    def stop(self) -> None:
        """Stop the server and its thread."""
        if self._done is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._done.set)
        self._thread.join(timeout=10)
