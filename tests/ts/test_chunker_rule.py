"""The chunk rule on hand-built streams: windows, wrap, discontinuity, durations."""

from hypothesis import given, settings
from hypothesis import strategies as st

from ec_node.ts.chunker import Chunker, chunk_stream, windows_per_timeline
from ec_node.ts.packets import PACKET_SIZE
from ec_node.ts.pes import PTS_WRAP

from support.tsbuild import stream

FRAME = 3003  # 29.97 fps in 90 kHz ticks


def test_cuts_at_first_keyframe_of_each_window():
    pts = [i * FRAME for i in range(300)]  # 10 s, keyframe every 15 frames (0.5 s)
    chunks = list(chunk_stream([stream(pts)], chunk_ms=2000))
    # keyframes at 0, 0.5005, ... ; first keyframe (window 0) is never a cut, so chunks start at window 1
    assert [c.index for c in chunks] == [1, 2, 3, 4]
    for c in chunks:
        assert c.start_pts // (90 * 2000) == c.index
        assert len(c.data) % PACKET_SIZE == 0
        assert c.data[0] == 0x47 and c.data[1:3] == b"\x40\x00"  # starts with the PAT
    assert [c.duration_ms for c in chunks[:3]] == [2002, 2002, 2002]
    assert not any(c.damaged for c in chunks)


def test_pts_wrap_keeps_indices_increasing_and_bytes_deterministic():
    start = PTS_WRAP - 150 * FRAME
    pts = [(start + i * FRAME) % PTS_WRAP for i in range(300)]
    data = stream(pts)
    chunks = list(chunk_stream([data]))
    idx = [c.index for c in chunks]
    assert idx == sorted(idx) and len(set(idx)) == len(idx)
    stride = windows_per_timeline(2000)
    assert any(i >= stride for i in idx) and any(i < stride for i in idx)
    # a node that joins after the wrap cuts the same bytes; its indices differ by the stride
    late = list(chunk_stream([data[len(data) * 3 // 4 // PACKET_SIZE * PACKET_SIZE :]]))
    by_bytes = {c.data: c.index for c in chunks}
    common = [c for c in late if c.data in by_bytes]
    assert common, "late joiner saw no whole chunk"
    for c in common:
        assert by_bytes[c.data] - c.index == stride


def test_backward_jump_starts_a_new_timeline():
    pts = [5_000_000 + i * FRAME for i in range(150)] + [i * FRAME for i in range(150)]
    idx = [c.index for c in chunk_stream([stream(pts)])]
    assert idx == sorted(idx) and len(set(idx)) == len(idx)


def test_long_gop_leaves_a_gap_in_indices():
    # keyframes every 5 s: windows without a keyframe produce no chunk
    pts = [i * FRAME for i in range(600)]
    idx = [c.index for c in chunk_stream([stream(pts, gop=150)])]
    assert idx == [2, 5, 7]


def test_chunk_too_large_is_dropped_not_grown():
    ch = Chunker(2000, max_chunk_bytes=10 * PACKET_SIZE)
    out = ch.feed(stream([i * FRAME for i in range(300)]))
    out += ch.flush()
    assert out == []


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 10**6), st.lists(st.integers(1, 20000), min_size=1, max_size=6))
def test_late_join_any_offset_any_reads(offset, sizes):
    data = stream([i * FRAME for i in range(400)])
    ref = {c.index: c.data for c in chunk_stream([data])}
    off = offset % len(data)
    tail = data[off:]
    reads = []
    i = k = 0
    while i < len(tail):
        n = sizes[k % len(sizes)]
        reads.append(tail[i : i + n])
        i += n
        k += 1
    late = list(chunk_stream(reads))
    # the last chunk ends at the end of the stream for both; every chunk the joiner emits is whole
    for c in late:
        assert c.data == ref[c.index]
