"""`moq-subscribe --http` end to end: an MPEG-2/AC-3 broadcast plays in a real Chromium through the browser rendition.

Everything is real: `ec-node` processes talking MoQ over QUIC on 127.0.0.1, the HDHomeRun emulator
looping its media in real time (each loop a media discontinuity, as a re-tune), PyAV making and
decoding the rendition, and Debian's Chromium playing the watch page.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import m3u8
import pytest

from ec_node.devkit.decode import decode
from ec_node.devkit.emulator import HdhrEmulator
from ec_node.pipeline.hls import segment_index
from ec_node.serve.server import ThreadedWatchServer
from ec_node.serve.state import WatchState
from ec_node.ts.chunker import Chunker

from support.browser import artifacts_dir, browser_page, screenshot, wait_playing, wait_text
from support.procs import Node, addr_arg

pytestmark = pytest.mark.slow
S_2000 = 47722  # chunk indices per 33-bit PTS cycle at 2000 ms: the second timeline starts here (PROTOCOL.md 1)


def _subscriber(pub: dict, out: Path, cwd: Path, *extra: str) -> Node:
    return Node(["moq-subscribe", "--remote", addr_arg(pub), "--broadcast", pub["broadcast"], "--output-dir", str(out),
                 "--json", *extra], cwd, "subscriber")  # fmt: skip


def test_a_finished_mpeg2_recording_plays_in_chromium(tmp_path, media_mpeg2, request):
    out = tmp_path / "hls"
    with contextlib.ExitStack() as stack:
        pub = stack.enter_context(
            Node(["moq-publish", "--input", str(media_mpeg2), "--linger-ms", "600000"], tmp_path, "pub")
        )
        sub = stack.enter_context(_subscriber(pub.startup(), out, tmp_path))
        assert sub.wait() == 0, sub.stderr()
        events = sub.events()
    kinds = [e.get("event") for e in events]
    assert {"channel", "browser_rendition", "segment", "rendition", "end"} <= set(kinds)
    assert next(e for e in events if e.get("event") == "browser_rendition")["enabled"] is True

    # the rendition: one H.264/AAC segment per verified chunk, same indices and durations
    source, browser = m3u8.load(str(out / "index.m3u8")), m3u8.load(str(out / "browser" / "index.m3u8"))
    assert [s.uri for s in browser.segments] == [s.uri for s in source.segments]
    assert [s.duration for s in browser.segments] == [s.duration for s in source.segments]
    assert browser.is_endlist
    for s in browser.segments:
        d = decode(out / "browser" / s.uri)
        assert d.ok and d.video_codec == "h264" and d.audio_codec == "aac", (s.uri, d)
    master = m3u8.load(str(out / "master.m3u8"))
    assert [p.uri for p in master.playlists] == ["browser/index.m3u8", "index.m3u8"]
    ch = Chunker(2000)
    assert [c.index for c in ch.feed(media_mpeg2.read_bytes()) + ch.flush() if c.complete] == [
        segment_index(s.uri) for s in source.segments
    ]

    # served as the demo serves a finished run: the subscriber's events replayed into a watch server
    server = ThreadedWatchServer(WatchState(), out)
    try:
        for e in events:
            server.on_event(e)
        with browser_page(tmp_path, artifacts=artifacts_dir(request, tmp_path)) as bp:
            bp.page.goto(server.url + "/")
            wait_text(bp.page, "#channel-name", "WSYN-HD")
            wait_text(bp.page, "#state", "ended")
            wait_playing(bp.page, seconds=4)
            screenshot(bp.page, bp.artifacts / "finished.png")
            assert bp.page.evaluate("window.ecWatch.errors") == [], bp.log()
    finally:
        server.stop()


def test_a_live_mpeg2_broadcast_plays_in_chromium_across_a_discontinuity(tmp_path, media_mpeg2, request):
    out = tmp_path / "hls"
    with contextlib.ExitStack() as stack:
        emu = stack.enter_context(HdhrEmulator(media_mpeg2, serve_speed=1.0))  # real time, looping: 12 s each
        src = f"hdhr://127.0.0.1:{emu.http_port}/7.1"
        pub = stack.enter_context(Node(["moq-publish", "--input", src], tmp_path, "pub"))
        sub = stack.enter_context(_subscriber(pub.startup(), out, tmp_path, "--http", "127.0.0.1:0"))
        url = None
        while url is None:
            ev = json.loads(sub.next_line())
            url = ev.get("url") if ev.get("event") == "http" else None
        assert url.startswith("http://127.0.0.1:")
        with browser_page(tmp_path, artifacts=artifacts_dir(request, tmp_path)) as bp:
            bp.page.goto(url)
            wait_text(bp.page, "#channel-name", "WSYN-HD")
            wait_text(bp.page, "#state", "live")
            wait_playing(bp.page, seconds=4)
            bp.page.wait_for_function(
                f"() => (window.ecWatch.status?.latest?.chunk_index ?? 0) >= {S_2000}"
            )  # the emulator looped: the stream crossed a discontinuity
            before = wait_playing(bp.page, seconds=1)
            bp.page.wait_for_function(
                f"() => {{ const v = document.querySelector('video');"
                f" if (v.error) throw new Error('media error ' + v.error.code);"
                f" return v.currentTime >= {before + 8}; }}"
            )  # played on past everything buffered before the discontinuity arrived
            screenshot(bp.page, bp.artifacts / "live.png")
            assert bp.page.evaluate("window.ecWatch.errors") == [], bp.log()
            status = bp.page.evaluate("window.ecWatch.status")
        assert status["counters"]["rendition_segments"] > 0 and status["peers"]
