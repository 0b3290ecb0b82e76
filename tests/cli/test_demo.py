"""The README's main job, end to end: `ec-node demo` builds the mesh and leaves playable HLS."""

from pathlib import Path

import m3u8

from ec_node.devkit.decode import decode

from support.procs import Node


def test_demo_runs_the_mesh_and_writes_playable_hls(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    with Node(
        ["demo", "--dir", str(out), "--seconds", "8", "--size", "small", "--fast", "--no-serve"], tmp_path, "demo"
    ) as d:
        rc = d.wait(timeout=300)
        lines = list(d.lines)
    assert rc == 0, d.stderr()
    text = "\n".join(lines)
    assert "relay (verifying" in text and "subscriber finished" in text
    assert "decode cleanly" in text
    assert "watch it live: http://127.0.0.1:" in text
    assert "browser rendition (H.264/AAC)" in text and "decode problems" not in text
    pl = m3u8.load(str(out / "hls" / "index.m3u8"))
    assert pl.is_endlist and len(pl.segments) >= 2
    assert decode(out / "hls" / "index.m3u8").ok
    for name in ("leader.log", "publisher.log", "relay.log", "subscriber.log", "capture.ts"):
        assert (out / name).exists()
