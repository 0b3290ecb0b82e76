"""The chunk rule: hand-built streams (windows, wrap, discontinuity, durations) and real PyAV-made
ATSC-like media (determinism, independent decode, damage)."""

import functools
import random
import struct
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ec_node.devkit.decode import decode
from ec_node.ts.chunker import Chunk, Chunker, chunk_stream, windows_per_timeline
from ec_node.ts.packets import PACKET_SIZE, pid_of, pusi
from ec_node.ts.pes import PTS_WRAP
from ec_node.ts.section import build_section, packetize_section

from support.tsbuild import PMT_PID, VIDEO_PID, pat, stream, stt_stream, video_payload, video_pes

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


# --- real media ---------------------------------------------------------------------------------------


def _reads(data: bytes, sizes: list[int]) -> list[bytes]:
    out, i, k = [], 0, 0
    while i < len(data):
        n = sizes[k % len(sizes)]
        out.append(data[i : i + n])
        i += n
        k += 1
    return out


def _video_pes_count(chunk: Chunk, video_pid: int) -> int:
    d = chunk.data
    return sum(1 for off in range(0, len(d), PACKET_SIZE) if pid_of(d, off) == video_pid and pusi(d, off))


@pytest.fixture(scope="module")
def mpeg2_bytes(media_mpeg2: Path) -> bytes:
    return media_mpeg2.read_bytes()


@pytest.fixture(scope="module")
def mpeg2_chunks(mpeg2_bytes: bytes) -> list[Chunk]:
    return list(chunk_stream([mpeg2_bytes]))


def test_chunks_cover_the_stream(mpeg2_chunks: list[Chunk]) -> None:
    assert len(mpeg2_chunks) >= 4
    idx = [c.index for c in mpeg2_chunks]
    assert idx == list(range(idx[0], idx[0] + len(idx)))
    gop_ms = 534  # closed MPEG-2 GOP of 16 frames: a chunk is the window length +- one GOP
    for c, nxt in zip(mpeg2_chunks, mpeg2_chunks[1:], strict=False):
        assert 2000 - gop_ms <= c.duration_ms <= 2000 + gop_ms
        assert c.duration_ms == round((nxt.start_pts - c.start_pts) / 90)
    assert not any(c.damaged for c in mpeg2_chunks)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(offset=st.integers(0, 10**9), sizes=st.lists(st.integers(1, 200_000), min_size=1, max_size=5))
def test_late_joiner_gets_identical_chunks(mpeg2_bytes: bytes, mpeg2_chunks: list[Chunk], offset, sizes):
    ref = {c.index: c.data for c in mpeg2_chunks}
    off = offset % (len(mpeg2_bytes) // 2)
    late = list(chunk_stream(_reads(mpeg2_bytes[off:], sizes)))
    assert late, "a joiner in the first half must see at least one whole chunk"
    for c in late:
        assert c.data == ref[c.index]


@pytest.mark.parametrize("fixture", ["media_mpeg2", "media_h264", "media_mpeg2_cbr"])
def test_every_chunk_decodes_alone_from_a_keyframe(fixture: str, request) -> None:
    data = request.getfixturevalue(fixture).read_bytes()
    ch = Chunker()
    chunks = ch.feed(data) + ch.flush()
    assert len(chunks) >= 3
    video_pid = ch.info.video_pid
    assert video_pid is not None
    for c in chunks:
        rep = decode(c.data)
        assert rep.errors == [], (c.index, rep.errors[:3])
        assert rep.first_video_keyframe is True
        assert rep.audio_frames > 0
        # closed GOP: every picture in the chunk decodes
        assert rep.video_frames == _video_pes_count(c, video_pid)


def test_open_gop_chunks_decode_losing_only_leading_b_frames(media_mpeg2_open_gop: Path) -> None:
    ch = Chunker()
    data = media_mpeg2_open_gop.read_bytes()
    chunks = ch.feed(data) + ch.flush()
    assert ch.info.video_pid is not None
    for c in chunks:
        rep = decode(c.data)
        assert rep.errors == []
        assert rep.first_video_keyframe is True
        assert _video_pes_count(c, ch.info.video_pid) - rep.video_frames <= 2


def _without_stt(data: bytes) -> bytes:
    """The same stream with each STT's table_id overwritten (0xCD -> 0xFE): a stream the PTS rule cuts,
    its continuity counters untouched."""
    out = bytearray(data)
    for i in range(0, len(out), PACKET_SIZE):
        head = i + 5 + out[i + 4]
        if pid_of(out, i) == 0x1FFB and out[i + 1] & 0x40 and head < i + PACKET_SIZE and out[head] == 0xCD:
            out[head] = 0xFE
    return bytes(out)


@pytest.mark.parametrize("mode", ["utc", "pts"])
@pytest.mark.parametrize("kind", ["junk", "gap", "flip"])
@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(where=st.floats(0.15, 0.85))
def test_damage_stays_in_its_chunk(mpeg2_bytes: bytes, mode: str, kind: str, where: float):
    data = mpeg2_bytes if mode == "utc" else _without_stt(mpeg2_bytes)
    pos = int(len(data) * where)
    if kind == "junk":
        bad = data[:pos] + b"\x00\x47" * 53 + data[pos:]
    elif kind == "gap":
        bad = data[:pos] + data[pos + 1000 :]
    else:  # lose whole packets: continuity counters must notice
        p = pos // PACKET_SIZE * PACKET_SIZE
        bad = data[:p] + data[p + 3 * PACKET_SIZE :]
    ref = {c.index: c.data for c in chunk_stream([data])}
    got = list(chunk_stream(_reads(bad, [65_543])))
    clean = [c for c in got if not c.damaged]
    damaged = [c for c in got if c.damaged]
    for c in clean:  # what is not marked damaged is what every other node cut
        assert c.data == ref[c.index]
    lost = set(ref) - {c.index for c in clean}
    if mode == "pts":
        # the chunk holding the damage; its neighbour too when the lost span straddles their cut point
        assert 1 <= len(damaged) <= 2
        assert len(lost) <= 2
    else:
        # the loss may have taken an STT, so this node re-anchors (4 STTs) before it cuts again: the damaged
        # chunk (if the damage fell in one) ends at the next keyframe, and at most three more windows go uncut
        assert len(damaged) <= 2
        assert len(lost) <= 2 + 3


# --- read sizes never change the chunks (found by fuzz/: the ts_stream target) ---------------------------


def _split_by_packet(data: bytes) -> list[Chunk]:
    return list(chunk_stream([data[i : i + PACKET_SIZE] for i in range(0, len(data), PACKET_SIZE)]))


def _summary(chunks: list[Chunk]) -> list[tuple[int, bytes, bool, bool]]:
    return [(c.index, c.data, c.damaged, c.complete) for c in chunks]


def test_video_gap_in_the_read_that_names_the_video_pid_counts_as_a_gap():
    # keyframes every 0.5 s; a video packet lost between the last keyframe of window 0 and the first of
    # window 1 means that keyframe may not be its window's first: no cut there, whatever the read sizes
    data = stream([i * FRAME for i in range(300)])
    lost = None
    for off in range(0, len(data), PACKET_SIZE):  # a payload packet of frame 50 (1.67 s)
        if pid_of(data, off) == VIDEO_PID and not pusi(data, off) and off > 50 * 5 * PACKET_SIZE:
            lost = off
            break
    assert lost is not None
    bad = data[:lost] + data[lost + PACKET_SIZE :]
    whole = list(chunk_stream([bad]))
    assert _summary(whole) == _summary(_split_by_packet(bad))
    assert 1 not in [c.index for c in whole]


def test_multi_packet_pmt_is_read_in_the_read_that_names_its_pid():
    # a PMT too long for one packet, in the same read as the PAT that names its PID: its continuation
    # packets must be read, so the first keyframe (window 0) counts and the keyframe at 2 s is a cut
    pmt_sec = build_section(
        0x02,
        1,
        struct.pack(">HHBHH", 0xE000 | VIDEO_PID, 0xF000, 0x02, 0xE000 | VIDEO_PID, 0xF000 | 200)
        + bytes([0x05, 198])
        + b"x" * 198,
        private_indicator=False,
    )
    out = bytearray()
    cc_v = 0
    for i in range(300):
        out += pat(i)
        out += b"".join(packetize_section(PMT_PID, pmt_sec, (2 * i) & 0xF))
        out += video_pes(i * FRAME, cc_v, keyframe=i % 60 == 0) + video_payload(cc_v + 1)
        cc_v += 2
    data = bytes(out)
    whole = list(chunk_stream([data]))
    assert _summary(whole) == _summary(_split_by_packet(data))
    assert [c.index for c in whole][:1] == [1]


# -- UTC mode: windows anchored to the ATSC System Time Table (PROTOCOL.md section 1) -----------------

U0 = 1_704_067_200  # 2024-01-01T00:00:00Z, an even second
F30 = 3000  # 30 fps, so an STT every 30 frames falls on a whole second of media time
BASE = U0 * 1000 // 2000  # the UTC window index at U0 with 2 s chunks


def _every_second(i: int) -> int | None:
    return U0 + i // 30 if i % 30 == 0 else None


def test_utc_mode_numbers_chunks_by_broadcast_time_after_four_stts():
    pts = [i * F30 for i in range(600)]  # 20 s; keyframes every 0.5 s; PCR 0.5 s ahead of PTS
    chunks = list(chunk_stream([stt_stream(pts, _every_second)]))
    # presentation UTC of frame i = U0 + i/30 + 0.5 s; the 4th STT is at 3 s, so pictures are anchored
    # from the keyframe at 3 s (window floor(3.5/2) = 1, not a cut) and the first cut is at 3.5 s (window 2)
    assert [c.index for c in chunks] == [BASE + k for k in range(2, 11)]
    assert [c.start_pts // F30 for c in chunks] == [105 + 60 * k for k in range(9)]
    assert [c.duration_ms for c in chunks[:-1]] == [2000] * 8
    assert not chunks[-1].complete and all(c.complete for c in chunks[:-1])


def test_utc_mode_indices_run_on_across_a_pts_wrap():
    start = PTS_WRAP - 8 * 90_000  # the 33-bit PTS wraps 8 s in
    pts = [(start + i * F30) % PTS_WRAP for i in range(600)]
    data = stt_stream(pts, _every_second)
    chunks = list(chunk_stream([data]))
    assert [c.index for c in chunks] == [BASE + k for k in range(2, 11)]  # dense, as without the wrap
    # a node that joined after the wrap numbers the same bytes the same way
    late = [c for c in chunk_stream([data[len(data) * 11 // 20 // PACKET_SIZE * PACKET_SIZE :]]) if c.complete]
    by_index = {c.index: c.data for c in chunks}
    assert late and all(by_index[c.index] == c.data for c in late)


def test_utc_mode_discontinuity_costs_only_the_windows_needed_to_reanchor():
    # 10 s, then the PTS jumps back (a re-tune or a looped source) while broadcast time runs on
    pts = [i * F30 for i in range(300)] + [7_000_000 + i * F30 for i in range(300)]
    chunks = list(chunk_stream([stt_stream(pts, _every_second)]))
    idx = [c.index for c in chunks]
    assert idx == sorted(idx) and len(set(idx)) == len(idx)
    before = [c for c in chunks if c.start_pts < 7_000_000]
    after = [c for c in chunks if c.start_pts >= 7_000_000]
    assert [c.index for c in before] == [BASE + k for k in range(2, 6)]
    # the last chunk before the jump ends at it (from 9.5 s to 10 s), never spanning both sides
    assert before[-1].duration_ms == 500
    # after the jump: the STT at 10 s came before the first picture showing the jump, so it went with the
    # old anchor; STTs at 11..14 s anchor the keyframe at 14 s, and the first cut is at 15.5 s (window 8)
    assert [c.index for c in after] == [BASE + k for k in range(8, 11)]


@functools.cache
def _jittery(seed: int) -> tuple[bytes, dict[int, bytes]]:
    """30 s whose STT for second k goes out up to 13 frames (0.43 s) late, each at its own delay, as a
    busy mux may send it: less than the 0.5 s between keyframes, the bound under which PROTOCOL.md
    section 1 says the rule is exact."""
    rnd = random.Random(seed)
    late = {30 * k + rnd.randint(0, 13): k for k in range(31)}

    def utc(i: int) -> int | None:
        return U0 + late[i] if i in late else None

    data = stt_stream([i * F30 for i in range(900)], utc)
    return data, {c.index: c.data for c in chunk_stream([data])}


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_utc_mode_with_stt_jitter_stays_unique_and_dense(seed: int) -> None:
    _, full = _jittery(seed)
    idx = sorted(full)
    assert len(idx) >= 12 and idx[-1] - idx[0] <= len(idx) + 2


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from([1, 2, 3]), st.integers(0, 800_000), st.lists(st.integers(188, 40_000), min_size=1, max_size=6))
def test_utc_mode_late_join_any_offset_any_reads_with_stt_jitter(seed, offset, sizes):
    data, full = _jittery(seed)
    part = data[offset:]
    reads, at = [], 0
    while at < len(part):
        n = sizes[len(reads) % len(sizes)]
        reads.append(part[at : at + n])
        at += n
    for c in chunk_stream(reads):
        if c.complete:
            assert full.get(c.index) == c.data, f"late joiner's chunk {c.index} differs"


def test_lost_stt_packet_unanchors_this_node_rather_than_disagree():
    data = stt_stream([i * F30 for i in range(600)], _every_second)
    full = {c.index: c.data for c in chunk_stream([data])}
    # drop the STT packet at 6 s: a CC gap on 0x1FFB
    pkts = [data[i : i + PACKET_SIZE] for i in range(0, len(data), PACKET_SIZE)]
    stts = [i for i, p in enumerate(pkts) if pid_of(p) == 0x1FFB]
    lossy = b"".join(p for i, p in enumerate(pkts) if i != stts[6])
    got = [c for c in chunk_stream([lossy]) if c.complete and not c.damaged]
    assert got and all(full[c.index] == c.data for c in got)
    # re-anchored by the STTs at 7..10 s: nothing cut between the loss and 10 s
    assert not any(BASE + 3 < c.index < BASE + 5 for c in got)


def test_entering_utc_mode_drops_the_chunk_the_pts_rule_opened():
    # the first STT comes 2.5 s in: a PTS-rule chunk opened at 2 s must not come out
    def late_stt(i: int) -> int | None:
        return U0 + i // 30 if i % 30 == 15 and i >= 75 else None

    chunks = list(chunk_stream([stt_stream([i * F30 for i in range(600)], late_stt)]))
    assert chunks and all(c.index >= BASE for c in chunks)


def test_stream_without_stt_keeps_the_pts_rule():
    ch = Chunker()
    out = ch.feed(stream([i * FRAME for i in range(300)])) + ch.flush()
    assert not ch.utc_mode and [c.index for c in out][:4] == [1, 2, 3, 4]


@pytest.mark.parametrize(("pts", "window"), [(135000, 852033601), (225000, 852033602)])
def test_utc_window_vectors_of_protocol_10_11(pts: int, window: int) -> None:
    u = 1704067200 * 90000
    ch = Chunker()
    ch._samples.extend([(u, 8589754592), (u + 90000, 8589880592), (u + 180000, 0), (u + 270000, 99000)])
    assert ch._utc_window(pts) == window
