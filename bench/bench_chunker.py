"""Chunker throughput on a ~100 MB ATSC-like stream (run by hand: python bench/bench_chunker.py).

The stream is a synthetic 1080i-rate MPEG-2 + AC-3 file with null padding and an ATSC STT, so it
is cut in UTC mode (PROTOCOL.md section 1), repeated to reach the size as the emulator loops it:
broadcast time runs on while the PTS restarts, a discontinuity the chunker re-anchors after.
"""

from __future__ import annotations

import argparse
import time

from ec_node.devkit.media_cache import cached_media
from ec_node.devkit.pacing import load_ts, pass_bytes
from ec_node.devkit.synth import SynthOptions
from ec_node.ts.chunker import Chunker


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mb", type=int, default=100)
    ap.add_argument("--read-kb", type=int, default=1024)
    ap.add_argument("--runs", type=int, default=3)
    a = ap.parse_args()
    src = cached_media(SynthOptions(codec="mpeg2", duration_s=10, width=1920, height=1080, null_padding=True))
    one = src.read_bytes()
    reps = max(1, a.mb * 1_000_000 // len(one))
    media = load_ts(one)
    data = b"".join(pass_bytes(media, k) for k in range(reps))
    step = a.read_kb * 1024
    best = 0.0
    for _ in range(a.runs):
        ch = Chunker()
        t = time.perf_counter()
        n = 0
        for i in range(0, len(data), step):
            n += len(ch.feed(data[i : i + step]))
        n += len(ch.flush())
        dt = time.perf_counter() - t
        best = max(best, len(data) / dt / 1e6)
        print(f"{len(data) / 1e6:.1f} MB in {dt:.3f} s = {len(data) / dt / 1e6:.0f} MB/s, {n} chunks")
    print(f"best: {best:.0f} MB/s ({best * 8 / 19.39:.0f}x a 19.39 Mb/s ATSC multiplex)")


if __name__ == "__main__":
    main()
