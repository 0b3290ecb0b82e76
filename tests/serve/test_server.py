"""The watch server over real HTTP: virtual HDHomeRun read by the project's own client, HLS files, status."""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from ec_node.devkit.decode import decode
from ec_node.hdhr.client import HdhrClient
from ec_node.hdhr.discovery import validate_device_id
from ec_node.pipeline.hls import HlsSink
from ec_node.serve.server import ThreadedWatchServer
from ec_node.serve.state import WatchState
from ec_node.ts.chunker import Chunk, Chunker


@pytest.fixture(scope="module")
def chunks(media_mpeg2: Path) -> list[Chunk]:
    ch = Chunker(2000)
    return ch.feed(media_mpeg2.read_bytes()) + ch.flush()


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[ThreadedWatchServer, HlsSink]]:
    sink = HlsSink(tmp_path / "hls")
    server = ThreadedWatchServer(WatchState(), sink.dir)
    try:
        server.on_event({"event": "subscribed", "broadcast": "demo", "stream_id": "ab" * 16, "objects_peers": ["p"]})
        yield server, sink
    finally:
        server.stop()
        sink.close()


def _segment(server: ThreadedWatchServer, sink: HlsSink, c: Chunk) -> None:
    sink.write(c.index, c.data, c.duration_ms)
    server.on_event({"event": "segment", "chunk_index": c.index, "bytes": len(c.data), "duration_ms": c.duration_ms})


def _get(url: str) -> tuple[int, dict[str, str], bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def test_virtual_tuner_is_read_by_our_hdhomerun_client(served):
    server, sink = served
    host = server.url.removeprefix("http://")
    client = HdhrClient(host)
    assert client.lineup() == []  # no verified chunk yet: no channel to list
    server.on_event({"event": "channel", "name": "WSYN-HD", "guide_number": "7.1", "video_codec": "MPEG2",
                     "audio_codec": "AC3"})  # fmt: skip
    server.flush()
    info = client.discover()
    assert validate_device_id(int(info.device_id, 16))
    assert info.lineup_url == f"{server.url}/lineup.json"
    (entry,) = client.lineup(refresh=True)
    assert (entry.guide_number, entry.guide_name, entry.url) == ("7.1", "WSYN-HD", f"{server.url}/auto/v7.1")
    status, headers, body = _get(f"{server.url}/playlist.m3u")
    assert status == 200 and f"{server.url}/auto/v7.1" in body.decode()
    status, headers, _ = _get(f"{server.url}/auto/v9.9")
    assert status == 404 and headers["X-HDHomeRun-Error"] == "801 Unknown Channel"


def test_auto_stream_is_the_verified_chunks_back_to_back(served, chunks, tmp_path):
    server, sink = served
    server.on_event({"event": "channel", "name": "WSYN-HD", "guide_number": "7.1"})
    for c in chunks[:2]:
        _segment(server, sink, c)
    server.flush()
    stream = HdhrClient(server.url.removeprefix("http://")).open_stream("7.1")
    got = bytearray()
    reader = threading.Thread(target=lambda: got.extend(b"".join(stream)))
    reader.start()
    for c in chunks[2:]:
        _segment(server, sink, c)
    server.on_event({"event": "end", "reason": "stream ended"})
    reader.join(timeout=60)
    assert not reader.is_alive()
    assert bytes(got) == b"".join(c.data for c in chunks[1:])  # from the latest at connect, every packet verbatim
    out = tmp_path / "tuner.ts"
    out.write_bytes(got)
    d = decode(out)
    assert d.ok and d.video_frames > 0, d


def test_hls_files_status_and_the_page(served, chunks):
    server, sink = served
    _segment(server, sink, chunks[0])
    server.flush()
    status, headers, body = _get(f"{server.url}/hls/index.m3u8")
    assert status == 200 and headers["Content-Type"] == "application/vnd.apple.mpegurl"
    assert body == sink.playlist_path.read_bytes()
    status, headers, body = _get(f"{server.url}/hls/{sink.playlist.segments[0].uri}")
    assert status == 200 and headers["Content-Type"] == "video/mp2t" and body == chunks[0].data
    for bad in ("/hls/.ec-node.lock", "/hls/%2e%2e/x", "/hls/../../etc/passwd", "/static/..%2fserver.py"):
        assert _get(server.url + bad)[0] == 404, bad
    status, headers, body = _get(f"{server.url}/status")
    st = json.loads(body)
    assert status == 200 and st["counters"]["segments"] == 1 and st["state"] == "live" and st["broadcast"] == "demo"
    status, headers, body = _get(f"{server.url}/")
    assert status == 200 and headers["Content-Type"].startswith("text/html") and b"<video" in body
