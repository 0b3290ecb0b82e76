"""`ec-node relay`: the sans-I/O core (what is re-served, who is charged) and real chains over QUIC.

End to end everything is real: `ec-node` processes on 127.0.0.1, MoQ over QUIC, PyAV decoding.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import m3u8
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ec_node.devkit.decode import decode
from ec_node.integrity.aead import StreamCipher
from ec_node.integrity.errors import RejectReason
from ec_node.integrity.frames import CHUNKS_TRACK, MANIFESTS_TRACK
from ec_node.integrity.keys import derive_stream_key
from ec_node.integrity.manifest import epoch_id_for
from ec_node.integrity.objects import seal_object
from ec_node.integrity.signer import Signer
from ec_node.integrity.verifier import Verifier
from ec_node.pipeline.publish_core import GroupWrite, PublishCore
from ec_node.pipeline.relay import broadcast_from_startup
from ec_node.pipeline.relay_core import RelayCore, RelayStep
from ec_node.ts.chunker import Chunk, Chunker, chunk_stream

from support.hostile_relay import ATTACKS, forge
from support.procs import Node, addr_arg
from support.tsbuild import stream

SID = "ec/stream/v1/source/file/name-test/profile-passthrough/variant-source"
KEY = derive_stream_key(SID, b"")
SIGNER = Signer.generate()


def _published() -> tuple[list[GroupWrite], list[GroupWrite]]:
    core = PublishCore(SID, KEY, signer=SIGNER, publish_chunks=True)
    writes: list[GroupWrite] = []
    for c in chunk_stream([stream([i * 3003 for i in range(800)])]):
        writes += core.on_chunk(c, 0)
    writes += core.finish(0)
    objects = [w for w in writes if w.track == CHUNKS_TRACK]
    manifests = [w for w in writes if w.track == MANIFESTS_TRACK]
    return objects, manifests


OBJECTS, MANIFESTS = _published()
GENUINE = {w.sequence: w.payload for w in OBJECTS}


def _core(verify: bool = True, *, max_peer_rejections: int | None = None, **vkw: object) -> RelayCore:
    verifier = Verifier(SID, KEY, trusted_signers=[SIGNER.signer_id], **vkw) if verify else None  # type: ignore[arg-type]
    return RelayCore(SID, verifier, max_peer_rejections=max_peer_rejections)


def _impostor(index: int) -> bytes:
    """A self-consistent object (the public stream key is derivable) with the wrong content."""
    return seal_object(
        StreamCipher(SID, KEY), index, b"\x47" + bytes(187), epoch_id=epoch_id_for(SID, index), chunk_duration_ms=2000
    ).frame


class _Out:
    """The relay's tracks as a downstream peer would see them; a second write is a failure."""

    def __init__(self) -> None:
        self.tracks: dict[str, dict[int, bytes]] = {CHUNKS_TRACK: {}, MANIFESTS_TRACK: {}}
        self.order: list[tuple[str, int]] = []
        self.dropped: list[str] = []

    def take(self, step: RelayStep) -> RelayStep:
        for w in step.writes:
            assert w.sequence not in self.tracks[w.track], f"{w.track} {w.sequence} written twice"
            self.tracks[w.track][w.sequence] = w.payload
            self.order.append((w.track, w.sequence))
        self.dropped += [d.peer for d in step.dropped_peers]
        return step


def test_objects_wait_for_their_manifests_then_are_reserved_unchanged() -> None:
    core, out = _core(), _Out()
    assert len(OBJECTS) >= 4 and len(MANIFESTS) == len(OBJECTS)
    for o in OBJECTS:
        assert out.take(core.on_object(o.payload, "a")).writes == []
    assert core.pending_count == len(OBJECTS)
    for m in MANIFESTS:
        out.take(core.on_manifest(m.payload, "m", m.sequence))
    assert out.tracks[CHUNKS_TRACK] == GENUINE
    assert out.tracks[MANIFESTS_TRACK] == {m.sequence: m.payload for m in MANIFESTS}
    # each manifest goes out before the object it vouches for (epoch e covers chunk e here)
    for m in MANIFESTS:
        assert out.order.index((MANIFESTS_TRACK, m.sequence)) < out.order.index((CHUNKS_TRACK, m.sequence))
    assert core.pending_count == 0 and not core.peer_rejections
    assert core.served_by == {"a": len(OBJECTS)}


def test_a_second_peer_cannot_make_an_index_be_written_twice() -> None:
    core, out = _core(), _Out()
    for m in MANIFESTS:
        out.take(core.on_manifest(m.payload, "m", m.sequence))
        out.take(core.on_manifest(m.payload, "m", m.sequence))  # replayed manifest: not re-served
    for o in OBJECTS:
        out.take(core.on_object(o.payload, "a"))
        out.take(core.on_object(o.payload, "b"))
    assert out.tracks[CHUNKS_TRACK] == GENUINE
    assert core.stats.duplicates == len(OBJECTS)
    assert core.served_by == {"a": len(OBJECTS)} and not core.peer_rejections


@pytest.mark.parametrize("liar_first", [True, False])
def test_forged_objects_never_propagate_and_the_liar_is_charged_then_dropped(liar_first: bool) -> None:
    core, out = _core(max_peer_rejections=3), _Out()
    assert len(OBJECTS) > len(ATTACKS)  # one fresh index per forgery
    for m in MANIFESTS:
        out.take(core.on_manifest(m.payload, "m", m.sequence))
    first = OBJECTS[0].payload
    for k, attack in enumerate(ATTACKS):
        o = OBJECTS[1 + k]
        arrivals = [(forge(attack, o.payload, first), "liar"), (o.payload, "honest")]
        # a forgery that comes after the genuine copy is not re-judged by the verifier, but still charged
        for frame, peer in arrivals if liar_first else arrivals[::-1]:
            out.take(core.on_object(frame, peer))
    assert core.peer_rejections["liar"] == 4  # the 5th forgery came after it was dropped
    assert out.dropped == ["liar"] and core.dropped == {"liar"}
    assert core.peer_rejections["honest"] == 0
    assert out.tracks[CHUNKS_TRACK] == {o.sequence: o.payload for o in OBJECTS[1:6]}
    assert core.served_by == {"honest": 5}
    # a dropped peer's input is ignored from then on, even valid input
    assert core.on_object(OBJECTS[0].payload, "liar").writes == []


@pytest.mark.parametrize("liar_first", [True, False])
def test_buffered_impostors_are_traced_to_their_peer_when_the_manifest_comes(liar_first: bool) -> None:
    core, out = _core(max_peer_rejections=0), _Out()
    idx = OBJECTS[2].sequence
    arrivals = [(_impostor(idx), "liar"), (OBJECTS[2].payload, "honest")]
    for frame, peer in arrivals if liar_first else arrivals[::-1]:
        assert out.take(core.on_object(frame, peer)).writes == []  # both wait: no manifest yet
    assert core.pending_count == 2
    out.take(core.on_manifest(MANIFESTS[2].payload, "m", MANIFESTS[2].sequence))
    assert out.tracks[CHUNKS_TRACK] == {idx: GENUINE[idx]}
    assert core.served_by == {"honest": 1}
    assert dict(core.peer_rejections) == {"liar": 1} and out.dropped == ["liar"]


def test_missing_manifests_and_a_full_buffer_are_not_a_peers_fault() -> None:
    core, out = _core(max_peer_rejections=0, max_pending_objects=2), _Out()
    for o in OBJECTS[:4]:
        out.take(core.on_object(o.payload, "a"))
    assert core.pending_count == 2  # the two highest were refused or evicted
    out.take(core.on_manifests_gone())
    assert core.pending_count == 0 and out.tracks[CHUNKS_TRACK] == {}
    assert not core.peer_rejections and not out.dropped
    assert core.stats.rejected_by_reason[RejectReason.NO_MANIFEST.value] == 2
    assert core.stats.rejected_by_reason[RejectReason.BUFFER_FULL.value] == 2


def test_untrusted_manifests_are_not_reserved() -> None:
    core = RelayCore(SID, Verifier(SID, KEY, trusted_signers=[Signer.generate().signer_id]))
    out = _Out()
    for m in MANIFESTS:
        out.take(core.on_manifest(m.payload, "m", m.sequence))
    for o in OBJECTS:
        out.take(core.on_object(o.payload, "a"))
    assert out.tracks == {CHUNKS_TRACK: {}, MANIFESTS_TRACK: {}}
    assert core.stats.manifests_rejected == len(MANIFESTS)


def test_dumb_relay_forwards_what_decodes_for_this_stream_once() -> None:
    core, out = _core(verify=False), _Out()
    first = OBJECTS[0].payload
    forged = {OBJECTS[1 + k].sequence: forge(a, OBJECTS[1 + k].payload, first) for k, a in enumerate(ATTACKS[:4])}
    for frame in forged.values():
        out.take(core.on_object(frame, "x"))
    for o in OBJECTS:
        out.take(core.on_object(o.payload, "y"))
    out.take(core.on_manifest(b"{not json", "m", 0))
    out.take(core.on_manifest(MANIFESTS[0].payload, "m", 0))
    chunks = out.tracks[CHUNKS_TRACK]
    assert set(chunks) == set(GENUINE)
    # without manifests it cannot tell a bit flip or a replay: those went out; the rest were refused
    for seq, frame in forged.items():
        attack = ATTACKS[list(forged).index(seq)]
        assert chunks[seq] == (frame if attack in ("bit_flip", "replayed") else GENUINE[seq]), attack
    assert core.peer_rejections == {"x": 2}  # truncated (malformed), foreign_stream (wrong_stream)
    assert out.tracks[MANIFESTS_TRACK] == {0: MANIFESTS[0].payload}


_ARRIVAL = st.lists(st.tuples(st.sampled_from(["obj", "forged", "man"]), st.integers(0, len(OBJECTS) - 1)),
                    max_size=80)


@settings(max_examples=60, deadline=None)
@given(_ARRIVAL, st.integers(1, 40))
def test_whatever_the_arrival_order_only_genuine_objects_go_out_once(arrivals: list[tuple[str, int]],
                                                                     pending: int) -> None:
    core, out = _core(max_pending_objects=pending), _Out()
    for kind, i in arrivals:
        if kind == "obj":
            out.take(core.on_object(OBJECTS[i].payload, "honest"))
        elif kind == "forged":
            out.take(core.on_object(_impostor(OBJECTS[i].sequence), "liar"))
        else:
            out.take(core.on_manifest(MANIFESTS[i].payload, "m", MANIFESTS[i].sequence))
    for seq, payload in out.tracks[CHUNKS_TRACK].items():
        assert payload == GENUINE[seq]
        # an object goes out only after the manifest that vouches for it
        assert out.order.index((MANIFESTS_TRACK, seq)) < out.order.index((CHUNKS_TRACK, seq))
    assert core.peer_rejections["honest"] == 0
    assert core.served_by["liar"] == 0
    assert core.pending_count <= pending


def test_broadcast_defaults_from_a_startup_file(tmp_path: Path) -> None:
    from ec_node.errors import UsageError

    f = tmp_path / "leader.json"
    f.write_text(json.dumps({"endpoint_addr": {"id": "a" * 64, "addrs": ["127.0.0.1:1"]}, "broadcast": "B"}))
    assert broadcast_from_startup(f"@{f}") == "B"
    with pytest.raises(UsageError, match="--broadcast"):
        broadcast_from_startup('{"id": "' + "a" * 64 + '", "addrs": ["127.0.0.1:1"]}')
    f.write_text(json.dumps({"id": "a" * 64, "addrs": ["127.0.0.1:1"]}))
    with pytest.raises(UsageError, match="--broadcast"):
        broadcast_from_startup(f"@{f}")


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
    return Node(["relay", *args], cwd, name)


def _subscribe(cwd: Path, relay: dict[str, object], signer: str, out: Path, *extra: str) -> Node:
    return Node(
        [
            "moq-subscribe", "--remote", addr_arg(relay), "--broadcast", str(relay["broadcast"]),
            "--subscribe-manifests", "--require-manifest", "--trust-signer", signer,
            "--output-dir", str(out), "--json", *extra,
        ],
        cwd,
        "subscriber",
    )


def _segments(out: Path) -> dict[int, bytes]:
    return {int(p.name[8:14]): p.read_bytes() for p in out.glob("segment_*.ts")}


def test_chain_leader_relay_relay_subscriber(recording: Path, tmp_path: Path) -> None:
    expected = [c for c in _chunks(recording) if c.complete][:STOP_AFTER]
    assert len(expected) == STOP_AFTER
    with _publisher(recording, tmp_path, "leader", "--publish-manifests", "--publish-chunks=true") as lead:
        sl = lead.startup()
        (tmp_path / "leader.json").write_text(json.dumps(sl))
        # relay1 learns the broadcast from the leader's startup file; relay2 is told it
        with _relay(tmp_path, "relay1", "--remote", f"@{tmp_path / 'leader.json'}", "--require-manifest",
                    "--addr-file", str(tmp_path / "relay1.json")) as r1:
            s1 = r1.startup()
            assert json.loads((tmp_path / "relay1.json").read_text()) == s1
            assert s1["broadcast"] == s1["stream_id"] == sl["broadcast"]
            assert s1["tracks"] == ["chunks", "manifests"] and s1["signer_id"] is None
            with _relay(tmp_path, "relay2", "--remote", addr_arg(s1), "--broadcast", s1["broadcast"],
                        "--require-manifest", "--trust-signer", sl["signer_id"]) as r2:
                s2 = r2.startup()
                assert s2["endpoint_addr"] != s1["endpoint_addr"]
                out = tmp_path / "hls"
                with _subscribe(tmp_path, s2, sl["signer_id"], out, "--max-invalid-chunks", "0",
                                "--stop-after", str(STOP_AFTER)) as s:
                    rc = s.wait()
                    assert rc == 0, s.stderr()
                    events = s.events()
                assert r2.proc.poll() is None, r2.stderr()  # relays serve until stopped
            assert r1.proc.poll() is None, r1.stderr()
        r1_err, r2_err = r1.stderr(), r2.stderr()
    assert r1.proc.returncode == 0 and r2.proc.returncode == 0, r1_err + r2_err  # SIGTERM: clean exit
    assert "invalid object" not in r1_err + r2_err
    assert events[-1]["event"] == "end" and events[-1]["rejected"] == 0
    pl = m3u8.load(str(out / "index.m3u8"))
    assert [seg.uri for seg in pl.segments] == [f"segment_{c.index:06d}.ts" for c in expected]
    for seg, chunk in zip(pl.segments, expected, strict=True):
        data = (out / seg.uri).read_bytes()
        assert data == chunk.data
        rep = decode(data)
        assert rep.ok and rep.first_video_keyframe, rep.errors[:3]


def test_junk_stops_at_a_verifying_relay(recording: Path, tmp_path: Path) -> None:
    chunks = {c.index: c.data for c in _chunks(recording, 1000) if c.complete}
    script = Path(__file__).parents[1] / "support" / "hostile_relay.py"
    with (
        _publisher(recording, tmp_path, "leader", "--publish-manifests", "--publish-chunks=false",
                   "--chunk-ms=1000", "--signing-key", str(tmp_path / "leader.key")) as a,
        _publisher(recording, tmp_path, "objects", "--publish-chunks=true", "--chunk-ms=1000") as b,
    ):
        sa, sb = a.startup(), b.startup()
        with Node([], tmp_path, "hostile", argv=[sys.executable, str(script), addr_arg(sb), sb["broadcast"]]) as h:
            sh = h.startup()
            plan = {int(k): v for k, v in sh["plan"].items()}
            assert sorted(plan.values()) == sorted(ATTACKS)
            with _relay(tmp_path, "relay", "--remote", addr_arg(sh), "--remote-manifests", addr_arg(sa),
                        "--broadcast", sb["broadcast"], "--require-manifest",
                        "--trust-signer", sa["signer_id"]) as r:
                sr = r.startup()
                assert sr["tracks"] == ["chunks", "manifests"]
                out = tmp_path / "hls"
                with _subscribe(tmp_path, sr, sa["signer_id"], out, "--chunk-ms=1000") as s:
                    rc = s.wait()
                    assert rc == 0, s.stderr()  # the relay finished its tracks: a clean end
                    events = s.events()
            relay_err = r.stderr()
    assert r.proc.returncode == 0, relay_err
    assert events[-1]["event"] == "end" and events[-1]["reason"] == "stream ended"
    assert events[-1]["rejected"] == 0 and not [e for e in events if e["event"] == "rejected"]
    written = _segments(out)
    assert written and not set(written) & set(plan)
    assert set(written) == set(chunks) - set(plan)
    for idx, data in written.items():
        assert data == chunks[idx]
    # the relay saw the forgeries and charged the hostile peer for each (but kept it: 5 <= 16)
    assert relay_err.count("invalid object from") == len(plan)
    assert "dropping upstream" not in relay_err


def test_a_lying_upstream_is_dropped_and_an_honest_one_fills_in(recording: Path, tmp_path: Path) -> None:
    chunks = {c.index: c.data for c in _chunks(recording, 1000) if c.complete}
    script = Path(__file__).parents[1] / "support" / "hostile_relay.py"
    with _publisher(recording, tmp_path, "leader", "--publish-manifests", "--publish-chunks=true",
                    "--chunk-ms=1000") as a:
        sa = a.startup()
        with Node([], tmp_path, "hostile", argv=[sys.executable, str(script), addr_arg(sa), sa["broadcast"]]) as h:
            sh = h.startup()
            with _relay(tmp_path, "relay", "--remote", addr_arg(sh), "--remote", addr_arg(sa),
                        "--remote-manifests", addr_arg(sa), "--broadcast", sa["broadcast"],
                        "--require-manifest", "--max-peer-rejections", "0") as r:
                sr = r.startup()
                out = tmp_path / "hls"
                with _subscribe(tmp_path, sr, sa["signer_id"], out, "--chunk-ms=1000",
                                "--max-invalid-chunks", "0") as s:
                    rc = s.wait()
                    assert rc == 0, s.stderr()
                    events = s.events()
            relay_err = r.stderr()
    assert events[-1]["reason"] == "stream ended" and events[-1]["rejected"] == 0
    assert _segments(out) == chunks  # every chunk, each from whichever peer had a valid copy
    assert "dropping upstream" in relay_err and "more than --max-peer-rejections 0" in relay_err


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
    with Node(["relay", "--remote", addr], tmp_path, "nobroadcast") as n:
        assert n.wait() == 2
        assert "--broadcast" in n.stderr()
    with Node(["relay", "--remote", addr, "--broadcast", "B", "--keyless"], tmp_path, "keyless") as n:
        assert n.wait() == 2
        assert "--require-manifest" in n.stderr()
