"""The watch page (src/ec_node/serve/static) in a real Chromium: it follows /status and plays the node's HLS.

The page is served by the real watch server, fed the events a subscriber would tell, so the page is
tested on its own. The HLS is real H.264 + AAC: synthesized, cut by the Chunker and written by
HlsSink, as a subscriber would.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ec_node.devkit.media_cache import cached_media
from ec_node.devkit.synth import preset_options
from ec_node.pipeline.hls import HlsSink
from ec_node.serve.server import HLS_JS, WEB_DIR, ThreadedWatchServer
from ec_node.serve.state import WatchState
from ec_node.ts.chunker import Chunker, measure_duration_ms

from support.browser import artifacts_dir, browser_page, screenshot, wait_playing, wait_text

HLSJS = WEB_DIR / HLS_JS
H264_14S = preset_options("small", "h264", duration_s=14.0)
WAITING_TEXT = "waiting for the first verified segment"

pytestmark = pytest.mark.slow


def node_events(n: int) -> list[dict[str, Any]]:
    """What a subscriber tells on its way to ``n`` verified segments of an H.264/AAC channel."""
    evs: list[dict[str, Any]] = [
        {"event": "subscribed", "broadcast": "wsyn-hd-7-1", "stream_id": "5e1f" * 8, "objects_peers": ["relay-a"],
         "manifests_peer": "leader"},
        {"event": "peer_connected", "peer": "relay-a", "track": "chunks"},
        {"event": "peer_connected", "peer": "leader", "track": "manifests"},
        {"event": "channel", "name": "WSYN-HD", "guide_number": "7.1", "video_codec": "H264", "audio_codec": "AAC"},
        {"event": "browser_rendition", "enabled": False, "mode": "auto"},
        {"event": "rejected", "reason": "bad_tag", "peer": "relay-b"},
        {"event": "rejected", "reason": "bad_tag", "peer": "relay-b"},
        {"event": "peer_dropped", "peer": "relay-b"},
    ]  # fmt: skip
    evs += [{"event": "manifest"} for _ in range(3)]
    evs += [{"event": "segment", "chunk_index": 41 - n + 1 + i, "duration_ms": 2002, "latency_ms": 3.25}
            for i in range(n)]  # fmt: skip
    return evs


@contextlib.contextmanager
def watch_server(hls_dir: Path, events: list[dict[str, Any]], web_dir: Path = WEB_DIR) -> Iterator[ThreadedWatchServer]:
    """The real watch server on 127.0.0.1 (an ephemeral port), fed ``events``."""
    server = ThreadedWatchServer(WatchState(), hls_dir, web_dir=web_dir)
    try:
        for e in events:
            server.on_event(e)
        server.flush()
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def recording(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int]:
    """An ended HLS recording of ~14 s of H.264 + AAC: (directory, number of segments)."""
    out = tmp_path_factory.mktemp("hls")
    sink = HlsSink(out, chunk_ms=2000)
    chunker = Chunker(2000)
    chunks = chunker.feed(cached_media(H264_14S).read_bytes()) + chunker.flush()
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
    events = node_events(n)
    with watch_server(hls_dir, events[:5]) as srv, browser_page(tmp_path, artifacts=artifacts) as bp:
        page = bp.page
        page.goto(srv.url + "/")
        wait_text(page, "#channel-name", "WSYN-HD")
        wait_text(page, "#state", WAITING_TEXT)
        assert page.title().startswith("WSYN-HD")
        assert ec_watch(page)["engine"] is None  # nothing to play yet

        for e in events[5:]:
            srv.on_event(e)
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
        assert "\u25b2 up \u00b7 relay-a" in peers and "\u25b2 up \u00b7 leader" in peers
        assert "#41" in (page.text_content("#latest-chunk") or "")
        assert not bp.page_errors, bp.log()
    assert (artifacts / "watch-default.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_page_plays_an_ended_recording_with_hlsjs(recording, tmp_path, request):
    if not HLSJS.is_file():
        pytest.skip("hls.js is not installed (scripts/bootstrap.sh runs npm ci in web/ when npm exists)")
    hls_dir, n = recording
    artifacts = artifacts_dir(request, tmp_path)
    links = (("relay-a", "chunks"), ("leader", "manifests"))
    ended = [{"event": "peer_ended", "peer": p, "track": t} for p, t in links]
    events = [*node_events(n), *ended, {"event": "end", "reason": "stream ended"}]
    with (
        watch_server(hls_dir, events) as srv,
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
        peers = page.text_content("#peers") or ""
        assert peers.count("ended") == 2 and "down" not in peers  # a finished track is not a fault
        assert not bp.page_errors, bp.log()
    assert (artifacts / "watch-hlsjs.png").is_file()


def test_forced_hlsjs_without_hlsjs_reports_it(recording, tmp_path, request):
    hls_dir, n = recording
    artifacts = artifacts_dir(request, tmp_path)
    with (
        watch_server(hls_dir, node_events(n), web_dir=tmp_path / "no-web") as srv,
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
