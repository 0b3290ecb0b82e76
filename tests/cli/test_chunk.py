"""`ec-node ts-chunk` as a user runs it: JSON lines, chunk files, stdin, and every bad-input path."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import av
import blake3
import numpy as np

from ec_node.errors import ExitCode
from ec_node.ts.chunker import Chunker


def _run(args: list[str], stdin: bytes | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "ec_node", "ts-chunk", *args], input=stdin, capture_output=True, cwd=cwd, timeout=120
    )


def test_json_lines_and_chunk_files(media_mpeg2: Path, tmp_path: Path) -> None:
    r = _run([str(media_mpeg2), "-o", str(tmp_path / "out")])
    assert r.returncode == 0, r.stderr
    lines = [json.loads(x) for x in r.stdout.decode().splitlines()]
    ch = Chunker()
    data = media_mpeg2.read_bytes()
    expected = ch.feed(data) + ch.flush()
    assert [x["chunk_index"] for x in lines] == [c.index for c in expected]
    for line, c in zip(lines, expected, strict=True):
        assert set(line) == {"chunk_index", "duration_ms", "bytes", "blake3", "damaged", "complete"}
        assert line["bytes"] == len(c.data) and line["duration_ms"] == c.duration_ms
        assert line["blake3"] == blake3.blake3(c.data).hexdigest()
        assert (tmp_path / "out" / f"chunk_{c.index}.ts").read_bytes() == c.data
    assert [x["complete"] for x in lines] == [True] * (len(lines) - 1) + [False]


def test_stdin_gives_the_same_chunks(media_mpeg2: Path) -> None:
    a = _run([str(media_mpeg2)])
    b = _run(["-"], stdin=media_mpeg2.read_bytes())
    assert a.returncode == b.returncode == 0
    assert a.stdout == b.stdout


def test_not_mpeg_ts(tmp_path: Path) -> None:
    f = tmp_path / "x.ts"
    f.write_bytes(b"this is not a transport stream\n" * 5000)
    r = _run([str(f)])
    assert r.returncode == ExitCode.BAD_INPUT
    assert r.stderr.decode().count("\n") == 1 and "not an MPEG-TS stream" in r.stderr.decode()
    assert b"Traceback" not in r.stderr


def test_empty_and_missing_inputs(tmp_path: Path) -> None:
    (tmp_path / "empty.ts").write_bytes(b"")
    for args in ([str(tmp_path / "empty.ts")], [str(tmp_path / "missing.ts")], [str(tmp_path)]):
        r = _run(args)
        assert r.returncode == ExitCode.BAD_INPUT, args
        assert r.stderr.decode().startswith("ec-node: error: ") and b"Traceback" not in r.stderr


def test_no_video_pid(tmp_path: Path) -> None:
    f = tmp_path / "audio.ts"
    with av.open(str(f), "w", format="mpegts") as out:
        a = out.add_stream("ac3", rate=48000)
        for i in range(100):
            frame = av.AudioFrame.from_ndarray(np.zeros((1, 1536), np.float32), format="fltp", layout="mono")
            frame.sample_rate = 48000
            frame.pts = i * 1536
            for p in a.encode(frame):
                out.mux(p)
        for p in a.encode():
            out.mux(p)
    r = _run([str(f)])
    assert r.returncode == ExitCode.BAD_INPUT
    assert "no video PID" in r.stderr.decode()


def test_unwritable_output_and_bad_flags(media_mpeg2: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    r = _run([str(media_mpeg2), "-o", str(blocker / "sub")])
    assert r.returncode == ExitCode.OUTPUT and b"Traceback" not in r.stderr
    r = _run([str(media_mpeg2), "--chunk-ms", "5"])
    assert r.returncode == ExitCode.USAGE
