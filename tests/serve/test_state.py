from ec_node.serve.state import RECENT_SEGMENTS, WatchState


def seg(i, d=2000):
    return {"event": "segment", "chunk_index": i, "bytes": 10, "duration_ms": d, "latency_ms": 1.5}


def test_counts_and_states_from_events():
    s = WatchState()
    assert s.status()["state"] == "waiting" and s.status()["play"] is None
    s.apply({"event": "subscribed", "broadcast": "b", "stream_id": "ab", "objects_peers": ["p1"],
             "manifests_peer": "p2"})  # fmt: skip
    s.apply({"event": "peer_connected", "peer": "p1", "track": "chunks"})
    s.apply({"event": "channel", "name": "WSYN-HD", "guide_number": "7.1"})
    s.apply({"event": "browser_rendition", "enabled": True})
    s.apply(seg(5))
    assert s.status()["play"] is None  # no rendition segment yet: nothing a browser can play
    s.apply({"event": "rendition", "chunk_index": 5})
    assert s.status()["play"] is None  # one segment of a live playlist: too close to its end to start
    for i in (6, 7):
        s.apply(seg(i))
        s.apply({"event": "rendition", "chunk_index": i})
    s.apply({"event": "rejected", "reason": "bad_tag"})
    s.apply({"event": "rejected", "reason": "bad_tag"})
    s.apply({"event": "manifest"})
    s.apply({"event": "peer_stalled", "peer": "p1", "track": "chunks"})
    s.apply({"event": "something_new", "x": 1})
    st = s.status()
    assert st["channel"] == {"name": "WSYN-HD", "guide_number": "7.1"}
    assert st["state"] == "live" and st["play"] == "/hls/browser/index.m3u8"
    assert st["counters"] == {"segments": 3, "rendition_segments": 3, "rejected": {"bad_tag": 2}, "dropped": 0,
                              "manifests": 1}  # fmt: skip
    assert st["peers"] == [{"name": "p1", "track": "chunks", "up": False, "state": "stalled"},
                           {"name": "p2", "track": "manifests", "up": False, "state": "waiting"}]  # fmt: skip
    s.apply({"event": "peer_ended", "peer": "p1", "track": "chunks"})
    assert s.status()["peers"][0] == {"name": "p1", "track": "chunks", "up": False, "state": "ended"}
    assert st["latest"] == {"chunk_index": 7, "duration_ms": 2000, "latency_ms": 1.5}
    s.apply({"event": "end", "reason": "stream ended"})
    assert s.status()["state"] == "ended" and s.status()["reason"] == "stream ended"


def test_source_is_played_when_no_rendition_is_needed():
    s = WatchState()
    s.apply({"event": "browser_rendition", "enabled": False})
    s.apply(seg(1))
    assert s.play is None
    s.apply({"event": "end", "reason": "stream ended"})
    assert s.play == "/hls/index.m3u8"  # an ended playlist plays from its one segment


def test_recent_segments_are_bounded_and_numbered():
    s = WatchState()
    for i in range(RECENT_SEGMENTS + 3):
        s.apply(seg(100 + i, 1900 + i))
    after = s.segments_after(0)
    assert len(after) == RECENT_SEGMENTS
    assert [r.chunk_index for r in after] == list(range(103, 100 + RECENT_SEGMENTS + 3))
    assert [r.sequence for r in s.segments_after(RECENT_SEGMENTS + 1)] == [RECENT_SEGMENTS + 2, RECENT_SEGMENTS + 3]
    assert after[-1].duration_ms == 1900 + RECENT_SEGMENTS + 2
