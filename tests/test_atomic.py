"""Outputs honour the umask and can be served by a web server running as another user; keys stay 0600."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from ec_node.atomic import output_mode, write_atomic
from ec_node.integrity.keys import generate_signing_key, save_signing_key
from ec_node.pipeline.hls import HlsSink
from ec_node.ts.chunker import Chunker


def test_output_mode_follows_the_umask(tmp_path):
    code = "from ec_node.atomic import write_atomic; import sys, pathlib; write_atomic(pathlib.Path(sys.argv[1]), b'x')"
    for umask, mode in ((0o022, 0o644), (0o027, 0o640), (0o077, 0o600)):
        p = tmp_path / f"f{umask:o}"
        subprocess.run([sys.executable, "-c", code, str(p)], check=True, preexec_fn=lambda m=umask: os.umask(m))
        assert stat.S_IMODE(p.stat().st_mode) == mode
    write_atomic(tmp_path / "here", b"x")
    assert stat.S_IMODE((tmp_path / "here").stat().st_mode) == output_mode()


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    d = Path(tempfile.mkdtemp(prefix="ec-served-", dir="/tmp"))
    d.chmod(0o755)  # pytest's own tmp dirs are 0700: nobody else could even enter them
    try:
        yield d
    finally:
        shutil.rmtree(d)


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("setpriv"), reason="needs root and setpriv to be nobody")
def test_a_web_server_running_as_another_user_serves_the_hls(shared_dir, media_mpeg2):
    os.umask(old := os.umask(0o022))
    if old & 0o004:
        pytest.skip("this test's umask hides outputs from others by choice")
    ch = Chunker(2000)
    chunks = ch.feed(media_mpeg2.read_bytes()) + ch.flush()
    with HlsSink(shared_dir / "hls") as sink:
        for c in chunks[:2]:
            sink.write(c.index, c.data, c.duration_ms)
        sink.finish()
    key = shared_dir / "leader.key"
    save_signing_key(key, generate_signing_key())
    server = subprocess.Popen(
        ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", sys.executable, "-u", "-m", "http.server",
         "--bind", "127.0.0.1", "--directory", str(shared_dir), "0"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        assert server.stdout is not None
        line = server.stdout.readline().decode()  # printed once bound: "Serving HTTP on 127.0.0.1 port N (...)"
        assert line.startswith("Serving HTTP"), line
        base = f"http://127.0.0.1:{int(line.split(' port ')[1].split()[0])}"
        with urllib.request.urlopen(f"{base}/hls/index.m3u8", timeout=10) as r:
            assert r.read() == (shared_dir / "hls" / "index.m3u8").read_bytes()
        with urllib.request.urlopen(f"{base}/hls/{sink.playlist.segments[0].uri}", timeout=10) as r:
            assert r.read() == chunks[0].data
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(f"{base}/leader.key", timeout=10)
        assert e.value.code in (403, 404)
        assert stat.S_IMODE(key.stat().st_mode) == 0o600
    finally:
        server.terminate()
        server.wait(timeout=10)
