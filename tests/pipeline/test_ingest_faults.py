"""Ingest faults end to end: a busy tuner that frees up, a tuner that cuts the stream, junk in the TS.

Real parts only: the HDHomeRun emulator over HTTP on 127.0.0.1, `ec-node moq-publish` reading
``hdhr://`` (leader + objects in one node), `ec-node moq-subscribe --require-manifest` over QUIC,
PyAV decoding what it wrote.

What a reconnect looks like downstream: the emulator, like a re-tuned device, starts a new request
on a fresh time base (PTS starts over) while broadcast time runs on (its n-th stream of a channel
is pass n of the file, STT and all). The chunk open at the cut is damaged and dropped, the
chunker re-anchors to the System Time Table, and the chunks after the reconnect carry the
broadcast-time indices of the new pass: the jump is the real time that passed, and becomes
``#EXT-X-DISCONTINUITY`` in the playlist. Every segment is byte for byte a chunk of a clean run.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import m3u8

from ec_node.devkit.decode import decode
from ec_node.devkit.emulator import HdhrEmulator
from ec_node.devkit.pacing import load_ts, pass_bytes
from ec_node.hdhr.client import HdhrClient
from ec_node.integrity.keys import generate_key_file
from ec_node.pipeline.hls import segment_index
from ec_node.ts.chunker import chunk_stream

from support.procs import Node, addr_arg

WAIT_S = 60.0


def _clean_chunks(media: Path, first_pass: int = 0, passes: int = 2) -> dict[int, bytes]:
    """The chunks of a clean stream that starts at pass ``first_pass`` of the file, by index."""
    m = load_ts(media.read_bytes())
    data = b"".join(pass_bytes(m, first_pass + k) for k in range(passes))
    return {c.index: c.data for c in chunk_stream([data]) if c.complete and not c.damaged}


def _publisher(emu: HdhrEmulator, cwd: Path, duration_s: float) -> Node:
    if not (cwd / "leader.key").exists():
        generate_key_file(cwd / "leader.key")  # what `ec-node keygen -o` does; a publisher never makes a key
    return Node(
        [
            "moq-publish",
            "--input",
            f"hdhr://127.0.0.1:{emu.http_port}/7.1",
            "--duration",
            str(duration_s),
            "--publish-manifests",
            "--signing-key",
            str(cwd / "leader.key"),
            "--linger-ms",
            "600000",
        ],
        cwd,
        "publisher",
    )


def _subscribe(pub: Node, cwd: Path, stop_after: int) -> tuple[m3u8.M3U8, Path, list[dict[str, object]]]:
    st = pub.startup()
    out = cwd / "hls"
    with Node(
        [
            "moq-subscribe",
            "--remote",
            addr_arg(st),
            "--broadcast",
            st["broadcast"],
            "--subscribe-manifests",
            "--require-manifest",
            "--trust-signer",
            st["signer_id"],
            "--max-invalid-chunks",
            "0",
            "--stop-after",
            str(stop_after),
            "--output-dir",
            str(out),
            "--json",
        ],
        cwd,
        "subscriber",
    ) as s:
        rc = s.wait()
        assert rc == 0, s.stderr()
        events = s.events()
    assert events[-1]["event"] == "end" and events[-1]["rejected"] == 0, events[-1]
    return m3u8.load(str(out / "index.m3u8")), out, events


def _publisher_log_when(pub: Node, pattern: str) -> str:
    """The publisher's stderr once it has logged ``pattern`` (a file, so polled; bounded by WAIT_S)."""
    deadline = time.monotonic() + WAIT_S
    while True:
        text = pub.stderr()
        if re.search(pattern, text):
            return text
        if pub.proc.poll() is not None or time.monotonic() > deadline:
            raise AssertionError(f"publisher never logged {pattern!r}; stderr:\n{text}")
        time.sleep(0.05)


def _indices(pl: m3u8.M3U8) -> list[int]:
    return [i for i in (segment_index(s.uri) for s in pl.segments) if i is not None]


def _assert_decodes(out: Path, pl: m3u8.M3U8, clean: dict[int, bytes]) -> None:
    for seg, idx in zip(pl.segments, _indices(pl), strict=True):
        data = (out / seg.uri).read_bytes()
        assert data == clean[idx], f"segment {idx} differs from the clean chunk"
        rep = decode(data)
        assert rep.ok and rep.first_video_keyframe, (idx, rep.errors[:3])


def test_busy_tuner_that_frees_up(media_mpeg2: Path, tmp_path: Path) -> None:
    clean = _clean_chunks(media_mpeg2, first_pass=1)  # the holder's stream was the channel's first
    with HdhrEmulator(media_mpeg2, tuners=1, serve_speed=8) as emu:
        holder = HdhrClient(f"127.0.0.1:{emu.http_port}").open_stream("7.1")  # someone else has the tuner
        try:
            with _publisher(emu, tmp_path, 12) as pub:
                _publisher_log_when(pub, r"busy \(805 [^)]*\); retry 1/\d+ in")
                assert pub.proc.poll() is None  # still backing off, not failed
                holder.close()
                assert emu.wait_tuners_free(WAIT_S)  # the emulator saw the holder go
                pl, out, _ = _subscribe(pub, tmp_path, 3)
                text = _publisher_log_when(pub, r"input ended: \d+ chunks")
        finally:
            holder.close()
        assert emu.streams_served == 2  # the holder's and then the publisher's
    idx = _indices(pl)
    assert idx == sorted(clean)[:3]  # the first chunks of a clean run, no gap
    assert "#EXT-X-DISCONTINUITY" not in pl.dumps()
    _assert_decodes(out, pl, clean)
    assert "closed the stream" not in text  # an end at --duration is not a reconnect


def test_stream_cut_midway_reconnects_with_a_discontinuity(media_mpeg2: Path, tmp_path: Path) -> None:
    first, second = _clean_chunks(media_mpeg2, 0, 1), _clean_chunks(media_mpeg2, 1, 1)
    with HdhrEmulator(media_mpeg2, serve_speed=4, cut_after_s=10.0) as emu:
        with _publisher(emu, tmp_path, 20) as pub:
            pl, out, _ = _subscribe(pub, tmp_path, 4)
            text = _publisher_log_when(pub, r"input ended: \d+ chunks")
        streams = emu.streams_served
    assert streams == 2  # 20 s asked, 10 s per connection: exactly one reconnect
    assert (
        len(
            re.findall(
                r"closed the stream after [0-9.]+ MB \(eof, [0-9.]+ s of media\); reconnecting "
                r"\(attempt 1/\d+\)",
                text,
            )
        )
        == 1
    ), text
    assert re.search(r"reconnected \(attempt 1\)", text)
    assert re.search(r"chunk \d+ damaged in ingest \(sync or continuity loss\); dropped", text)
    idx = _indices(pl)
    pre, post = [i for i in idx if i in first], [i for i in idx if i in second]
    assert pre and post and pre + post == idx, idx
    assert pre == sorted(first)[: len(pre)]  # the clean run up to the chunk the cut damaged
    # the second pass, from its first or second chunk (after a PTS jump the STT just before it is not
    # taken, so re-anchoring can take one second more than on a fresh start)
    assert post == [i for i in sorted(second) if i >= post[0]][: len(post)] and post[0] <= sorted(second)[1]
    assert post[0] - pre[-1] > 1  # broadcast time ran on while the tuner reconnected
    disc = [i for i, s in enumerate(pl.segments) if s.discontinuity]
    assert disc == [len(pre)]  # exactly at the reconnect
    assert pl.dumps().count("#EXT-X-DISCONTINUITY\n") == 1
    _assert_decodes(out, pl, first | second)


def test_junk_in_the_ts_loses_the_damaged_chunk_and_the_windows_it_takes_to_re_anchor(
    media_mpeg2: Path, tmp_path: Path
) -> None:
    clean = _clean_chunks(media_mpeg2)
    with HdhrEmulator(media_mpeg2, serve_speed=4, junk_at_s=7.0) as emu:
        with _publisher(emu, tmp_path, 24) as pub:
            pl, out, events = _subscribe(pub, tmp_path, 3)
            text = _publisher_log_when(pub, r"input ended: \d+ chunks")
        assert emu.streams_served == 1  # junk is not a reason to reconnect
    damaged = [int(x) for x in re.findall(r"chunk (\d+) damaged in ingest", text)]
    assert len(damaged) == 1, text
    assert "closed the stream" not in text
    lost = damaged[0]
    assert lost in clean  # a chunk a clean run has
    idx = _indices(pl)
    # the junk may have taken an STT: the chunker re-anchors on four new ones (PROTOCOL.md section 1)
    # before it cuts again, so the chunks after the damaged one up to then are not cut either
    assert idx[0] < lost < idx[1] and idx == [i for i in sorted(clean) if i < lost or i >= idx[1]][:3]
    disc = [_indices(pl)[i] for i, s in enumerate(pl.segments) if s.discontinuity]
    assert disc == [b for a, b in zip(idx, idx[1:], strict=False) if b > a + 1] and disc[0] == idx[1]  # at gaps
    assert not [e for e in events if e["event"] == "rejected"]
    _assert_decodes(out, pl, clean)
    whole = decode(out / "index.m3u8")
    assert whole.ok and whole.video_frames > 0, whole.errors[:3]
