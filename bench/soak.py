"""Soak the mesh in real time and report lost segments and memory (run by hand, not in CI).

    .venv/bin/python bench/soak.py [--minutes 30] [--out DIR]

Everything is a real ``ec-node`` process on 127.0.0.1: an HDHomeRun emulator looping a 60 s
720p MPEG-2 ATSC-like file at PCR pace (3 tuners), a manifests-only leader and an objects
publisher each reading their own tuner for ``--minutes``, a verifying relay in front of the
publisher, and a subscriber pulling objects from the relay *and* the publisher with manifests
from the leader. Every ~10 s the script samples each process's VmRSS from /proc. At the end it
writes ``soak.json``, ``soak.txt`` and the subscriber's ``events.jsonl`` to ``--out`` and prints
the summary.

Lost segments = the sum of the subscriber's ``gap`` ranges (chunks it gave up on). The file
carries an ATSC STT, so chunk indices are broadcast-time windows (PROTOCOL.md section 1); each
media loop restarts the PTS while the emulator's STT runs on, so the chunker re-anchors and the
indices skip the few windows that takes. The subscriber knows from the leader's signed
``prev_chunk_index`` that nothing is missing there and writes an HLS discontinuity instead. The
script checks that from the events: every index jump in the written segments is either exactly a
``gap`` event (a loss) or has none (a signed jump: a discontinuity). MB = 10^6 bytes.

Verdicts: the mesh ran cleanly (subscriber ``end`` with exit 0, every process exit 0, at least
90 % of the segments the duration makes); lost = 0; RSS of each mesh process under 200 MB and
flat (at most 10 MB growth over the second half of the run). The emulator is sampled but not
judged: it is the harness (it holds the file plus one re-stamped copy per looping stream).
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ec_node.devkit.procs import stop_process

CHUNK_MS = 2000
RSS_TARGET_MB = 200.0
FLAT_TOLERANCE_MB = 10.0  # end minus warm-up RSS allowed before memory counts as growing
STARTUP_TIMEOUT_S = 60.0


# --------------------------------------------------------------------------- pure analysis


def percentile(values: list[float], p: float) -> float | None:
    """Nearest-rank percentile (None for no values)."""
    if not values:
        return None
    s = sorted(values)
    k = max(0, min(len(s) - 1, int(round(p / 100 * len(s) + 0.5)) - 1))
    return s[k]


def parse_range(text: str) -> tuple[int, int]:
    a, b = text.split("..")
    return int(a), int(b)


def analyze_events(events: list[dict[str, Any]]) -> dict[str, Any]:
    """What the subscriber's JSON events say: segments, losses, discontinuities, rejections, latency."""
    segs = [e for e in events if e.get("event") == "segment"]
    gaps = [parse_range(e["chunks"]) for e in events if e.get("event") == "gap"]
    jumps: list[dict[str, Any]] = []
    for prev, cur in zip(segs, segs[1:], strict=False):
        p, c = prev["chunk_index"], cur["chunk_index"]
        if c == p + 1:
            continue
        covered = [(a, b) for a, b in gaps if p < a <= b < c]
        kind = "signed" if not covered else "loss" if covered == [(p + 1, c - 1)] else "partial"
        jumps.append({"from": p, "to": c, "kind": kind})
    rejected = [e for e in events if e.get("event") == "rejected"]
    by_reason: dict[str, int] = {}
    for e in rejected:
        by_reason[e["reason"]] = by_reason.get(e["reason"], 0) + 1
    counts: dict[str, int] = {}
    for e in events:
        k = str(e.get("event"))
        counts[k] = counts.get(k, 0) + 1
    lat = [float(e["latency_ms"]) for e in segs if "latency_ms" in e]
    end = next((e for e in reversed(events) if e.get("event") == "end"), None)
    return {
        "segments": len(segs),
        "first_chunk": segs[0]["chunk_index"] if segs else None,
        "last_chunk": segs[-1]["chunk_index"] if segs else None,
        "lost_segments": sum(b - a + 1 for a, b in gaps),
        "gaps": [f"{a}..{b}" for a, b in gaps],
        "discontinuities": sum(1 for j in jumps if j["kind"] == "signed"),
        "index_jumps": jumps,
        "rejected": len(rejected),
        "rejected_by_reason": by_reason,
        "peer_events": [
            e for e in events if str(e.get("event", "")).startswith("peer_") and e.get("event") != "peer_connected"
        ],
        "event_counts": counts,
        "latency_ms": {
            "p50": percentile(lat, 50),
            "p99": percentile(lat, 99),
            "max": max(lat) if lat else None,
            "n": len(lat),
        },
        "bytes": sum(int(s["bytes"]) for s in segs),
        "media_s": sum(int(s["duration_ms"]) for s in segs) / 1000,
        "end": end,
    }


def summarize_rss(samples: list[tuple[float, float | None]], warmup_s: float, until_s: float) -> dict[str, Any]:
    """First / warm-up / end / max RSS (MB) and the slope after warm-up, from (elapsed_s, mb) samples.

    "end" is the last sample taken while the input was still running (t <= until_s): what comes
    after is shutdown, not steady state.
    """
    alive = [(t, m) for t, m in samples if m is not None]
    if not alive:
        return {
            "first": None,
            "warm": None,
            "mid": None,
            "end": None,
            "max": None,
            "growth": None,
            "growth_second_half": None,
            "slope_mb_per_h": None,
        }
    steady = [(t, m) for t, m in alive if t <= until_s] or alive
    warm = next(((t, m) for t, m in steady if t >= warmup_s), steady[0])
    end = steady[-1]
    mid = next(((t, m) for t, m in steady if t >= until_s / 2), end)
    tail = [(t, m) for t, m in steady if t >= warm[0]]
    slope = None
    if len(tail) >= 3:
        n = len(tail)
        mt = sum(t for t, _ in tail) / n
        mm = sum(m for _, m in tail) / n
        den = sum((t - mt) ** 2 for t, _ in tail)
        if den > 0:
            slope = round(sum((t - mt) * (m - mm) for t, m in tail) / den * 3600, 1)
    return {
        "first": alive[0][1],
        "first_at_s": round(alive[0][0], 1),
        "warm": warm[1],
        "warm_at_s": round(warm[0], 1),
        "end": end[1],
        "end_at_s": round(end[0], 1),
        "mid": mid[1],
        "mid_at_s": round(mid[0], 1),
        "max": max(m for _, m in alive),
        "growth": round(end[1] - warm[1], 1),
        # bounded caches fill for minutes (a 256 MB group cache at ~1.8 MB/s: ~2.5 min), so
        # "flat" is judged on the second half of the run
        "growth_second_half": round(end[1] - mid[1], 1),
        "slope_mb_per_h": slope,
    }


# --------------------------------------------------------------------------- processes


def read_rss_mb(pid: int) -> float | None:
    """VmRSS of a live process in MB (10^6 bytes); None once it is gone."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return round(int(line.split()[1]) * 1024 / 1e6, 1)
    except (OSError, ValueError):
        return None
    return None


@dataclass
class Proc:
    """One ``python -m ec_node -v ...`` process; stdout lines are kept (and teed to a file) by a thread."""

    name: str
    args: list[str]
    out: Path
    proc: subprocess.Popen[bytes] = field(init=False)
    lines: list[str] = field(default_factory=list)
    _q: queue.Queue[str | None] = field(default_factory=queue.Queue)

    def __post_init__(self) -> None:
        self._err = (self.out / f"{self.name}.stderr").open("wb")
        self._tee = (self.out / f"{self.name}.stdout").open("w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "ec_node", "-v", *self.args],
            cwd=self.out,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=self._err,
            env=dict(os.environ, PYTHONUNBUFFERED="1"),
        )
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            self._tee.write(line + "\n")
            self._tee.flush()
            self._q.put(line)
        self._q.put(None)

    def next_json(self, timeout: float = STARTUP_TIMEOUT_S) -> dict[str, Any] | None:
        """The next JSON line (None at EOF); raises queue.Empty on timeout."""
        while True:
            line = self._q.get(timeout=timeout)
            if line is None:
                return None
            self.lines.append(line)
            if line.startswith("{"):
                obj = json.loads(line)
                assert isinstance(obj, dict)
                return obj

    def startup(self) -> dict[str, Any]:
        try:
            obj = self.next_json()
        except queue.Empty:
            obj = None
        if obj is None:
            raise RuntimeError(
                f"{self.name} did not start (exit {self.proc.poll()}); see {self.name}.stderr:\n"
                + self.stderr()[-2000:]
            )
        return obj

    def drain(self) -> list[dict[str, Any]]:
        """Every JSON line that has arrived so far, without waiting."""
        got: list[dict[str, Any]] = []
        while True:
            try:
                obj = self.next_json(timeout=0)
            except queue.Empty:
                return got
            if obj is None:
                return got
            got.append(obj)

    def stderr(self) -> str:
        self._err.flush()
        return (self.out / f"{self.name}.stderr").read_text(errors="replace")

    def stop(self) -> None:
        stop_process(self.proc)
        self._err.close()


def addr(startup: dict[str, Any]) -> str:
    return json.dumps(startup["endpoint_addr"])


def _last_status_line(text: str) -> str | None:
    lines = [ln for ln in text.splitlines() if " status {" in ln]
    return lines[-1].strip() if lines else None


# --------------------------------------------------------------------------- the run


def run(
    minutes: float,
    out: Path,
    warmup_s: float,
    sample_s: float,
    margin_s: float,
    media: Path | None,
    cache_mb: int | None,
) -> dict[str, Any]:
    from ec_node.devkit.media_cache import cached_media
    from ec_node.devkit.synth import preset_options

    duration_s = minutes * 60
    out.mkdir(parents=True, exist_ok=True)
    media = media or cached_media(preset_options("720p", "mpeg2", duration_s=60))
    cache = ["--cache-mb", str(cache_mb)] if cache_mb else []
    procs: list[Proc] = []
    samples: dict[str, list[tuple[float, float | None]]] = {}
    events: list[dict[str, Any]] = []
    t0 = time.monotonic()

    def start(name: str, *args: str) -> dict[str, Any]:
        p = Proc(name, list(args), out)
        procs.append(p)
        return p.startup()

    try:
        emu = start("emulator", "hdhr-emulator", "--media", str(media), "--tuners", "3")
        src = f"hdhr://127.0.0.1:{emu['http_port']}/7.1"
        dur = ["--duration", str(duration_s), "--linger-ms", "30000"]
        if not (out / "leader.key").exists():  # a publisher never makes a key: keygen first
            subprocess.run(
                [sys.executable, "-m", "ec_node", "keygen", "-o", str(out / "leader.key")],
                check=True,
                capture_output=True,
            )
        lead = start(
            "leader",
            "moq-publish",
            "--input",
            src,
            *dur,
            "--publish-manifests",
            "--publish-chunks=false",
            "--signing-key",
            str(out / "leader.key"),
            *cache,
        )
        pub = start("publisher", "moq-publish", "--input", src, *dur, *cache)
        if pub["broadcast"] != lead["broadcast"]:
            raise RuntimeError(
                f"leader and publisher disagree on the broadcast: {lead['broadcast']} vs {pub['broadcast']}"
            )
        b = lead["broadcast"]
        relay = start(
            "relay",
            "relay",
            "--remote",
            addr(pub),
            "--remote-manifests",
            addr(lead),
            "--require-manifest",
            "--trust-signer",
            lead["signer_id"],
            "--broadcast",
            b,
            *cache,
        )
        sub = Proc(
            "subscriber",
            [
                "moq-subscribe",
                "--remote",
                addr(relay),
                "--remote",
                addr(pub),
                "--remote-manifests",
                addr(lead),
                "--broadcast",
                b,
                "--subscribe-manifests",
                "--require-manifest",
                "--trust-signer",
                lead["signer_id"],
                "--hls-window",
                "30",
                "--output-dir",
                str(out / "hls"),
                "--json",
            ],
            out,
        )
        procs.append(sub)
        events.append(sub.startup())  # "subscribed": its imports are done, its links starting
        t0 = time.monotonic()  # the soak clock starts with the subscriber
        print(f"soak: {minutes:g} min, media {media.name}, output {out}", flush=True)
        print("      pids " + ", ".join(f"{p.name}={p.proc.pid}" for p in procs), flush=True)
        deadline = t0 + duration_s + margin_s
        next_sample = t0
        while sub.proc.poll() is None and time.monotonic() < deadline:
            events += sub.drain()
            now = time.monotonic()
            if now >= next_sample:
                next_sample += sample_s
                el = now - t0
                for p in procs:
                    samples.setdefault(p.name, []).append((el, read_rss_mb(p.proc.pid)))
                lost = analyze_events(events)["lost_segments"]
                segs = sum(1 for e in events if e.get("event") == "segment")
                rss = " ".join(f"{p.name}={samples[p.name][-1][1]}" for p in procs)
                print(f"[{el:6.0f} s] segments={segs} lost={lost} rss_mb: {rss}", flush=True)
                dead = [p.name for p in procs[:-1] if p.proc.poll() is not None and el < duration_s - 5]
                if dead:
                    print(f"          exited early: {dead}", flush=True)
            time.sleep(0.5)
        stopped_by_us = sub.proc.poll() is None
    finally:
        for p in reversed(procs):
            p.stop()
    elapsed = time.monotonic() - t0
    try:
        while (ev := sub.next_json(timeout=5)) is not None:
            events.append(ev)
    except queue.Empty:
        pass
    (out / "events.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events))
    sub_report = analyze_events(events)
    processes: dict[str, dict[str, Any]] = {
        p.name: {
            "pid": p.proc.pid,
            "argv": p.args,
            "exit_code": p.proc.returncode,
            "rss_mb": summarize_rss(samples.get(p.name, []), warmup_s, duration_s),
        }
        for p in procs
    }
    relay_err = (out / "relay.stderr").read_text(errors="replace")
    steady = {n: v for n, v in processes.items() if n != "emulator"}
    rss_ok = all(
        v["rss_mb"]["max"] is not None
        and v["rss_mb"]["max"] < RSS_TARGET_MB
        and v["rss_mb"]["growth_second_half"] is not None
        and v["rss_mb"]["growth_second_half"] <= FLAT_TOLERANCE_MB
        for v in steady.values()
    )
    end = sub_report["end"] or {}
    expected = duration_s * 1000 / CHUNK_MS
    return {
        "minutes": minutes,
        "elapsed_s": round(elapsed, 1),
        "media": str(media),
        "warmup_s": warmup_s,
        "sample_s": sample_s,
        "cache_mb": cache_mb,
        "subscriber_stopped_by_soak": stopped_by_us,
        "subscriber": sub_report,
        "relay": {
            "last_status": _last_status_line(relay_err),
            "invalid_objects_logged": sum(
                1 for ln in relay_err.splitlines() if " rejected {" in ln and '"peer_fault":true' in ln
            ),
            "warnings": sum(1 for ln in relay_err.splitlines() if " WARNING " in ln or "WARNING:" in ln),
        },
        "processes": processes,
        "rss_samples": {n: [[round(t, 1), m] for t, m in s] for n, s in samples.items()},
        "expected_segments": round(expected),
        "verdict": {
            # a run that died early must not pass on "0 lost": clean end, every process exit 0,
            # and at least 90 % of the segments the input duration makes
            "mesh_healthy": end.get("exit_code") == 0
            and all(v["exit_code"] == 0 for v in processes.values())
            and sub_report["segments"] >= 0.9 * expected,
            "lost_segments_zero": sub_report["lost_segments"] == 0,
            "no_unexplained_jumps": all(j["kind"] != "partial" for j in sub_report["index_jumps"]),
            "rss_flat_and_under_target": rss_ok,
        },
    }


def render(r: dict[str, Any]) -> str:
    s = r["subscriber"]
    lat = s["latency_ms"]
    end = s["end"] or {}
    lines = [
        f"soak: {r['minutes']:g} min ({r['elapsed_s']:.0f} s wall), media {Path(r['media']).name}",
        f"segments written:  {s['segments']} ({s['media_s']:.0f} s of media, {s['bytes'] / 1e6:.0f} MB), "
        f"chunks {s['first_chunk']}..{s['last_chunk']}",
        f"lost segments:     {s['lost_segments']} (gaps: {s['gaps'] or 'none'})",
        f"discontinuities:   {s['discontinuities']} (index jumps: "
        + (", ".join(f"{j['from']}->{j['to']} {j['kind']}" for j in s["index_jumps"]) or "none")
        + ")",
        f"rejected:          {s['rejected']} {s['rejected_by_reason'] or ''}",
        f"peer events:       {len(s['peer_events'])} {[e['event'] for e in s['peer_events']] or ''}",
        f"latency_ms (object received -> segment on disk): p50 {lat['p50']} p99 {lat['p99']} max {lat['max']}",
        f"subscriber end:    {end.get('reason')} (exit {end.get('exit_code')}), "
        f"stopped by soak: {r['subscriber_stopped_by_soak']}",
        f"relay:             {r['relay']['last_status']}",
        "RSS MB: first / warm-up / mid-run / end / max; growth end-warm, end-mid; slope after warm-up MB/h",
    ]
    for name, p in r["processes"].items():
        m = p["rss_mb"]
        lines.append(
            f"  {name:<11} {m['first']} @{m.get('first_at_s')}s / {m['warm']} @{m.get('warm_at_s')}s / "
            f"{m['mid']} @{m.get('mid_at_s')}s / {m['end']} @{m.get('end_at_s')}s / {m['max']}; "
            f"{m['growth']:+}, {m['growth_second_half']:+}; {m['slope_mb_per_h']}  (exit {p['exit_code']})"
        )
    v = r["verdict"]
    lines.append(
        f"verdict: mesh healthy (clean exits, >= 90 % of {r['expected_segments']} segments) "
        f"{'PASS' if v['mesh_healthy'] else 'FAIL'}; lost=0 "
        f"{'PASS' if v['lost_segments_zero'] and v['no_unexplained_jumps'] else 'FAIL'}; "
        f"RSS flat (<= {FLAT_TOLERANCE_MB:g} MB growth over the second half) and < {RSS_TARGET_MB:g} MB "
        "per mesh process (the emulator is the harness, not judged) "
        f"{'PASS' if v['rss_flat_and_under_target'] else 'FAIL'}"
    )
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--minutes", type=float, default=30.0)
    ap.add_argument("--out", type=Path, default=None, help="Output directory (default: a new /tmp/ec-soak-*).")
    ap.add_argument("--warmup-s", type=float, default=60.0, help="RSS 'start' is the first sample after this.")
    ap.add_argument("--sample-s", type=float, default=10.0)
    ap.add_argument("--margin-s", type=float, default=90.0, help="Wait this long past --minutes for the end.")
    ap.add_argument("--media", type=Path, default=None, help="TS file to loop (default: generated 60 s 720p).")
    ap.add_argument("--cache-mb", type=int, default=None, help="Pass --cache-mb to publishers and relay.")
    a = ap.parse_args()
    out = a.out or Path(tempfile.mkdtemp(prefix="ec-soak-"))
    r = run(a.minutes, out.resolve(), a.warmup_s, a.sample_s, a.margin_s, a.media, a.cache_mb)
    (out / "soak.json").write_text(json.dumps(r, indent=1) + "\n")
    text = render(r)
    (out / "soak.txt").write_text(text)
    print(text, end="")
    print(f"written: {out / 'soak.json'}, {out / 'soak.txt'}, {out / 'events.jsonl'}")


if __name__ == "__main__":
    main()
