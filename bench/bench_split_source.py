"""The whole split-source path vs raw MoQ on the same recording, plus added latency (run by hand).

Usage: .venv/bin/python bench/bench_split_source.py [--seconds 30] [--runs 3] [--realtime]

One recording (synthetic ATSC-like 1080i MPEG-2 + AC-3, null-stripped like an HDHomeRun capture,
about 2 MB/s of media) is pushed two ways, ``--runs`` times each, and the medians are printed:

(a) raw: the recording is cut with :class:`Chunker`; the complete chunks' bytes (the same sizes as
    the real objects) go through ``bench_moq_raw.run_raw``: one MoQ group per chunk over loopback
    QUIC, publisher in a second process, no crypto, no manifests, no files.
    Clock: first group written (after the subscriber is attached) -> last group received.

(b) full path: real ``ec-node`` processes, unpaced: a leader (``--publish-manifests
    --publish-chunks=false``: reads, chunks, hashes, signs) and an availability publisher
    (``--publish-chunks=true``: reads, chunks, seals) over the same file, and a subscriber taking
    objects from one and manifests from the other, verifying, decrypting and writing HLS files
    (``--require-manifest --stop-after <complete chunks>``).
    Clock: both publishers get ``--startup-delay-ms`` so their ingest starts only after the
    subscriber has connected and subscribed (checked; the run is refused otherwise), which keeps
    connection set-up out of the window as in (a). Start = the earlier publisher's ingest start
    (the moment its startup line reached this process + the delay); end = the moment the
    subscriber's last ``segment`` event reached this process (after that segment is on disk).
    MB/s = total segment bytes / window. Everything the full path adds (file reading, chunking twice,
    hashing, sealing, signing, manifest wait, verification, decryption, file writes) is inside.

MB = 10^6 bytes. The final, incomplete chunk is published by neither path (ec-node does not publish it).

With ``--realtime`` a further run of (b) paces both publishers by PCR (``moq-publish --realtime``,
no start-up delay: a live subscriber) and prints the subscriber's ``latency_ms`` (object received ->
segment on disk) p50 / p99 / max, nearest-rank.

``--timeline`` prints, for the last unpaced run, when each chunk left the leader and the availability
publisher (their ``progress`` log lines) and when its segment was reported, plus each process's CPU
seconds inside the window: on a small machine the three processes share the cores.

``--profile DIR`` runs the (b) processes under cProfile (``DIR/<role>.prof``); the MB/s of such runs is
not comparable. Read with ``python -m pstats DIR/subscriber.prof``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import queue
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_moq_raw import run_raw  # noqa: E402

from ec_node.devkit.media_cache import cached_media  # noqa: E402
from ec_node.devkit.synth import preset_options  # noqa: E402
from ec_node.ts.chunker import Chunker  # noqa: E402

STARTUP_TIMEOUT_S = 120.0


class BenchError(RuntimeError):
    """A run failed; the message says which process and carries its stderr tail."""


class _Proc:
    """One ``python -m ec_node`` process; each stdout line is stamped with time.time() on arrival."""

    def __init__(self, name: str, args: list[str], work: Path, profile_dir: Path | None) -> None:
        self.name = name
        self.stderr_path = work / f"{name}.stderr"
        self._err = self.stderr_path.open("wb")
        pre = ["-m", "cProfile", "-o", str(profile_dir / f"{name}.prof")] if profile_dir else []
        self.proc = subprocess.Popen(
            [sys.executable, *pre, "-m", "ec_node", "-v", *args],
            cwd=work,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=self._err,
            env=dict(os.environ, PYTHONUNBUFFERED="1"),
        )
        self._lines: queue.Queue[tuple[float, str] | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            self._lines.put((time.time(), raw.decode("utf-8", "replace").rstrip("\n")))
        self._lines.put(None)

    def next_event(self, deadline: float) -> tuple[float, dict[str, Any]] | None:
        """Next JSON stdout line with its arrival time; None once stdout is closed."""
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise BenchError(f"{self.name}: timed out waiting for output\n{self.stderr_tail()}")
            try:
                item = self._lines.get(timeout=left)
            except queue.Empty:
                continue
            if item is None:
                return None
            at, line = item
            if line.startswith("{"):
                return at, json.loads(line)

    def stderr_tail(self, n: int = 15) -> str:
        if not self._err.closed:
            self._err.flush()
        lines = self.stderr_path.read_text(errors="replace").splitlines()
        return "\n".join(f"  {self.name}: {x}" for x in lines[-n:])

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=20)
        self._err.close()


@dataclass
class FullRun:
    mbps: float
    segments: int
    bytes: int
    window_s: float
    latencies_ms: list[float]
    timeline: list[str]
    cpu_s: dict[str, float]  # CPU seconds each process used from the subscriber's subscription to the last segment


def recording(seconds: float) -> Path:
    return cached_media(preset_options("1080i", "mpeg2", duration_s=seconds, null_padding=False))


def complete_chunks(path: Path) -> list[bytes]:
    ch = Chunker()
    data = path.read_bytes()
    return [c.data for c in ch.feed(data) + ch.flush() if c.complete]


_PROGRESS = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) .* published \{.*'chunk_index': (\d+),")


def _cpu_s(pid: int) -> float | None:
    """utime + stime of a live process (Linux /proc), None if unavailable."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _progress_times(p: _Proc) -> dict[int, float]:
    """chunk index -> wall time the publisher logged it as handed to the transport (ms resolution)."""
    out: dict[int, float] = {}
    for line in p.stderr_path.read_text(errors="replace").splitlines():
        if m := _PROGRESS.match(line):
            out[int(m[2])] = datetime.strptime(m[1], "%Y-%m-%d %H:%M:%S,%f").timestamp()
    return out


def _timeline(t0: float, leader: _Proc, relay: _Proc, seg_at: dict[int, float]) -> list[str]:
    """Per chunk, ms after ingest start: leader signed it, relay published it, segment reported written."""
    lt, rt = _progress_times(leader), _progress_times(relay)
    rows = ["chunk  leader_ms  relay_ms  segment_ms"]
    for i, at in sorted(seg_at.items()):

        def ms(t: float | None) -> str:
            return f"{(t - t0) * 1000:9.0f}" if t is not None else "        -"

        rows.append(f"{i:5d}  {ms(lt.get(i))}  {ms(rt.get(i))}  {ms(at)}")
    return rows


def run_full(
    rec: Path,
    n_chunks: int,
    *,
    realtime: bool,
    startup_delay_ms: int,
    profile_dir: Path | None,
    rendition: str = "auto",
) -> FullRun:
    """One run of (b); see the module docstring for what the clock covers."""
    procs: list[_Proc] = []
    with tempfile.TemporaryDirectory(prefix="bench-split-") as tmp:
        work = Path(tmp)
        try:
            common = [
                "moq-publish",
                "--input",
                str(rec),
                "--linger-ms",
                "600000",
                "--startup-delay-ms",
                str(startup_delay_ms),
                *(["--realtime"] if realtime else []),
            ]
            key = work / "leader.key"  # a publisher never makes a key: keygen first
            subprocess.run([sys.executable, "-m", "ec_node", "keygen", "-o", str(key)], check=True, capture_output=True)
            deadline = time.monotonic() + STARTUP_TIMEOUT_S
            leader = _Proc(
                "leader",
                [*common, "--publish-manifests", "--publish-chunks=false", "--signing-key", str(work / "leader.key")],
                work,
                profile_dir,
            )
            procs.append(leader)
            relay = _Proc("relay", [*common, "--publish-chunks=true"], work, profile_dir)
            procs.append(relay)
            started: dict[str, tuple[float, dict[str, Any]]] = {}
            for p in (leader, relay):
                got = p.next_event(deadline)
                if got is None:
                    raise BenchError(f"{p.name} exited ({p.proc.wait()}) before its startup line\n{p.stderr_tail()}")
                started[p.name] = got
            sa, sb = started["leader"][1], started["relay"][1]
            ingest_start = min(at for at, _ in started.values()) + startup_delay_ms / 1000
            sub = _Proc(
                "subscriber",
                [
                    "moq-subscribe",
                    "--remote",
                    json.dumps(sb["endpoint_addr"]),
                    "--remote-manifests",
                    json.dumps(sa["endpoint_addr"]),
                    "--broadcast",
                    sb["broadcast"],
                    "--subscribe-manifests",
                    "--require-manifest",
                    "--trust-signer",
                    sa["signer_id"],
                    "--max-invalid-chunks",
                    "0",
                    "--stop-after",
                    str(n_chunks),
                    "--output-dir",
                    str(work / "hls"),
                    "--browser-rendition",
                    rendition,
                    "--json",
                ],
                work,
                profile_dir,
            )
            procs.append(sub)
            media_s = n_chunks * 2.0
            deadline = time.monotonic() + STARTUP_TIMEOUT_S + (media_s * 2 if realtime else media_s * 4)
            seg_bytes = 0
            last_at = 0.0
            latencies: list[float] = []
            seg_at: dict[int, float] = {}
            cpu0: dict[str, float | None] = {}
            cpu1: dict[str, float | None] = {}
            end: dict[str, Any] | None = None
            while (got := sub.next_event(deadline)) is not None:
                at, ev = got
                if ev["event"] == "subscribed" and startup_delay_ms and at > ingest_start:
                    raise BenchError(
                        f"subscriber subscribed {at - ingest_start:.2f} s after ingest started: "
                        "raise --startup-delay-ms so connection set-up stays out of the window"
                    )
                elif ev["event"] == "subscribed":
                    cpu0 = {p.name: _cpu_s(p.proc.pid) for p in procs}
                elif ev["event"] == "segment":
                    seg_bytes += ev["bytes"]
                    last_at = at
                    latencies.append(float(ev["latency_ms"]))
                    seg_at[ev["chunk_index"]] = at
                    if len(seg_at) == n_chunks:
                        cpu1 = {p.name: _cpu_s(p.proc.pid) for p in procs}
                elif ev["event"] == "end":
                    end = ev
            rc = sub.proc.wait(timeout=60)
            if rc != 0 or end is None or end["segments"] != n_chunks or end["rejected"]:
                raise BenchError(
                    f"subscriber failed: rc={rc} end={end}\n{sub.stderr_tail()}\n"
                    f"{leader.stderr_tail(5)}\n{relay.stderr_tail(5)}"
                )
            window = last_at - ingest_start
            for p in (leader, relay):
                p.stop()  # flush their logs for the timeline
            timeline = _timeline(ingest_start, leader, relay, seg_at)
            cpu = {k: c1 - c0 for k, c1 in cpu1.items() if c1 is not None and (c0 := cpu0.get(k)) is not None}
            return FullRun(seg_bytes / window / 1e6, len(latencies), seg_bytes, window, latencies, timeline, cpu)
        finally:
            for p in reversed(procs):
                p.stop()


def pct(values: list[float], q: float) -> float:
    """Nearest-rank percentile (with few samples p99 is the maximum)."""
    s = sorted(values)
    return s[max(0, math.ceil(q / 100 * len(s)) - 1)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=30, help="recording length (media seconds)")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--realtime", action="store_true", help="also measure latency with PCR-paced input")
    ap.add_argument("--realtime-seconds", type=float, help="recording length for the latency run (default --seconds)")
    ap.add_argument(
        "--startup-delay-ms",
        type=int,
        default=4000,
        help="publishers' ingest delay, long enough for the subscriber to connect first",
    )
    ap.add_argument(
        "--browser-rendition",
        default="auto",
        choices=("auto", "always", "off"),
        help="the subscriber's browser rendition (auto, as a user gets it, transcodes this MPEG-2 source)",
    )
    ap.add_argument("--timeline", action="store_true", help="print per-chunk times of the last full-path run")
    ap.add_argument("--profile", type=Path, metavar="DIR", help="run (b)'s processes under cProfile into DIR")
    a = ap.parse_args()

    rec = recording(a.seconds)
    payloads = complete_chunks(rec)
    total = sum(len(p) for p in payloads)
    print(
        f"recording: {rec.name}, {rec.stat().st_size / 1e6:.1f} MB, {a.seconds:g} s; "
        f"{len(payloads)} complete chunks, {total / 1e6:.1f} MB",
        flush=True,
    )
    if a.profile:
        a.profile.mkdir(parents=True, exist_ok=True)
    raw: list[float] = []
    full: list[FullRun] = []
    for i in range(a.runs):
        raw.append(run_raw(payloads))
        full.append(
            run_full(
                rec,
                len(payloads),
                realtime=False,
                startup_delay_ms=a.startup_delay_ms,
                profile_dir=a.profile,
                rendition=a.browser_rendition,
            )
        )
        f = full[-1]
        if f.bytes != total:
            raise BenchError(f"full path wrote {f.bytes} segment bytes, the raw run carried {total}")
        print(
            f"run {i + 1}: raw {raw[-1]:.1f} MB/s, full {f.mbps:.1f} MB/s "
            f"({f.bytes / 1e6:.1f} MB in {f.window_s:.3f} s, {f.segments} segments)",
            flush=True,
        )
    raw_m = statistics.median(raw)
    full_m = statistics.median(f.mbps for f in full)
    ratio = full_m / raw_m
    print(f"raw MoQ    median {raw_m:.1f} MB/s (runs: {', '.join(f'{x:.1f}' for x in raw)})")
    print(f"full path  median {full_m:.1f} MB/s (runs: {', '.join(f'{f.mbps:.1f}' for f in full)})")
    print(
        f"ratio full/raw {ratio:.2f} (target >= 0.8: {'met' if ratio >= 0.8 else 'NOT met'}); "
        f"full path = {full_m * 8 / 19.39:.0f}x a 19.39 Mb/s ATSC multiplex",
        flush=True,
    )
    if a.timeline:
        print("timeline of the last full-path run (ms after ingest start):")
        print("\n".join("  " + row for row in full[-1].timeline))
        cpu = ", ".join(f"{k} {v:.2f} s" for k, v in full[-1].cpu_s.items())
        print(
            f"CPU used from subscription to the last segment: {cpu} (window {full[-1].window_s:.2f} s, "
            f"{os.cpu_count()} CPUs)",
            flush=True,
        )

    if a.realtime:
        rt_rec = recording(a.realtime_seconds or a.seconds)
        n = len(complete_chunks(rt_rec))
        r = run_full(rt_rec, n, realtime=True, startup_delay_ms=0, profile_dir=a.profile, rendition=a.browser_rendition)
        lat = r.latencies_ms
        print(
            f"latency (--realtime, {len(lat)} segments, object received -> segment on disk): "
            f"p50 {pct(lat, 50):.1f} ms, p99 {pct(lat, 99):.1f} ms, max {max(lat):.1f} ms",
            flush=True,
        )


if __name__ == "__main__":
    try:
        main()
    except BenchError as e:
        print(f"bench_split_source: error: {e}", file=sys.stderr)
        sys.exit(1)
