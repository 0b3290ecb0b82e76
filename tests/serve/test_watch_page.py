"""The watch page (src/ec_node/serve/static) in a real Chromium: it follows /status and plays the node's HLS.

The page is served by a small aiohttp app built here to the serving contract (/, /static/*, /vendor/hls.min.js,
/hls/*, /status), so the page is tested on its own. The HLS is real H.264 + AAC: synthesized, cut by the
Chunker and written by HlsSink, as a subscriber would.
"""

from __future__ import annotations

import asyncio
import json
import threading
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from ec_node.devkit.media_cache import cached_media
from ec_node.devkit.synth import preset_options
from ec_node.pipeline.hls import HlsSink
from ec_node.ts.chunker import Chunker, measure_duration_ms

from support.browser import artifacts_dir, browser_page, screenshot, wait_playing, wait_text

REPO = Path(__file__).resolve().parents[2]
STATIC = REPO / "src" / "ec_node" / "serve" / "static"
HLSJS = REPO / "web" / "node_modules" / "hls.js" / "dist" / "hls.min.js"
H264_12S = preset_options("small", "h264", duration_s=12.0)
CONTENT_TYPES = {".m3u8": "application/vnd.apple.mpegurl", ".ts": "video/mp2t"}
WAITING_TEXT = "waiting for the first verified segment"

pytestmark = pytest.mark.slow


class PageServer:
    """The serving contract on 127.0.0.1 (an ephemeral port), run by its own loop in a background thread."""

    def __init__(self, hls_dir: Path, status: dict[str, Any], *, hlsjs: Path | None = HLSJS) -> None:
        self.hls_dir = hls_dir.resolve()
        self.status = status  # replaced whole by the test; read by the /status handler
        self.hlsjs = hlsjs
        self.url = ""
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="page-server", daemon=True)
        self._runner: web.AppRunner | None = None

    def _app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/", self._index)
        app.router.add_get("/status", self._status)
        app.router.add_get("/vendor/hls.min.js", self._hlsjs)
        app.router.add_get("/hls/{path:.+}", self._hls)
        app.router.add_static("/static", STATIC)
        return app

    async def _index(self, _req: web.Request) -> web.StreamResponse:
        return web.FileResponse(STATIC / "watch.html")

    async def _status(self, _req: web.Request) -> web.Response:
        return web.json_response(self.status, dumps=json.dumps, headers={"Cache-Control": "no-store"})

    async def _hlsjs(self, _req: web.Request) -> web.StreamResponse:
        if self.hlsjs is None or not self.hlsjs.is_file():
            raise web.HTTPNotFound()
        return web.FileResponse(self.hlsjs)

    async def _hls(self, req: web.Request) -> web.StreamResponse:
        path = (self.hls_dir / req.match_info["path"]).resolve()
        if not path.is_relative_to(self.hls_dir) or not path.is_file() or path.suffix not in CONTENT_TYPES:
            raise web.HTTPNotFound()
        # explicit types: the system's mime table may call .ts "text/vnd.trolltech.linguist"
        return web.FileResponse(path, headers={"Content-Type": CONTENT_TYPES[path.suffix], "Cache-Control": "no-cache"})

    async def _start(self) -> str:
        self._runner = web.AppRunner(self._app())
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        host, port = self._runner.addresses[0][:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> PageServer:
        self._thread.start()
        self.url = asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(timeout=30)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(timeout=30)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=30)
        self._loop.close()


def node_status(state: str, play: str | None, segments: int, *, reason: str | None = None) -> dict[str, Any]:
    """A /status body as the node serves it."""
    return {
        "channel": {"name": "WSYN-HD", "guide_number": "7.1"},
        "broadcast": "wsyn-hd-7-1",
        "stream_id": "5e1f" * 8,
        "state": state,
        "reason": reason,
        "play": play,
        "counters": {
            "segments": segments,
            "rendition_segments": 0,
            "rejected": {"bad_tag": 2} if segments else {},
            "dropped": 1 if segments else 0,
            "manifests": 3 if segments else 0,
        },
        "peers": [
            {"name": "relay-a", "track": "chunks", "up": True},
            {"name": "leader", "track": "manifests", "up": segments > 0},
        ],
        "latest": {"chunk_index": 41, "duration_ms": 2002, "latency_ms": 3.25} if segments else None,
    }


@pytest.fixture(scope="module")
def recording(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int]:
    """An ended HLS recording of ~12 s of H.264 + AAC: (directory, number of segments)."""
    out = tmp_path_factory.mktemp("hls")
    sink = HlsSink(out, chunk_ms=2000)
    chunker = Chunker(2000)
    chunks = chunker.feed(cached_media(H264_12S).read_bytes()) + chunker.flush()
    for c in chunks:
        if c.complete and not c.damaged:
            sink.write(c.index, c.data, measure_duration_ms(c.data) or c.duration_ms)
    sink.finish()
    assert sink.written >= 4
    return out, sink.written


def ec_watch(page: Any) -> dict[str, Any]:
    return dict(page.evaluate("() => ({engine: ecWatch.engine, errors: ecWatch.errors, status: ecWatch.status})"))


def test_page_waits_then_plays_with_the_default_engine(recording, tmp_path, request):
    hls_dir, n = recording
    artifacts = artifacts_dir(request, tmp_path)
    with PageServer(hls_dir, node_status("waiting", None, 0)) as srv, browser_page(tmp_path, artifacts=artifacts) as bp:
        page = bp.page
        page.goto(srv.url + "/")
        wait_text(page, "#channel-name", "WSYN-HD")
        wait_text(page, "#state", WAITING_TEXT)
        assert page.title().startswith("WSYN-HD")
        assert ec_watch(page)["engine"] is None  # nothing to play yet

        srv.status = node_status("live", "/hls/index.m3u8", n)
        wait_playing(page, seconds=4)
        wait_text(page, "#segments", str(n))
        screenshot(page, artifacts / "watch-default.png")

        w = ec_watch(page)
        native = page.evaluate("() => document.getElementById('video').canPlayType('application/vnd.apple.mpegurl')")
        assert w["engine"] == ("native" if native else "hls.js"), bp.log()
        assert w["errors"] == [], bp.log()
        assert w["status"]["state"] == "live"
        assert page.evaluate("() => document.getElementById('video').error") is None
        assert page.text_content("#state") == "live"
        assert page.text_content("#dropped") == "1" and page.text_content("#manifests") == "3"
        assert "bad_tag: 2" in (page.text_content("#rejected") or "")
        peers = page.text_content("#peers") or ""
        assert "relay-a" in peers and "leader" in peers
        assert "#41" in (page.text_content("#latest-chunk") or "")
        assert not bp.page_errors, bp.log()
    assert (artifacts / "watch-default.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_page_plays_an_ended_recording_with_hlsjs(recording, tmp_path, request):
    if not HLSJS.is_file():
        pytest.skip("hls.js is not installed (scripts/bootstrap.sh runs npm ci in web/ when npm exists)")
    hls_dir, n = recording
    artifacts = artifacts_dir(request, tmp_path)
    status = node_status("ended", "/hls/index.m3u8", n, reason="stream ended")
    with (
        PageServer(hls_dir, status) as srv,
        browser_page(tmp_path, artifacts=artifacts, init_script="window.EC_FORCE_HLSJS = true;") as bp,
    ):
        page = bp.page
        page.goto(srv.url + "/")
        wait_text(page, "#state", "ended")
        wait_playing(page, seconds=4)
        wait_text(page, "#segments", str(n))
        screenshot(page, artifacts / "watch-hlsjs.png")

        w = ec_watch(page)
        assert w["engine"] == "hls.js", bp.log()
        assert w["errors"] == [], bp.log()
        assert page.evaluate("() => typeof Hls === 'function' && Hls.version") == "1.7.4"
        assert page.text_content("#reason") == "stream ended"
        assert not bp.page_errors, bp.log()
    assert (artifacts / "watch-hlsjs.png").is_file()


def test_forced_hlsjs_without_hlsjs_reports_it(recording, tmp_path, request):
    hls_dir, n = recording
    artifacts = artifacts_dir(request, tmp_path)
    with (
        PageServer(hls_dir, node_status("live", "/hls/index.m3u8", n), hlsjs=None) as srv,
        browser_page(tmp_path, artifacts=artifacts) as bp,
    ):
        page = bp.page
        page.goto(srv.url + "/?engine=hls.js")
        page.wait_for_function("() => window.ecWatch && window.ecWatch.errors.length > 0")
        errors = ec_watch(page)["errors"]
        assert len(errors) == 1 and "hls.js is not available" in errors[0], errors
        assert page.is_visible("#errors")
        assert "hls.js is not installed on this node" in (page.text_content("#player-note") or "")
        assert not bp.page_errors, bp.log()
