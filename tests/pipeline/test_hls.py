import os
import stat

import m3u8
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ec_node.atomic import output_mode
from ec_node.errors import OutputError
from ec_node.pipeline.hls import DEFAULT_HLS_WINDOW, HlsSink, Playlist, segment_name


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


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


TS = bytes([0x47]) * 188


def names(d):
    return sorted(p.name for p in d.glob("segment_*.ts"))


def test_sink_writes_segment_before_playlist(tmp_path):
    sink = HlsSink(tmp_path / "out", window=2, clock=Clock())
    for i in range(4):
        sink.write(i, TS, 2000)
        pl = m3u8.load(str(sink.playlist_path))
        for s in pl.segments:
            assert (sink.dir / s.uri).read_bytes() == TS
    sink.finish()
    assert m3u8.load(str(sink.playlist_path)).is_endlist
    assert not list(sink.dir.glob(".*.tmp"))


def test_removed_segment_stays_for_its_duration_plus_the_playlists(tmp_path):
    """RFC 8216 6.2.2: a segment that left the playlist stays available while a client may still want it."""
    clock = Clock()
    sink = HlsSink(tmp_path / "out", window=2, clock=clock)
    sink.write(0, TS, 2000)
    sink.write(1, TS, 2000)
    sink.write(2, TS, 2000)  # segment 0 leaves a playlist of 4 s: it must stay 2 + 4 = 6 s
    assert segment_name(0) in names(sink.dir)
    clock.t += 5.999
    sink.write(3, TS, 2000)  # segment 1 leaves too, at t+5.999: it must stay until t+11.999
    assert names(sink.dir) == [segment_name(i) for i in range(4)]
    clock.t += 0.001
    sink.write(4, TS, 2000)
    assert segment_name(0) not in names(sink.dir) and segment_name(1) in names(sink.dir)
    clock.t += 5.999
    sink.finish()
    assert names(sink.dir) == [segment_name(i) for i in (2, 3, 4)]  # 1's time is up; 2's (left at t+6) is not
    assert [s.uri for s in m3u8.load(str(sink.playlist_path)).segments] == [segment_name(3), segment_name(4)]


def test_window_zero_keeps_everything(tmp_path):
    sink = HlsSink(tmp_path / "out", window=0, clock=Clock())
    for i in range(20):
        sink.write(i, TS, 2000)
    sink.finish()
    assert len(names(sink.dir)) == 20
    assert m3u8.load(str(sink.playlist_path)).playlist_type == "event"


def test_default_window_is_a_few_minutes():
    assert 60 <= DEFAULT_HLS_WINDOW * 2 <= 600


def test_restart_leaves_the_playlist_alone_until_a_first_new_segment(tmp_path):
    out = tmp_path / "out"
    with HlsSink(out, window=0, clock=Clock()) as first:
        for i in range(3):
            first.write(i, TS, 2000)
        first.finish()
    before = (out / "index.m3u8").read_text()
    with HlsSink(out, window=0, clock=Clock()) as failed:  # e.g. the peer was unreachable
        failed.finish()
    assert (out / "index.m3u8").read_text() == before
    with HlsSink(out, window=0, clock=Clock()) as second:
        second.write(10, TS, 2000)
        pl = m3u8.load(str(second.playlist_path))
        assert [s.uri for s in pl.segments] == [segment_name(i) for i in (0, 1, 2, 10)]
        assert [s.discontinuity for s in pl.segments] == [False, False, False, True]
        assert pl.media_sequence == 0 and not pl.is_endlist
        second.write(11, TS, 2000)
        second.finish()
    pl = m3u8.load(str(out / "index.m3u8"))
    assert len(pl.segments) == 5 and pl.is_endlist


def test_restart_continues_the_media_sequence_under_a_window(tmp_path):
    out = tmp_path / "out"
    with HlsSink(out, window=3, clock=Clock()) as first:
        for i in range(5):
            first.write(i, TS, 2000)
    seq_before = m3u8.load(str(out / "index.m3u8")).media_sequence
    with HlsSink(out, window=3, clock=Clock()) as second:
        second.write(7, TS, 2000)
        pl = m3u8.load(str(second.playlist_path))
    assert pl.media_sequence == seq_before + 1  # one in, one out: never emptier than found
    assert [s.uri for s in pl.segments] == [segment_name(i) for i in (3, 4, 7)]
    assert not pl.discontinuity_sequence and pl.segments[2].discontinuity


def test_restart_of_the_same_recording_rewrites_its_tail(tmp_path):
    out = tmp_path / "out"
    with HlsSink(out, window=0, clock=Clock()) as first:
        for i in range(5):
            first.write(i, TS, 2000)
    with HlsSink(out, window=0, clock=Clock()) as again:
        again.write(3, TS, 2000)
        pl = m3u8.load(str(again.playlist_path))
    assert [s.uri for s in pl.segments] == [segment_name(i) for i in (0, 1, 2, 3)]
    assert [s.media_sequence for s in pl.segments] == [0, 1, 2, 3]  # the new 3 is the old 3: same name, same bytes


def test_restart_retires_segments_an_earlier_run_left_behind(tmp_path):
    out = tmp_path / "out"
    clock = Clock()
    with HlsSink(out, window=1, clock=clock) as first:
        for i in range(3):
            first.write(i, TS, 2000)
    assert len(names(out)) == 3  # 0 and 1 not yet due when the run ended
    with HlsSink(out, window=1, clock=clock) as second:
        second.write(3, TS, 2000)
        assert len(names(out)) == 4
        clock.t += 60
        second.write(4, TS, 2000)
    assert names(out) == [segment_name(3), segment_name(4)]


def test_a_foreign_playlist_is_replaced_only_by_a_first_segment(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "index.m3u8").write_text("#EXTM3U\n#EXTINF:2,\nhttp://elsewhere/x.ts\n")
    with HlsSink(out, clock=Clock()) as sink:
        sink.finish()
        assert "elsewhere" in (out / "index.m3u8").read_text()
        sink.write(1, TS, 2000)
    assert [s.uri for s in m3u8.load(str(out / "index.m3u8")).segments] == [segment_name(1)]


def test_two_writers_on_one_directory_are_refused(tmp_path):
    out = tmp_path / "out"
    with HlsSink(out), pytest.raises(OutputError, match="in use by another ec-node"):
        HlsSink(out)
    with HlsSink(out):  # released on close
        pass


def test_outputs_honour_the_umask(tmp_path):
    sink = HlsSink(tmp_path / "out", clock=Clock())
    sink.write(0, TS, 2000)
    mode = output_mode()
    assert stat.S_IMODE((sink.dir / segment_name(0)).stat().st_mode) == mode
    assert stat.S_IMODE(sink.playlist_path.stat().st_mode) == mode
    assert mode == 0o666 & ~_current_umask()


def _current_umask() -> int:
    m = os.umask(0)
    os.umask(m)
    return m


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
