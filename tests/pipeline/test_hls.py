import m3u8
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ec_node.errors import OutputError
from ec_node.pipeline.hls import HlsSink, Playlist, segment_name


def test_playlist_tags_and_discontinuity():
    p = Playlist()
    for i, d in [(5, 2002), (6, 2002), (9, 2500), (10, 1900)]:
        p.add(i, d)
    p.ended = True
    text = p.render()
    pl = m3u8.loads(text)
    assert pl.is_endlist and pl.target_duration == 3 and pl.media_sequence == 0
    assert [s.uri for s in pl.segments] == [segment_name(i) for i in (5, 6, 9, 10)]
    assert [s.discontinuity for s in pl.segments] == [False, False, True, False]
    assert [s.duration for s in pl.segments] == [2.002, 2.002, 2.5, 1.9]
    for s in pl.segments:
        assert round(s.duration) <= pl.target_duration


@settings(max_examples=50, deadline=None)
@given(
    st.integers(1, 5),
    st.lists(st.tuples(st.integers(1, 3), st.integers(500, 6000)), min_size=1, max_size=30),
)
def test_sliding_window_invariants(window, steps):
    p = Playlist(window=window)
    index = 100
    seen_seq = []
    target = 0
    for jump, dur in steps:
        index += jump
        p.add(index, dur)
        pl = m3u8.loads(p.render())
        assert len(pl.segments) <= window
        assert pl.media_sequence == p.segments[0].sequence
        seen_seq.append(pl.media_sequence)
        assert pl.target_duration >= target  # never shrinks
        target = pl.target_duration
        for s in pl.segments:
            assert round(s.duration) <= pl.target_duration
    assert seen_seq == sorted(seen_seq)
    assert not m3u8.loads(p.render()).is_endlist


def test_sink_writes_segment_before_playlist_and_prunes(tmp_path):
    sink = HlsSink(tmp_path / "out", window=2)
    for i in range(4):
        sink.write(i, bytes([0x47]) * 188, 2000)
        pl = m3u8.load(str(sink.playlist_path))
        for s in pl.segments:
            assert (sink.dir / s.uri).read_bytes() == bytes([0x47]) * 188
    assert sorted(p.name for p in sink.dir.glob("segment_*.ts")) == [segment_name(2), segment_name(3)]
    sink.finish()
    assert m3u8.load(str(sink.playlist_path)).is_endlist
    assert not list(sink.dir.glob(".*.tmp"))


def test_unwritable_directory(tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(OutputError):
        HlsSink(f / "sub")


@settings(max_examples=50, deadline=None)
@given(st.lists(st.integers(1000, 3499), min_size=1, max_size=20))
def test_target_duration_is_fixed_for_chunks_within_one_gop_of_the_window(durations):
    sink_playlist = Playlist(min_target_s=3)  # what HlsSink sets for chunk_ms=2000
    targets = set()
    for i, d in enumerate(durations):
        sink_playlist.add(i, d)
        targets.add(m3u8.loads(sink_playlist.render()).target_duration)
    assert targets == {3}  # RFC 8216 6.2.1: it never changes
