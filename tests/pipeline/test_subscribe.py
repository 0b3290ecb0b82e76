"""ECP-0032 end to end: tuner -> duration-query capture -> leader (manifests only) + availability
publisher (objects only) -> subscriber taking each from a different peer -> verified HLS.

Everything is real: the HDHomeRun emulator over HTTP, `ec-node` processes, MoQ over QUIC on
127.0.0.1, PyAV decoding the output.
"""

from __future__ import annotations

import json
import os
import stat
import sys
from collections.abc import Iterator
from pathlib import Path

import m3u8
import pytest

from ec_node.atomic import output_mode
from ec_node.devkit.decode import decode
from ec_node.devkit.emulator import HdhrEmulator
from ec_node.errors import ExitCode
from ec_node.integrity.keys import generate_key_file
from ec_node.pipeline.hls import HlsSink, segment_index, segment_name
from ec_node.ts.chunker import Chunk, Chunker

from support.procs import Node, addr_arg

STOP_AFTER = 3


def _capture(host: str, channel: str, seconds: int, out: Path, cwd: Path) -> Path:
    with Node(["hdhr", "capture", host, channel, "--duration", str(seconds), "-o", str(out)], cwd, "capture") as n:
        summary = json.loads(n.next_line())
        assert n.wait() == 0, n.stderr()
    assert summary["bytes"] == out.stat().st_size > 0
    return out


@pytest.fixture(scope="module", params=["emulator", "real-hdhomerun"])
def recording(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    work = tmp_path_factory.mktemp(f"rec-{request.param}")
    if request.param == "real-hdhomerun":
        host = os.environ.get("EVERY_CHANNEL_E2E_HDHR_HOST")
        channel = os.environ.get("EVERY_CHANNEL_E2E_HDHR_CHANNEL")
        if not host or not channel:
            pytest.skip(
                "real-device test: set EVERY_CHANNEL_E2E_HDHR_HOST and EVERY_CHANNEL_E2E_HDHR_CHANNEL to run it"
            )
        yield _capture(host, channel, 12, work / "capture.ts", work)
        return
    media = request.getfixturevalue("media_mpeg2")
    with HdhrEmulator(media, serve_speed=0) as emu:
        yield _capture(f"127.0.0.1:{emu.http_port}", "7.1", 12, work / "capture.ts", work)


def _chunks(path: Path, chunk_ms: int = 2000) -> list[Chunk]:
    ch = Chunker(chunk_ms)
    data = path.read_bytes()
    return ch.feed(data) + ch.flush()


def _leader_key(cwd: Path) -> Path:
    """The leader's signing key, made first as `ec-node keygen` makes it (a publisher never creates one)."""
    key = cwd / "leader.key"
    generate_key_file(key)
    return key


def _publisher(rec: Path, cwd: Path, name: str, *extra: str) -> Node:
    return Node(["moq-publish", "--input", str(rec), "--linger-ms", "600000", *extra], cwd, name)


def test_split_source_subscriber_writes_exactly_the_recordings_chunks(recording: Path, tmp_path: Path) -> None:
    expected = [c for c in _chunks(recording) if c.complete][:STOP_AFTER]
    assert len(expected) == STOP_AFTER
    with (
        _publisher(
            recording,
            tmp_path,
            "leader",
            "--publish-manifests",
            "--publish-chunks=false",
            "--signing-key",
            str(_leader_key(tmp_path)),
        ) as a,
        _publisher(recording, tmp_path, "relay", "--publish-chunks=true") as b,
    ):
        sa, sb = a.startup(), b.startup()
        assert sa["tracks"] == ["manifests"] and sa["signer_id"]
        assert sb["tracks"] == ["chunks"] and sb["signer_id"] is None
        assert sa["stream_id"] == sb["stream_id"] == sa["broadcast"]
        assert sa["stream_id"].startswith("ec/stream/v1/broadcast/atsc/tsid-")
        out = tmp_path / "hls"
        with Node(
            [
                "moq-subscribe",
                "--remote",
                addr_arg(sb),
                "--remote-manifests",
                addr_arg(sa),
                "--broadcast",
                sb["broadcast"],
                "--subscribe-manifests",
                "--require-manifest",
                "--trust-signer",
                sa["signer_id"],
                "--max-invalid-chunks",
                "0",
                "--stop-after",
                str(STOP_AFTER),
                "--output-dir",
                str(out),
                "--json",
            ],
            tmp_path,
            "subscriber",
        ) as s:
            rc = s.wait()
            assert rc == 0, s.stderr()
            events = s.events()
    assert events[-1]["event"] == "end" and events[-1]["reason"] == f"--stop-after {STOP_AFTER} reached"
    assert events[-1]["rejected"] == 0
    pl = m3u8.load(str(out / "index.m3u8"))
    assert pl.is_endlist and pl.media_sequence == 0
    assert [s.uri for s in pl.segments] == [segment_name(c.index) for c in expected]
    for seg, chunk in zip(pl.segments, expected, strict=True):
        data = (out / seg.uri).read_bytes()
        assert data == chunk.data  # the verified plaintext, unchanged
        assert round(seg.duration) <= pl.target_duration
        assert abs(seg.duration * 1000 - chunk.duration_ms) <= 1
        rep = decode(data)
        assert rep.ok and rep.first_video_keyframe, rep.errors[:3]
    assert sorted(p.name for p in out.glob("*.ts")) == sorted(s.uri for s in pl.segments)
    assert {p.name for p in out.iterdir()} == {*(s.uri for s in pl.segments), "index.m3u8", "master.m3u8", "browser",
                                               ".ec-node.lock"}  # fmt: skip
    assert {stat.S_IMODE((out / s.uri).stat().st_mode) for s in pl.segments} == {output_mode()}
    whole = decode(out / "index.m3u8")
    assert whole.ok and whole.video_frames > 0, whole.errors[:3]


@pytest.mark.parametrize("case", ["no-manifests-peer", "untrusted-signer"])
def test_no_manifests_no_data(recording: Path, tmp_path: Path, case: str) -> None:
    with (
        _publisher(recording, tmp_path, "leader", "--publish-manifests", "--publish-chunks=false") as a,
        _publisher(recording, tmp_path, "relay", "--publish-chunks=true") as b,
    ):
        sa, sb = a.startup(), b.startup()
        if case == "no-manifests-peer":
            extra = ["--remote-manifests", addr_arg(sb)]  # B serves objects only
        else:
            other = tmp_path / "other.key"
            with Node(["keygen", "-o", str(other)], tmp_path, "keygen") as k:
                stranger = k.next_line().strip()
                assert k.wait() == 0
            extra = ["--remote-manifests", addr_arg(sa), "--trust-signer", stranger]
        out = tmp_path / "hls"
        with Node(
            [
                "moq-subscribe",
                "--remote",
                addr_arg(sb),
                *extra,
                "--broadcast",
                sb["broadcast"],
                "--subscribe-manifests",
                "--require-manifest",
                "--stop-after",
                "2",
                "--output-dir",
                str(out),
                "--json",
                "--manifest-timeout",
                "3",
            ],
            tmp_path,
            "subscriber",
        ) as s:
            rc = s.wait()
            events = s.events()
    assert not list(out.glob("segment_*"))
    assert not [e for e in events if e["event"] == "segment"]
    if case == "untrusted-signer":
        # manifests arrive, are refused, so every object waits and is dropped when the leader's track ends:
        # the stream ended with chunks no usable manifest vouched for, which is incomplete (11), before
        # "ended early" (a leader that keeps signing is test_a_wrong_trust_signer_..., below)
        assert rc == ExitCode.INCOMPLETE, s.stderr()
        assert events[-1]["missing"] > 0
        reasons = {e["reason"] for e in events if e["event"] == "manifest_rejected"}
        assert reasons == {"untrusted_signer"}
        assert [e["signers"] for e in events if e["event"] == "untrusted_signer"] == [[sa["signer_id"]]]
        assert not (out / "index.m3u8").exists()  # nothing verified: no playlist either
    else:
        # the manifests peer has no manifests track: refuse to run rather than wait forever
        assert rc == ExitCode.UNREACHABLE, s.stderr()
        assert "manifests" in s.stderr()
        assert not (out / "index.m3u8").exists()  # nothing verified: no playlist either


def test_a_wrong_trust_signer_is_named_once_and_ends_the_run_within_the_manifest_timeout(
    media_mpeg2: Path, tmp_path: Path
) -> None:
    """The live case of a typo'd --trust-signer: a real-time leader keeps signing, the subscriber must not wait
    (and buffer) for ever but say whose manifests it refuses and exit 10 once --manifest-timeout passes."""
    stranger = tmp_path / "stranger.key"
    with Node(["keygen", "-o", str(stranger)], tmp_path, "keygen") as k:
        wrong = k.next_line().strip()
        assert k.wait() == 0
    with _publisher(media_mpeg2, tmp_path, "leader", "--realtime", "--publish-manifests",
                    "--signing-key", str(_leader_key(tmp_path))) as a:  # fmt: skip
        sa = a.startup()
        out = tmp_path / "hls"
        # (no -v: what a user sees by default)
        argv = [sys.executable, "-m", "ec_node", "moq-subscribe", "--remote", addr_arg(sa), "--broadcast",
                sa["broadcast"], "--require-manifest", "--trust-signer", wrong, "--manifest-timeout", "2",
                "--output-dir", str(out)]  # fmt: skip
        with Node([], tmp_path, "subscriber", argv=argv) as s:
            rc = s.wait()  # (its own hang guard: a subscriber that waits for ever fails here)
            err = s.stderr()
        assert a.proc.poll() is None  # the leader was still signing: the subscriber did not just see an end
    assert rc == ExitCode.MANIFEST_TIMEOUT, err
    said = f"manifest signed by {sa['signer_id']}, which is not a --trust-signer; trusted: {wrong}"
    assert err.count(said) == 2, err  # once as the warning, once in the exit line
    lines = err.splitlines()
    assert lines[-1] == f"ec-node: error: no usable manifest for 2 s: {said}"
    assert sum("WARNING" in ln and said in ln for ln in lines) == 1
    assert not any("manifest_rejected" in ln for ln in lines)  # no line per refused manifest
    assert not list(out.glob("segment_*"))


def test_hostile_relay_objects_are_rejected_with_reasons(recording: Path, tmp_path: Path) -> None:
    import sys

    expected_reason = {
        "bit_flip": {"bad_aead"},
        "truncated": {"malformed"},
        "replayed": {"bad_aead"},
        "foreign_stream": {"wrong_stream"},
        "hash_flip": {"bad_aead", "hash_mismatch"},
        "resealed": {"bad_aead"},  # sealed under another nonce than the honest meta names
    }
    chunks = {c.index: c.data for c in _chunks(recording, 1000) if c.complete}
    assert len(chunks) >= len(expected_reason) + 2
    script = Path(__file__).parents[1] / "support" / "hostile_relay.py"
    with (
        _publisher(
            recording, tmp_path, "leader", "--publish-manifests", "--publish-chunks=false", "--chunk-ms=1000"
        ) as a,
        _publisher(recording, tmp_path, "relay", "--publish-chunks=true", "--chunk-ms=1000") as b,
    ):
        sa, sb = a.startup(), b.startup()
        with Node([], tmp_path, "hostile", argv=[sys.executable, str(script), addr_arg(sb), sb["broadcast"]]) as h:
            sh = h.startup()
            plan = {int(k): v for k, v in sh["plan"].items()}
            assert len(plan) == len(expected_reason)
            out = tmp_path / "hls"
            with Node(
                [
                    "moq-subscribe",
                    "--remote",
                    addr_arg(sh),
                    "--remote-manifests",
                    addr_arg(sa),
                    "--broadcast",
                    sb["broadcast"],
                    "--subscribe-manifests",
                    "--require-manifest",
                    "--trust-signer",
                    sa["signer_id"],
                    "--output-dir",
                    str(out),
                    "--json",
                    "--chunk-ms=1000",
                    "--max-peer-rejections",
                    "100",
                ],
                tmp_path,
                "subscriber",
            ) as s:
                rc = s.wait()
                events = s.events()
    assert rc == ExitCode.INCOMPLETE, s.stderr()  # the forged indices never came right: not a success
    assert events[-1]["missing"] == len(plan) and events[-1]["peers_dropped"] == []
    rejections = [(e["chunk_index"], e["reason"]) for e in events if e["event"] == "rejected"]
    assert len(rejections) == len(plan)
    # objects refused before their index is trusted (truncated, another stream's) carry no index
    assert sorted(r for i, r in rejections if i is None) == ["malformed", "wrong_stream"]
    by_index = {i: r for i, r in rejections if i is not None}
    for idx, attack in plan.items():
        if attack in ("truncated", "foreign_stream"):
            continue
        assert by_index.get(idx) in expected_reason[attack], (idx, attack, rejections)
    written = {segment_index(p.name): p.read_bytes() for p in out.glob("segment_*.ts")}
    assert set(written) == set(chunks) & ({e["chunk_index"] for e in events if e["event"] == "segment"})
    assert not set(written) & set(plan)
    assert len(written) == len(chunks) - len(plan)
    for idx, data in written.items():
        assert data == chunks[idx]


def _subscribe_args(pub: dict, out: Path, *extra: str) -> list[str]:
    return ["moq-subscribe", "--remote", addr_arg(pub), "--broadcast", pub["broadcast"], "--output-dir", str(out),
            "--browser-rendition", "off", "--json", *extra]  # fmt: skip


def test_a_restart_takes_over_the_playlist_only_with_a_new_segment_and_one_writer_only(
    recording: Path, tmp_path: Path
) -> None:
    out = tmp_path / "hls"
    with _publisher(recording, tmp_path, "pub") as p:
        pub = p.startup()
        with Node(_subscribe_args(pub, out, "--stop-after", "2"), tmp_path, "first") as s:
            assert s.wait() == 0, s.stderr()
        before = (out / "index.m3u8").read_text()
        assert len(m3u8.loads(before).segments) == 2

        nowhere = {**pub, "endpoint_addr": {"id": "ab" * 32, "addrs": ["127.0.0.1:9"]}}
        with Node(_subscribe_args(nowhere, out, "--connect-timeout", "1"), tmp_path, "unreachable") as s:
            assert s.wait() == ExitCode.UNREACHABLE, s.stderr()
        assert (out / "index.m3u8").read_text() == before  # a run that never verified a segment changes nothing

        with HlsSink(out), Node(_subscribe_args(pub, out), tmp_path, "blocked") as blocked:  # another writer holds it
            assert blocked.wait() == ExitCode.OUTPUT
            assert "in use by another ec-node" in blocked.stderr()
        assert (out / "index.m3u8").read_text() == before

        with Node(_subscribe_args(pub, out), tmp_path, "second") as second:
            assert second.wait() == 0, second.stderr()
    after = m3u8.load(str(out / "index.m3u8"))
    expected = [c for c in _chunks(recording) if c.complete]
    assert after.is_endlist and [s.uri for s in after.segments] == [segment_name(c.index) for c in expected]
    assert after.media_sequence == 0  # the same recording again: the same segments under the same numbers
