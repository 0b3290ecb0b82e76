"""The split-source path through one standard relay vs directly, in one run, and late join through it.

Usage: .venv/bin/python bench/bench_relay_path.py [--seconds 30] [--size 720p] [--runs 3]

(a) throughput: a leader (`moq-publish --publish-manifests`, unpaced, `--startup-delay-ms` so the
    subscriber is attached before ingest starts) and a verifying subscriber (`--require-manifest`),
    once dialling each other directly and once through the standard relay
    (`python -m ec_node.devkit.plain_relay --accept`: the `moq` module's origin fan-out that
    publishers push into, as moq-relay is used) with `moq-publish --relay URL` and
    `moq-subscribe --remote URL`. Clock: ingest start (startup line + delay) -> last `segment`
    event. MB/s = segment bytes / window; the ratio is relay / direct of the medians.
(b) late join: the same leader in real time (`--realtime`); a subscriber started 5 s in; the time
    from its start to its first `segment` event, direct and through the relay, with the chunk
    length beside it (a joiner waits for the next chunk to complete, up to one chunk).

Everything on 127.0.0.1; MB = 10^6 bytes.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from ec_node.devkit.media_cache import cached_media
from ec_node.devkit.plain_relay import make_token
from ec_node.devkit.synth import preset_options
from ec_node.ts.chunker import Chunker

EC = [sys.executable, "-m", "ec_node"]
DELAY_MS = 1500


class Proc:
    def __init__(self, argv: list[str], log: Path) -> None:
        self.log = log.open("wb")
        self.p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=self.log, stdin=subprocess.DEVNULL)

    def line(self) -> dict[str, Any]:
        assert self.p.stdout is not None
        raw = self.p.stdout.readline()
        if not raw:
            raise SystemExit(f"process ended early; see {self.log.name}")
        return dict(json.loads(raw))

    def stop(self) -> None:
        if self.p.poll() is None:
            self.p.terminate()
            try:
                self.p.wait(10)
            except subprocess.TimeoutExpired:
                self.p.kill()
        self.log.close()


def relay(work: Path) -> tuple[Proc, list[str], str]:
    key = work / "relay.key"
    key.write_bytes(os.urandom(32))
    r = Proc([sys.executable, "-m", "ec_node.devkit.plain_relay", "--accept", "--listen", "127.0.0.1:0",
              "--jwt-key", str(key)], work / "relay.log")  # fmt: skip
    ep = r.line()["endpoint_addr"]
    tok = work / "jwt"
    tok.write_text(make_token(key.read_bytes(), put=[""], get=[""]))
    os.chmod(tok, 0o600)
    return r, ["--tls-fingerprint", ep["id"], "--jwt-file", str(tok)], f"moql://{ep['addrs'][0]}/"


def run(
    media: Path, work: Path, via_relay: bool, *, realtime: bool = False, join_after_s: float = 0
) -> dict[str, float]:
    procs: list[Proc] = []
    try:
        extra: list[str] = []
        url = ""
        if via_relay:
            r, extra, url = relay(work)
            procs.append(r)
        pace = ["--realtime"] if realtime else ["--startup-delay-ms", str(DELAY_MS)]
        pub = Proc([*EC, "moq-publish", "--input", str(media), "--publish-manifests", *pace, "--linger-ms", "600000",
                    *(["--relay", url, *extra] if via_relay else [])], work / "pub.log")  # fmt: skip
        procs.append(pub)
        start = pub.line()
        ingest_at = time.monotonic() + DELAY_MS / 1000
        remote = url if via_relay else json.dumps(start["endpoint_addr"])
        if join_after_s:
            time.sleep(join_after_s)  # a benchmark, not a test: the join time is the point
        t0 = time.monotonic()
        sub = Proc([*EC, "moq-subscribe", "--remote", remote, *extra, "--broadcast", start["broadcast"],
                    "--require-manifest", "--trust-signer", start["signer_id"], "--output-dir", str(work / "hls"),
                    "--browser-rendition", "off", "--hls-window", "0", "--json",
                    *(["--stop-after", "1"] if join_after_s else [])], work / "sub.log")  # fmt: skip
        procs.append(sub)
        first = last = None
        nbytes = 0
        while True:
            ev = sub.line()
            if ev.get("event") == "segment":
                now = time.monotonic()
                first = first or now
                last = now
                nbytes += int(ev["bytes"])
            elif ev.get("event") == "end":
                break
        assert first is not None and last is not None
        return {"mb_s": nbytes / 1e6 / max(last - ingest_at, 1e-9), "first_s": first - t0, "mb": nbytes / 1e6}
    finally:
        for p in reversed(procs):
            p.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--size", default="720p")
    ap.add_argument("--runs", type=int, default=3)
    a = ap.parse_args()
    media = cached_media(preset_options(a.size, "mpeg2", duration_s=a.seconds))
    ch = Chunker(2000)
    chunks = [c for c in ch.feed(media.read_bytes()) + ch.flush() if c.complete]
    print(f"media: {media.name}, {len(chunks)} chunks of {min(c.duration_ms for c in chunks)}-"
          f"{max(c.duration_ms for c in chunks)} ms, {sum(len(c.data) for c in chunks) / 1e6:.1f} MB")  # fmt: skip
    res: dict[str, list[float]] = {"direct": [], "relay": []}
    for i in range(a.runs):
        for kind in ("direct", "relay"):
            with tempfile.TemporaryDirectory(prefix=f"bench-relay-{kind}-") as d:
                r = run(media, Path(d), kind == "relay")
            res[kind].append(r["mb_s"])
            print(f"run {i + 1} {kind:6}: {r['mb_s']:6.1f} MB/s ({r['mb']:.1f} MB)")
    md, mr = statistics.median(res["direct"]), statistics.median(res["relay"])
    print(f"throughput median: direct {md:.1f} MB/s, through the relay {mr:.1f} MB/s, ratio {mr / md:.2f}")
    for kind in ("direct", "relay"):
        with tempfile.TemporaryDirectory(prefix=f"bench-join-{kind}-") as d:
            r = run(media, Path(d), kind == "relay", realtime=True, join_after_s=5.0)
        print(f"late join {kind:6}: first segment {r['first_s']:.2f} s after the subscriber started (chunks ~2 s)")


if __name__ == "__main__":
    main()
