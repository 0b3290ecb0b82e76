"""`ec-node relay` end to end: real chains over QUIC (the decisions are tested in tests/node/test_core.py).

Everything is real: `ec-node` processes on 127.0.0.1, MoQ over QUIC, PyAV decoding.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import m3u8
import pytest

from ec_node.devkit.decode import decode
from ec_node.errors import ExitCode
from ec_node.integrity.keys import derive_stream_key, generate_key_file
from ec_node.integrity.signer import Signer
from ec_node.pipeline.hls import segment_index, segment_name
from ec_node.ts.chunker import Chunk, Chunker

from support.hostile_relay import ATTACKS
from support.procs import Node, addr_arg

SID = "ec/stream/v1/source/file/name-test/profile-passthrough/variant-source"
KEY = derive_stream_key(SID, b"")
SIGNER = Signer.generate()


# ------------------------------------------------------------------------------------ end to end

STOP_AFTER = 3


@pytest.fixture(scope="module")
def recording(media_mpeg2: Path) -> Path:
    return media_mpeg2


def _chunks(path: Path, chunk_ms: int = 2000) -> list[Chunk]:
    ch = Chunker(chunk_ms)
    return ch.feed(path.read_bytes()) + ch.flush()


def _publisher(rec: Path, cwd: Path, name: str, *extra: str) -> Node:
    return Node(["moq-publish", "--input", str(rec), "--linger-ms", "600000", *extra], cwd, name)


def _relay(cwd: Path, name: str, *args: str) -> Node:
    return Node(["relay", "--json", *args], cwd, name)


def _relay_events(node: Node, name: str) -> list[dict[str, object]]:
    return [e for e in node.events() if e.get("event") == name]


def _subscribe(cwd: Path, relay: dict[str, object], signer: str, out: Path, *extra: str) -> Node:
    return Node(
        [
            "moq-subscribe",
            "--remote",
            addr_arg(relay),
            "--broadcast",
            str(relay["broadcast"]),
            "--subscribe-manifests",
            "--require-manifest",
            "--trust-signer",
            signer,
            "--output-dir",
            str(out),
            "--json",
            *extra,
        ],
        cwd,
        "subscriber",
    )


def _peer(startup: dict[str, object]) -> str:
    from ec_node.pipeline.peers import peer_name
    from ec_node.transport.addr import parse_endpoint_addr

    return peer_name(parse_endpoint_addr(addr_arg(startup)))


def _segments(out: Path) -> dict[int, bytes]:
    return {segment_index(p.name): p.read_bytes() for p in out.glob("segment_*.ts")}


@pytest.mark.parametrize("second", ["verifying", "plain"])
def test_chain_leader_relay_relay_subscriber(recording: Path, tmp_path: Path, second: str) -> None:
    """leader -> relay --require-manifest -> relay (verifying, or plain: it carries manifests on) -> subscriber."""
    verify2 = ["--require-manifest", "--trust-signer"] if second == "verifying" else []
    expected = [c for c in _chunks(recording) if c.complete][:STOP_AFTER]
    assert len(expected) == STOP_AFTER
    with _publisher(recording, tmp_path, "leader", "--publish-manifests", "--publish-chunks=true") as lead:
        sl = lead.startup()
        (tmp_path / "leader.json").write_text(json.dumps(sl))
        # relay1 learns the broadcast from the leader's startup file; relay2 is told it
        with _relay(
            tmp_path,
            "relay1",
            "--remote",
            f"@{tmp_path / 'leader.json'}",
            "--require-manifest",
            "--addr-file",
            str(tmp_path / "relay1.json"),
        ) as r1:
            s1 = r1.startup()
            assert json.loads((tmp_path / "relay1.json").read_text()) == s1
            assert s1["broadcast"] == s1["stream_id"] == sl["broadcast"]
            assert s1["tracks"] == ["chunks", "manifests"] and s1["signer_id"] is None
            with _relay(
                tmp_path,
                "relay2",
                "--remote",
                addr_arg(s1),
                "--broadcast",
                s1["broadcast"],
                *verify2,
                *([sl["signer_id"]] if verify2 else []),
            ) as r2:
                s2 = r2.startup()
                assert s2["endpoint_addr"] != s1["endpoint_addr"]
                out = tmp_path / "hls"
                with _subscribe(
                    tmp_path, s2, sl["signer_id"], out, "--max-invalid-chunks", "0", "--stop-after", str(STOP_AFTER)
                ) as s:
                    rc = s.wait()
                    assert rc == 0, s.stderr()
                    events = s.events()
                assert r2.proc.poll() is None, r2.stderr()  # relays serve until stopped
            assert r1.proc.poll() is None, r1.stderr()
        r1_err, r2_err = r1.stderr(), r2.stderr()
    assert r1.proc.returncode == 0 and r2.proc.returncode == 0, r1_err + r2_err  # SIGTERM: clean exit
    assert not _relay_events(r1, "rejected") and not _relay_events(r2, "rejected")
    assert events[-1]["manifests"] >= STOP_AFTER  # the manifests came through both relays
    assert events[-1]["event"] == "end" and events[-1]["rejected"] == 0
    pl = m3u8.load(str(out / "index.m3u8"))
    assert [seg.uri for seg in pl.segments] == [segment_name(c.index) for c in expected]
    for seg, chunk in zip(pl.segments, expected, strict=True):
        data = (out / seg.uri).read_bytes()
        assert data == chunk.data
        rep = decode(data)
        assert rep.ok and rep.first_video_keyframe, rep.errors[:3]


@pytest.mark.parametrize("keyless", [False, True], ids=["keyed", "keyless"])
def test_junk_stops_at_a_verifying_relay(recording: Path, tmp_path: Path, keyless: bool) -> None:
    """Every forgery stops at the verifying relay, keyless too: version-2 manifests commit to each
    object frame, so even other bytes re-sealed under the public key with honest metadata are refuted
    there. The relay counts them against the forger's path; the subscriber downstream never sees one,
    drops nobody, and its end event names exactly what is missing."""
    chunks = {c.index: c.data for c in _chunks(recording, 1000) if c.complete}
    script = Path(__file__).parents[1] / "support" / "hostile_relay.py"
    generate_key_file(tmp_path / "leader.key")  # what `ec-node keygen -o` does; a publisher never makes a key
    with (
        _publisher(
            recording,
            tmp_path,
            "leader",
            "--publish-manifests",
            "--publish-chunks=false",
            "--chunk-ms=1000",
            "--signing-key",
            str(tmp_path / "leader.key"),
        ) as a,
        _publisher(recording, tmp_path, "objects", "--publish-chunks=true", "--chunk-ms=1000") as b,
    ):
        sa, sb = a.startup(), b.startup()
        with Node([], tmp_path, "hostile", argv=[sys.executable, str(script), addr_arg(sb), sb["broadcast"]]) as h:
            sh = h.startup()
            plan = {int(k): v for k, v in sh["plan"].items()}
            assert sorted(plan.values()) == sorted(ATTACKS)
            with _relay(
                tmp_path,
                "relay",
                "--remote",
                addr_arg(sh),
                "--remote-manifests",
                addr_arg(sa),
                "--broadcast",
                sb["broadcast"],
                "--require-manifest",
                "--max-peer-rejections",
                "16",
                "--trust-signer",
                sa["signer_id"],
                *(["--keyless"] if keyless else []),
            ) as r:
                sr = r.startup()
                assert sr["tracks"] == ["chunks", "manifests"]
                out = tmp_path / "hls"
                with _subscribe(tmp_path, sr, sa["signer_id"], out, "--chunk-ms=1000") as s:
                    rc = s.wait()
                    # the relay finished its tracks, but the forged indices never came: not a success
                    assert rc == ExitCode.INCOMPLETE, s.stderr()
                    events = s.events()
            relay_err = r.stderr()
    assert r.proc.returncode == 0, relay_err
    end = events[-1]
    assert end["event"] == "end" and end["missing"] == len(plan) and "missing" in end["reason"]
    assert end["rejected"] == 0 and end["peers_dropped"] == [] and not [e for e in events if e["event"] == "rejected"]
    written = _segments(out)
    assert written and not set(written) & set(plan)
    assert set(written) == set(chunks) - set(plan)
    for idx, data in written.items():
        assert data == chunks[idx]
    # the relay saw every forgery from the hostile peer: charged for what it could see itself (a
    # truncated frame, another stream), the re-sealed ones counted against its path; never dropped
    seen = [e for e in _relay_events(r, "rejected") if e["peer_fault"] or e["upstream_fault"]]
    assert len(seen) == len(plan) and {e["peer"] for e in seen} == {_peer(sh)}, relay_err
    charged = sorted(str(e["reason"]) for e in seen if e["peer_fault"])
    assert charged == ["malformed", "wrong_stream"], relay_err  # the truncated frame, the other stream's
    assert not _relay_events(r, "peer_dropped")


def test_a_lying_upstream_is_dropped_and_an_honest_one_fills_in(recording: Path, tmp_path: Path) -> None:
    chunks = {c.index: c.data for c in _chunks(recording, 1000) if c.complete}
    script = Path(__file__).parents[1] / "support" / "hostile_relay.py"
    with _publisher(
        recording, tmp_path, "leader", "--publish-manifests", "--publish-chunks=true", "--chunk-ms=1000"
    ) as a:
        sa = a.startup()
        with Node([], tmp_path, "hostile", argv=[sys.executable, str(script), addr_arg(sa), sa["broadcast"]]) as h:
            sh = h.startup()
            with _relay(
                tmp_path,
                "relay",
                "--remote",
                addr_arg(sh),
                "--remote",
                addr_arg(sa),
                "--remote-manifests",
                addr_arg(sa),
                "--broadcast",
                sa["broadcast"],
                "--require-manifest",
                "--max-peer-rejections",
                "0",
            ) as r:
                sr = r.startup()
                out = tmp_path / "hls"
                with _subscribe(
                    tmp_path, sr, sa["signer_id"], out, "--chunk-ms=1000", "--max-invalid-chunks", "0"
                ) as s:
                    rc = s.wait()
                    assert rc == 0, s.stderr()
                    events = s.events()
            relay_err = r.stderr()
    assert events[-1]["reason"] == "stream ended" and events[-1]["rejected"] == 0
    assert _segments(out) == chunks  # every chunk, each from whichever peer had a valid copy
    dropped = _relay_events(r, "peer_dropped")
    assert [(e["peer"], e["limit"]) for e in dropped] == [(_peer(sh), 0)], relay_err


def test_a_verifying_relay_without_a_manifests_source_exits_4(recording: Path, tmp_path: Path) -> None:
    from ec_node.errors import ExitCode

    with _publisher(recording, tmp_path, "objects", "--publish-chunks=true") as b:
        sb = b.startup()
        (tmp_path / "objects.json").write_text(json.dumps(sb))
        with _relay(tmp_path, "relay", "--remote", f"@{tmp_path / 'objects.json'}", "--require-manifest") as r:
            assert r.startup()["tracks"] == ["chunks", "manifests"]
            assert r.wait() == ExitCode.UNREACHABLE
            assert "manifests upstream" in r.stderr() and "gone" in r.stderr()


def test_relay_usage_errors(tmp_path: Path) -> None:
    addr = json.dumps({"id": "a" * 64, "addrs": ["127.0.0.1:9"]})
    with Node(["relay", "--remote", addr, "--connect-timeout", "1"], tmp_path, "nobroadcast") as n:
        assert n.wait() == ExitCode.UNREACHABLE  # without --broadcast it asks the peer, which is not there
        assert "cannot connect" in n.stderr()
    with Node(["relay", "--remote", addr, "--broadcast", "B", "--keyless"], tmp_path, "keyless") as n:
        assert n.wait() == 2
        assert "--require-manifest" in n.stderr()
