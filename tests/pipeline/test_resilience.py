"""Fault injection on the real mesh (processes, QUIC on 127.0.0.1): relays die or lie, the leader
goes away and comes back, a peer sends oversized objects. The output must stay verified, without
lost or repeated segments where an honest copy existed."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import m3u8
import pytest

from ec_node.devkit.decode import decode
from ec_node.errors import ExitCode
from ec_node.integrity.keys import generate_key_file
from ec_node.pipeline.hls import segment_index, segment_name
from ec_node.ts.chunker import Chunker

from support.procs import Node, addr_arg

CHUNK_MS = "1000"
HOSTILE = Path(__file__).parents[1] / "support" / "hostile_relay.py"


def _chunks(path: Path) -> dict[int, bytes]:
    ch = Chunker(int(CHUNK_MS))
    data = path.read_bytes()
    return {c.index: c.data for c in ch.feed(data) + ch.flush() if c.complete}


def _pub(media: Path, cwd: Path, name: str, *extra: str) -> Node:
    return Node(
        ["moq-publish", "--input", str(media), "--chunk-ms", CHUNK_MS, "--linger-ms", "600000", *extra], cwd, name
    )


def _sub_args(objects: list[dict], leader: dict, out: Path, *extra: str) -> list[str]:
    args = ["moq-subscribe"]
    for o in objects:
        args += ["--remote", addr_arg(o)]
    return [
        *args,
        "--remote-manifests",
        addr_arg(leader),
        "--broadcast",
        leader["broadcast"],
        "--subscribe-manifests",
        "--require-manifest",
        "--trust-signer",
        leader["signer_id"],
        "--chunk-ms",
        CHUNK_MS,
        "--output-dir",
        str(out),
        "--json",
        *extra,
    ]


def _wait_segments(sub: Node, n: int) -> list[dict]:
    """Read the subscriber's events until it has written n segments (the event, not a sleep)."""
    seen = []
    while sum(1 for e in seen if e["event"] == "segment") < n:
        seen.append(json.loads(sub.next_line()))
    return seen


def _check_output(out: Path, chunks: dict[int, bytes], *, contiguous: bool) -> list[int]:
    pl = m3u8.load(str(out / "index.m3u8"))
    idx = [segment_index(s.uri) for s in pl.segments]
    assert idx, "no segment written"
    assert len(set(idx)) == len(idx)
    if contiguous:
        assert idx == list(range(idx[0], idx[0] + len(idx)))
        assert not any(s.discontinuity for s in pl.segments)
    for i in idx:
        data = (out / segment_name(i)).read_bytes()
        assert data == chunks[i]
    assert decode(out / "index.m3u8").ok
    return idx


def test_kill_one_of_two_relays_mid_stream(media_mpeg2: Path, tmp_path: Path) -> None:
    chunks = _chunks(media_mpeg2)
    stop_after = 8
    assert len(chunks) >= stop_after
    with (
        _pub(media_mpeg2, tmp_path, "leader", "--realtime", "--publish-manifests", "--publish-chunks=false") as a,
        _pub(media_mpeg2, tmp_path, "relay1", "--realtime") as b1,
        _pub(media_mpeg2, tmp_path, "relay2", "--realtime") as b2,
    ):
        sa, s1, s2 = a.startup(), b1.startup(), b2.startup()
        out = tmp_path / "hls"
        with Node(
            _sub_args([s1, s2], sa, out, "--max-invalid-chunks", "0", "--stop-after", str(stop_after)),
            tmp_path,
            "subscriber",
        ) as s:
            _wait_segments(s, 2)
            b1.proc.kill()  # SIGKILL: no goodbye, QUIC only notices after ~13 s
            b1.proc.wait()
            rc = s.wait()
            events = s.events()
    assert rc == 0, s.stderr()
    idx = _check_output(out, chunks, contiguous=True)
    assert len(idx) == stop_after
    killed = addr_arg(s1)
    assert json.loads(killed)["addrs"][0] in json.dumps(
        [e for e in events if e["event"] in ("peer_stalled", "peer_lost")]
    ), "the dead relay was never noticed"


def test_honest_and_junk_relay(media_mpeg2: Path, tmp_path: Path) -> None:
    chunks = _chunks(media_mpeg2)
    with (
        _pub(media_mpeg2, tmp_path, "leader", "--publish-manifests", "--publish-chunks=false") as a,
        _pub(media_mpeg2, tmp_path, "honest") as b,
    ):
        sa, sb = a.startup(), b.startup()
        with Node([], tmp_path, "hostile", argv=[sys.executable, str(HOSTILE), addr_arg(sb), sb["broadcast"]]) as h:
            sh = h.startup()
            out = tmp_path / "hls"
            with Node(_sub_args([sh, sb], sa, out, "--max-peer-rejections", "1"), tmp_path, "subscriber") as s:
                rc = s.wait()
                events = s.events()
    assert rc == 0, s.stderr()
    idx = _check_output(out, chunks, contiguous=True)
    assert idx == sorted(chunks)  # every chunk, from whichever peer was honest about it
    hostile = sh["endpoint_addr"]["addrs"][0]
    rejected = [e for e in events if e["event"] == "rejected"]
    # whatever the race, its truncated and foreign-stream objects are refused on arrival (no honest
    # copy can make them duplicates), so it passes --max-peer-rejections 1 and is dropped
    assert len(rejected) >= 2 and all(e["peer"].endswith("@" + hostile) for e in rejected)
    assert [d["peer"] for d in events if d["event"] == "peer_dropped"] == [rejected[0]["peer"]]
    assert not [
        e
        for e in events
        if e["event"] == "rejected"
        and events.index(e) > events.index(next(d for d in events if d["event"] == "peer_dropped"))
    ], "objects of a dropped peer were still judged"


def test_leader_killed_and_restarted(media_mpeg2: Path, tmp_path: Path) -> None:
    chunks = _chunks(media_mpeg2)
    identity, key = tmp_path / "leader-id", tmp_path / "leader.key"
    generate_key_file(key)  # what `ec-node keygen -o` does; the restarted leader signs with the same key
    leader_args = [
        "--realtime",
        "--publish-manifests",
        "--publish-chunks=false",
        "--identity",
        str(identity),
        "--signing-key",
        str(key),
    ]
    with (
        _pub(media_mpeg2, tmp_path, "leader", *leader_args) as a,
        _pub(media_mpeg2, tmp_path, "relay", "--realtime") as b,
    ):
        sa, sb = a.startup(), b.startup()
        listen = sa["endpoint_addr"]["addrs"][0]
        out = tmp_path / "hls"
        with Node(
            _sub_args([sb], sa, out, "--stop-after", "8", "--manifest-timeout", "60"), tmp_path, "subscriber"
        ) as s:
            _wait_segments(s, 2)
            a.proc.kill()
            a.proc.wait()
            with _pub(media_mpeg2, tmp_path, "leader2", *leader_args, "--listen", listen) as a2:
                assert a2.startup()["endpoint_addr"] == sa["endpoint_addr"]  # same identity, same place
                rc = s.wait()
                events = s.events()
    assert rc == 0, s.stderr()
    _check_output(out, chunks, contiguous=True)
    kinds = [e["event"] for e in events if e.get("track") == "manifests"]
    assert "peer_lost" in kinds or "peer_stalled" in kinds
    assert kinds.index("peer_connected", kinds.index("peer_connected") + 1)  # connected again


def test_leader_gone_for_good_exits_with_manifest_timeout(media_mpeg2: Path, tmp_path: Path) -> None:
    chunks = _chunks(media_mpeg2)
    with (
        _pub(media_mpeg2, tmp_path, "leader", "--realtime", "--publish-manifests", "--publish-chunks=false") as a,
        _pub(media_mpeg2, tmp_path, "relay", "--realtime") as b,
    ):
        sa, sb = a.startup(), b.startup()
        out = tmp_path / "hls"
        with Node(_sub_args([sb], sa, out, "--manifest-timeout", "3"), tmp_path, "subscriber") as s:
            _wait_segments(s, 2)
            a.proc.kill()
            rc = s.wait()
            events = s.events()
    assert rc == ExitCode.MANIFEST_TIMEOUT, s.stderr()
    assert "no manifests" in s.stderr()
    idx = _check_output(out, chunks, contiguous=True)  # what verified manifests covered, nothing else
    assert len(idx) >= 2
    assert m3u8.load(str(out / "index.m3u8")).is_endlist
    assert events[-1]["event"] == "end" and events[-1]["exit_code"] == ExitCode.MANIFEST_TIMEOUT


@pytest.mark.parametrize("attack", ["oversized", "huge_length"])
def test_peer_sending_oversized_objects(media_mpeg2: Path, tmp_path: Path, attack: str) -> None:
    chunks = _chunks(media_mpeg2)
    with (
        _pub(media_mpeg2, tmp_path, "leader", "--publish-manifests", "--publish-chunks=false") as a,
        _pub(media_mpeg2, tmp_path, "honest") as b,
    ):
        sa, sb = a.startup(), b.startup()
        argv = [sys.executable, str(HOSTILE), addr_arg(sb), sb["broadcast"], f"{attack},{attack}"]
        with Node([], tmp_path, "hostile", argv=argv) as h:
            sh = h.startup()
            out = tmp_path / "hls"
            with Node(
                _sub_args([sh], sa, out, "--max-frame-mb", "1", "--max-peer-rejections", "100"), tmp_path, "subscriber"
            ) as s:
                rc = s.wait()
                events = s.events()
    assert rc == ExitCode.INCOMPLETE, s.stderr()  # the oversized indices are missing: not a clean end
    bad = {int(k) for k in sh["plan"]}
    assert events[-1]["missing"] == len(bad)
    rejected = [e for e in events if e["event"] == "rejected"]
    assert {e["reason"] for e in rejected} == {"too_large"}
    idx = _check_output(out, chunks, contiguous=False)
    assert set(idx) == set(chunks) - bad
    end = events[-1]
    assert end["event"] == "end" and end["rss_mb"] < 400
