"""Browser rendition speed and latency on one 1080i MPEG-2/AC-3 channel (run by hand).

    python bench/bench_rendition.py [--seconds 30] [--content synthetic|textured] [--preset veryfast] ...

The channel is the synthetic ATSC-like 1080i29.97 recording (``media synth --size 1080i``), cut with the
node's Chunker. Two runs through a RenditionWorker around the real Transcoder:

* **flat out**: every chunk submitted at once (nothing skipped); speed = media seconds / wall seconds
  from the first submit to the last segment delivered, plus each chunk's transcode time.
* **real time**: each chunk submitted when the live stream would have completed it (its media end
  time); added latency = submit -> write callback on the event loop, plus how late a 10 ms loop timer
  fired (the loop must stay responsive while the worker thread transcodes) and the process CPU used.

``--content textured`` replaces the synthetic picture (flat gradient, one moving bar: easy to compress)
with a panning low-pass texture plus per-frame grain, a harder case nearer to camera footage. That clip
is generated here (it is not the devkit's media) and cached next to the media cache.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import hashlib
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import av
import numpy as np

from ec_node.devkit import synth
from ec_node.devkit.media_cache import cached_media, default_cache_dir
from ec_node.devkit.synth import SynthOptions, preset_options
from ec_node.pipeline.rendition import RenditionSettings, RenditionWorker, Transcoder
from ec_node.ts.chunker import Chunk, Chunker

TEXTURE_VERSION = 1


class _Textured(synth._Pattern):
    """Panning low-pass texture + grain over the synthetic pattern (bench only; patched into synth)."""

    def __init__(self, w: int, h: int) -> None:
        super().__init__(w, h)
        rng = np.random.default_rng(1)
        big_h, big_w = h + 256, w + 1024
        n = rng.standard_normal((big_h // 8 + 1, big_w // 8 + 1)).astype(np.float32)
        tex = np.kron(n, np.ones((8, 8), np.float32))[:big_h, :big_w]
        for _ in range(2):  # cheap blur
            tex = (tex + np.roll(tex, 4, 0) + np.roll(tex, 4, 1) + np.roll(tex, -4, 0) + np.roll(tex, -4, 1)) / 5
        fine = rng.standard_normal((big_h, big_w)).astype(np.float32)
        self.tex = np.clip(128 + 40 * tex + 12 * fine, 16, 235).astype(np.uint8)
        self.grain = [rng.integers(-6, 7, (h, w), dtype=np.int16) for _ in range(8)]

    def frame(self, i: int) -> np.ndarray:
        arr = super().frame(i)
        y, _, _ = self._planes(arr)
        x0, y0 = (i * 5) % 1000, (i // 3) % 200
        t = self.tex[y0 : y0 + self.h, x0 : x0 + self.w].astype(np.int16)
        y[:] = np.clip((t + y.astype(np.int16)) // 2 + self.grain[i % 8], 16, 235).astype(np.uint8)
        return arr


def textured_media(opts: SynthOptions) -> Path:
    key = hashlib.sha256(f"{TEXTURE_VERSION}|{av.__version__}|{opts!r}".encode()).hexdigest()[:16]
    path = default_cache_dir() / f"bench-textured-{opts.width}x{opts.height}-{key}.ts"
    if path.is_file() and path.stat().st_size:
        return path
    print(f"generating {path.name} ({opts.duration_s:.0f} s of textured 1080i) ...", flush=True)
    plain = synth._Pattern
    synth._Pattern = _Textured
    try:
        data, _ = synth.synthesize_bytes(opts)
    finally:
        synth._Pattern = plain
    synth.write_atomic(path, data)
    return path


class _Timed:
    """Wraps the Transcoder to record each chunk's transcode time (in the worker thread)."""

    def __init__(self, t: Transcoder) -> None:
        self.t = t
        self.times: list[float] = []

    def segment(self, index: int, chunk: bytes) -> bytes:
        t0 = time.perf_counter()
        try:
            return self.t.segment(index, chunk)
        finally:
            self.times.append(time.perf_counter() - t0)


def pct(xs: list[float], q: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, max(0, round(q * (len(s) - 1))))]


async def run(chunks: list[Chunk], settings: RenditionSettings, realtime: bool) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    timed = _Timed(Transcoder(settings))
    writes: list[tuple[int, int, float]] = []
    latencies: list[float] = []
    skips: list[tuple[int, str]] = []

    def write(index: int, data: bytes, duration_ms: int, received_at: float) -> None:
        now = time.monotonic()
        writes.append((index, len(data), now))
        latencies.append(now - received_at)

    worker = RenditionWorker(
        timed, write, max_pending=3 if realtime else len(chunks), on_skip=lambda i, r: skips.append((i, r))
    )
    lags: list[float] = []
    stop = asyncio.Event()

    async def ticker() -> None:  # how late a 10 ms timer fires: is the loop ever blocked?
        while not stop.is_set():
            t = loop.time()
            await asyncio.sleep(0.01)
            lags.append(loop.time() - t - 0.01)

    tick = asyncio.create_task(ticker())
    cpu0, t0 = os.times(), time.monotonic()
    first_pts = chunks[0].start_pts
    for c in chunks:
        if realtime:  # a live chunk exists once its last picture has arrived
            due = t0 + ((c.start_pts - first_pts) % (1 << 33)) / 90_000 + c.duration_ms / 1000
            await asyncio.sleep(max(0.0, due - time.monotonic()))
        worker.submit(c.index, c.data, c.duration_ms, time.monotonic())
    await worker.close()
    wall = time.monotonic() - t0
    cpu1 = os.times()
    stop.set()
    await tick
    media = sum(c.duration_ms for c in chunks) / 1000
    return {
        "media_s": media,
        "wall_s": wall,
        "speed": media / wall,
        "cpu_pct": 100 * ((cpu1.user - cpu0.user) + (cpu1.system - cpu0.system)) / wall,
        "segments": len(writes),
        "skipped": worker.skipped,
        "skips": skips,
        "errors": worker.errors,
        "mbps": sum(n for _, n, _ in writes) * 8 / media / 1e6,
        "transcode": timed.times,
        "latency": latencies,
        "loop_lag": lags,
        "order_ok": [i for i, _, _ in writes] == sorted(i for i, _, _ in writes),
    }


def ms(x: float, digits: int = 0) -> str:
    return f"{x * 1000:.{digits}f} ms"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--content", choices=["synthetic", "textured"], default="synthetic")
    ap.add_argument("--media", type=Path, help="use this TS file instead of generated media")
    ap.add_argument("--mode", choices=["both", "flat", "realtime"], default="both")
    ap.add_argument("--preset", default=RenditionSettings.preset)
    ap.add_argument("--tune", default=RenditionSettings.tune)
    ap.add_argument("--max-height", type=int, default=RenditionSettings.max_height)
    ap.add_argument("--deinterlace", default=RenditionSettings.deinterlace)
    ap.add_argument("--crf", type=int, default=RenditionSettings.crf)
    ap.add_argument("--x264-threads", type=int, default=RenditionSettings.x264_threads)
    ap.add_argument("--serial", action="store_true", help="decode and encode in one thread (no prefetch)")
    ap.add_argument("--x264-params", default=RenditionSettings.x264_params, help='extra x264 options, "k=v:k=v"')
    a = ap.parse_args()
    settings = RenditionSettings(
        max_height=a.max_height,
        deinterlace=a.deinterlace or None,
        preset=a.preset,
        tune=a.tune or None,
        crf=a.crf,
        x264_threads=a.x264_threads,
        x264_params=a.x264_params,
        pipelined=not a.serial,
    )
    opts = preset_options("1080i", "mpeg2", duration_s=a.seconds)
    if a.media:
        src = a.media
    elif a.content == "textured":
        src = textured_media(opts)
    else:
        src = cached_media(opts)
    ch = Chunker()
    chunks = ch.feed(src.read_bytes()) + ch.flush()
    with av.open(str(src)) as c:
        v = c.streams.video[0]
        first = next(c.decode(v))
        scan = "interlaced" if first.interlaced_frame else "progressive"
        desc = f"{v.codec_context.name} {first.width}x{first.height} {scan} {v.average_rate}"
        if c.streams.audio:
            desc += f" + {c.streams.audio[0].codec_context.name}"
    durations = [x.duration_ms for x in chunks]
    print(f"input:    {src.name} ({'file' if a.media else a.content}): {desc}, {len(chunks)} chunks of "
          f"{min(durations)}-{max(durations)} ms, {sum(durations) / 1000:.1f} s")  # fmt: skip
    print(f"settings: {dataclasses.asdict(settings)}")
    print(f"machine:  {os.cpu_count()} CPUs, Python {sys.version.split()[0]}, PyAV {av.__version__}")
    Transcoder(settings).segment(chunks[0].index, chunks[0].data)  # warm up (libraries, caches)
    if a.mode in ("both", "flat"):
        r = asyncio.run(run(chunks, settings, realtime=False))
        t = r["transcode"]
        print(
            f"flat out: {r['media_s']:.1f} s of media in {r['wall_s']:.2f} s = {r['speed']:.2f}x real time; "
            f"per chunk p50 {ms(statistics.median(t))} / max {ms(max(t))}; {r['mbps']:.2f} Mb/s out; "
            f"CPU {r['cpu_pct']:.0f} % of one core; {r['segments']} segments, {r['errors']} errors, "
            f"order {'ok' if r['order_ok'] else 'BROKEN'}"
        )
    if a.mode in ("both", "realtime"):
        r = asyncio.run(run(chunks, settings, realtime=True))
        lat, t, lag = r["latency"], r["transcode"], r["loop_lag"]
        print(
            f"realtime: latency submit->write p50 {ms(pct(lat, 0.5))} / p99 {ms(pct(lat, 0.99))} / "
            f"max {ms(max(lat))} (n={len(lat)}); transcode p50 {ms(statistics.median(t))}; "
            f"CPU {r['cpu_pct']:.0f} % of one core; {r['skipped']} skipped {r['skips']}, {r['errors']} errors"
        )
        print(
            f"          event loop: 10 ms timer late by p50 {ms(pct(lag, 0.5), 1)} / p99 {ms(pct(lag, 0.99), 1)} / "
            f"max {ms(max(lag), 1)} (n={len(lag)})"
        )


if __name__ == "__main__":
    main()
