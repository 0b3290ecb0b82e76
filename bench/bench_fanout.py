"""Fan-out: `ec-node relay --require-manifest` vs a plain moq relay, K light subscribers, one 1080i channel.

Why: the relay must keep every subscriber whole up to at least the K a plain moq relay manages, at
no more than 1.2x its memory, and its memory must stay bounded when it is overloaded (issue "fan-out").

Per point (relay kind x K), all real processes on 127.0.0.1, each stopped at the end of the point:

1. ``ec-node moq-publish --input <synthetic 1080i MPEG-2> --realtime --publish-manifests --signing-key KEY``
   (one publisher serves ``chunks`` and ``manifests``; ~4 MB chunks every 2 s);
2. the relay: ``ec-node relay --remote @pub.json --require-manifest --trust-signer ID`` (kind ``ec``) or
   ``python -m ec_node.devkit.plain_relay --remote @pub.json`` (kind ``plain``, the moq module's own
   origin fan-out);
3. ``bench/_fanout_clients.py``: one process, K bare moq clients on the relay subscribing to ``chunks``
   with history, plus a reference client on the publisher; after all are subscribed and a warm-up, a
   window of ``--seconds`` is measured.

Reported per point: subscribers *whole* (every group the reference saw in the window, right size, in
order, within ``--grace`` s after it), mean/min window groups received, lag behind the reference, relay
RSS (/proc VmRSS at window start and end, VmHWM peak) and its growth rate in the window, relay and client
CPU (% of one core; the box has 2). Then a table, the targets, and a JSON summary (also ``--json-out``).

Usage::

    .venv/bin/python bench/bench_fanout.py                        # full sweep, both kinds, ~16 min
    .venv/bin/python bench/bench_fanout.py --ks 10 --seconds 10   # quick check, ~1 min
    .venv/bin/python bench/bench_fanout.py --kinds plain --ks 50,100 --json-out /tmp/fanout.json
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ec_node.devkit.media_cache import cached_media
from ec_node.devkit.procs import stop_process
from ec_node.devkit.synth import preset_options

BENCH = Path(__file__).resolve().parent
DEFAULT_KS = (10, 25, 50, 75, 100, 150, 200)
KINDS = ("ec", "plain")
RSS_TARGET_RATIO = 1.2
STARTUP_TIMEOUT_S = 60.0
SAMPLE_S = 0.5


class RssCapped(Exception):
    """The relay's RSS passed ``--rss-cap-mb``: the point is cut short so the box does not run out of memory."""


class Proc:
    """A child whose stdout lines are read by a thread (waited on as events) and stderr goes to a file."""

    def __init__(self, name: str, argv: list[str], cwd: Path) -> None:
        self.name = name
        self.stderr_path = cwd / f"{name}.stderr"
        self._err = self.stderr_path.open("wb")
        self.proc = subprocess.Popen(
            argv, cwd=cwd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=self._err,
            env=dict(os.environ, PYTHONUNBUFFERED="1"),
        )  # fmt: skip
        self._lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            self._lines.put(raw.decode("utf-8", "replace").rstrip("\n"))
        self._lines.put(None)

    def json_line(self, timeout: float, abort: threading.Event | None = None) -> dict[str, Any]:
        """The next stdout line that is a JSON object (skipping anything else); RssCapped once ``abort`` is set."""
        deadline = time.monotonic() + timeout
        while True:
            if abort is not None and abort.is_set():
                raise RssCapped
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"{self.name}: no output within {timeout:g} s")
            try:
                line = self._lines.get(timeout=min(max(left, 0.01), 0.25))
            except queue.Empty:
                continue
            if line is None:
                raise RuntimeError(f"{self.name} exited ({self.proc.wait()}): {self.stderr_tail()}")
            if line.startswith("{"):
                obj = json.loads(line)
                if isinstance(obj, dict):
                    return obj

    def wait_event(self, event: str, timeout: float, abort: threading.Event | None = None) -> dict[str, Any]:
        """Wait for the JSON line with this ``event``."""
        deadline = time.monotonic() + timeout
        while True:
            obj = self.json_line(deadline - time.monotonic(), abort)
            if obj.get("event") == event:
                return obj

    def stderr_tail(self, n: int = 600) -> str:
        self._err.flush()
        return self.stderr_path.read_text(errors="replace")[-n:]

    def stop(self) -> None:
        """SIGTERM, grace, SIGKILL (the shared helper), then close our end of stderr."""
        stop_process(self.proc)
        self._err.close()


@dataclass
class Mem:
    """Samples a process's VmRSS in a thread; ``mark()`` names instants we want the value at."""

    pid: int
    cap_mb: float
    samples: list[tuple[float, float]] = field(default_factory=list)  # (monotonic, MB)
    over_cap: threading.Event = field(default_factory=threading.Event)
    _stop: threading.Event = field(default_factory=threading.Event)

    def start(self) -> Mem:
        threading.Thread(target=self._run, daemon=True).start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            rss = status_mb(self.pid).get("VmRSS")
            if rss is not None:
                self.samples.append((time.monotonic(), rss))
                if rss > self.cap_mb:
                    self.over_cap.set()
            self._stop.wait(SAMPLE_S)

    def stop(self) -> None:
        self._stop.set()

    def between(self, t0: float, t1: float) -> list[tuple[float, float]]:
        return [(t, m) for t, m in self.samples if t0 <= t <= t1]


def status_mb(pid: int) -> dict[str, float]:
    """VmRSS / VmHWM of ``pid`` in MB (1e6 B); empty once it is gone."""
    out: dict[str, float] = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(("VmRSS:", "VmHWM:")):
                    key, value = line.split(":", 1)
                    out[key] = round(int(value.split()[0]) * 1024 / 1e6, 1)
    except OSError:
        pass
    return out


def cpu_s(pid: int) -> float:
    """utime + stime of ``pid`` in seconds (0 once it is gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            parts = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(parts[11]) + int(parts[12])) / os.sysconf("SC_CLK_TCK")


def busy_s() -> float:
    """CPU seconds the whole box has been busy (all cores, /proc/stat), to see load from others."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def slope_mb_per_min(samples: list[tuple[float, float]]) -> float | None:
    """Least-squares RSS growth in MB/min over the window (None with too few samples)."""
    if len(samples) < 4:
        return None
    n = len(samples)
    mt = sum(t for t, _ in samples) / n
    mm = sum(m for _, m in samples) / n
    var = sum((t - mt) ** 2 for t, _ in samples)
    if var == 0:
        return None
    return round(60 * sum((t - mt) * (m - mm) for t, m in samples) / var, 1)


@dataclass(frozen=True)
class Setup:
    """What every point shares: the media, the signing key and its signer id."""

    work: Path
    media: Path
    key: Path
    signer_id: str
    args: argparse.Namespace


def prepare(args: argparse.Namespace, work: Path) -> Setup:
    """Synthesize (or reuse) the 1080i channel and make the leader's signing key."""
    duration = max(90.0, args.seconds + args.warmup + 50.0)  # + startup, setup (<= 25 s), grace
    media = cached_media(preset_options("1080i", "mpeg2", duration_s=duration))
    key = work / "signing.key"
    out = subprocess.run(
        [sys.executable, "-m", "ec_node", "keygen", "-o", str(key)], check=True, capture_output=True, text=True
    )
    signer = out.stdout.strip().split()[-1]
    return Setup(work, media, key, signer, args)


def relay_argv(kind: str, setup: Setup, pub_json: Path, relay_json: Path) -> list[str]:
    """The relay under test: ec-node's verifying relay, or the devkit's plain origin fan-out."""
    if kind == "ec":
        return [
            sys.executable, "-m", "ec_node", "relay", "--remote", f"@{pub_json}", "--require-manifest",
            "--trust-signer", setup.signer_id, "--listen", "127.0.0.1:0", "--addr-file", str(relay_json),
            *setup.args.ec_args.split(),
        ]  # fmt: skip
    return [
        sys.executable, "-m", "ec_node.devkit.plain_relay", "--remote", f"@{pub_json}",
        "--listen", "127.0.0.1:0", "--addr-file", str(relay_json),
    ]  # fmt: skip


def run_point(kind: str, k: int, setup: Setup) -> dict[str, Any]:
    """One relay kind at one K; every process started here is stopped here, even on error."""
    args = setup.args
    point = setup.work / f"{kind}-{k}"
    point.mkdir()
    pub_json, relay_json = point / "pub.json", point / "relay.json"
    procs: list[Proc] = []
    mem: Mem | None = None
    row: dict[str, Any] = {"kind": kind, "k": k}
    try:
        pub = Proc("publisher", [
            sys.executable, "-m", "ec_node", "moq-publish", "--input", str(setup.media), "--realtime",
            "--publish-manifests", "--signing-key", str(setup.key), "--listen", "127.0.0.1:0",
            "--addr-file", str(pub_json), "--linger-ms", "30000",
        ], point)  # fmt: skip
        procs.append(pub)
        startup = pub.json_line(STARTUP_TIMEOUT_S)
        broadcast = startup["broadcast"]
        relay = Proc("relay", relay_argv(kind, setup, pub_json, relay_json), point)
        procs.append(relay)
        relay.json_line(STARTUP_TIMEOUT_S)
        mem = Mem(relay.proc.pid, args.rss_cap_mb).start()
        cap = mem.over_cap
        t_relay = time.monotonic()
        clients = Proc("clients", [
            sys.executable, str(BENCH / "_fanout_clients.py"), "--relay", f"@{relay_json}",
            "--publisher", f"@{pub_json}", "--broadcast", broadcast, "--k", str(k),
            "--seconds", str(args.seconds), "--warmup", str(args.warmup), "--grace", str(args.grace),
        ], point)  # fmt: skip
        procs.append(clients)
        ready = clients.wait_event("ready", STARTUP_TIMEOUT_S, cap)
        clients.wait_event("window_start", args.warmup + 30, cap)
        t0, rc0, pc0, b0 = time.monotonic(), cpu_s(relay.proc.pid), cpu_s(pub.proc.pid), busy_s()
        clients.wait_event("window_end", args.seconds + 30, cap)
        t1, rc1, pc1, b1 = time.monotonic(), cpu_s(relay.proc.pid), cpu_s(pub.proc.pid), busy_s()
        result = clients.wait_event("result", args.grace + 60 + k / 2, cap)
        end = status_mb(relay.proc.pid)
        window = mem.between(t0, t1)
        row.update(
            ok=True,
            subscribed=ready["subscribed"],
            setup_s=ready["setup_s"],
            window_groups=result["window_groups"],
            whole=result["whole"],
            groups_mean=result["groups_mean"],
            groups_min=result["groups_min"],
            out_of_order=result["out_of_order"],
            lag_p50_s=result["lag_p50_s"],
            lag_max_s=result["lag_max_s"],
            group_errors=result["group_errors"],
            group_error_kinds=result["group_error_kinds"],
            received_mean=result["received_mean"],
            client_errors=result["client_errors"],
            rss_start_mb=window[0][1] if window else None,
            rss_end_mb=window[-1][1] if window else None,
            rss_peak_mb=end.get("VmHWM"),
            rss_after_grace_mb=end.get("VmRSS"),
            rss_slope_mb_min=slope_mb_per_min(window),
            relay_cpu_pct=round(100 * (rc1 - rc0) / (t1 - t0), 1),
            publisher_cpu_pct=round(100 * (pc1 - pc0) / (t1 - t0), 1),
            clients_cpu_pct=result["clients_cpu_pct"],
        )
        ours = (rc1 - rc0) + (pc1 - pc0) + result["clients_cpu_pct"] * (t1 - t0) / 100
        row["other_cpu_pct"] = round(max(0.0, 100 * ((b1 - b0) - ours) / (t1 - t0)), 1)
        if relay.proc.poll() is not None:
            row.update(ok=False, error=f"relay exited {relay.proc.returncode}: {relay.stderr_tail(300)}")
    except RssCapped:
        assert mem is not None
        t_cap = time.monotonic()
        row.update(
            ok=True, capped=True, whole=0, rss_peak_mb=status_mb(mem.pid).get("VmHWM"),
            rss_end_mb=mem.samples[-1][1] if mem.samples else None,
            rss_slope_mb_min=slope_mb_per_min(mem.between(t_cap - 20, t_cap)),
            capped_after_s=round(t_cap - t_relay, 1),
        )  # fmt: skip
    except (TimeoutError, RuntimeError, KeyError, ValueError) as exc:
        row.update(ok=False, error=str(exc)[:500])
    finally:
        if mem is not None:
            mem.stop()
        for p in reversed(procs):  # clients, relay, publisher
            p.stop()
    return row


def whole_all(row: dict[str, Any]) -> bool:
    return bool(row.get("ok")) and row.get("whole") == row["k"] and row.get("window_groups", 0) > 0


def summarize(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Max K with everyone whole per kind, the RSS ratio at equal K, and growth under overload."""
    by = {(r["kind"], r["k"]): r for r in rows}
    kinds = sorted({r["kind"] for r in rows})
    max_k = {kind: max((r["k"] for r in rows if r["kind"] == kind and whole_all(r)), default=0) for kind in kinds}
    ratios: dict[str, float] = {}  # at equal K where both served everyone (a cut-short point has no ratio)
    for (kind, k), r in by.items():
        plain = by.get(("plain", k))
        if (
            kind == "ec"
            and plain
            and whole_all(r)
            and whole_all(plain)
            and r.get("rss_end_mb")
            and plain.get("rss_end_mb")
        ):
            ratios[str(k)] = round(r["rss_end_mb"] / plain["rss_end_mb"], 2)
    overload = {  # RSS growth where not everyone was served; "capped" = passed --rss-cap-mb
        kind: {str(r["k"]): "capped" if r.get("capped") else r.get("rss_slope_mb_min")
               for r in rows if r["kind"] == kind and not whole_all(r)}
        for kind in kinds
    }  # fmt: skip
    targets: dict[str, Any] = {}
    if "ec" in max_k and "plain" in max_k:
        targets["max_k_ec_ge_plain"] = max_k["ec"] >= max_k["plain"]
        targets["rss_ratio_le_1.2"] = all(v <= RSS_TARGET_RATIO for v in ratios.values()) if ratios else None
    return {"max_k_whole": max_k, "rss_ratio_ec_over_plain": ratios, "overload_rss_slope_mb_min": overload,
            "targets": targets}  # fmt: skip


COLUMNS = [
    ("kind", "kind", 5), ("k", "K", 4), ("whole", "whole", 6), ("window_groups", "win", 4),
    ("groups_mean", "mean", 6), ("groups_min", "min", 4), ("lag_p50_s", "lag50", 6), ("lag_max_s", "lagmx", 6),
    ("rss_start_mb", "rss0", 6), ("rss_end_mb", "rss1", 6), ("rss_peak_mb", "peak", 6),
    ("rss_slope_mb_min", "MB/min", 7), ("relay_cpu_pct", "relCPU", 6), ("clients_cpu_pct", "cliCPU", 6),
    ("publisher_cpu_pct", "pubCPU", 6), ("other_cpu_pct", "other", 6),
]  # fmt: skip


def table_cells(columns: list[tuple[str, str, int]], r: dict[str, Any], ratio: tuple[str, str]) -> str:
    """One row's cells, right-aligned to ``columns``; ``ratio`` = (key, total key) shown as "a/b"."""
    cells = []
    for key, _, width in columns:
        v = r.get(key)
        if key == ratio[0] and r.get("ok"):
            v = f"{v}/{r[ratio[1]]}"
        cells.append(f"{'-' if v is None else v!s:>{width}}")
    return " ".join(cells)


def format_row(r: dict[str, Any]) -> str:
    line = table_cells(COLUMNS, r, ("whole", "k"))
    if not r.get("ok"):
        line += f"  ERROR {r.get('error', '')[:160]}"
    elif r.get("capped"):
        line += f"  RSS CAP: relay passed --rss-cap-mb {r['capped_after_s']} s after it started; point cut short"
    elif r.get("client_errors"):
        line += f"  errors {r['client_errors']}"
    return line


def main() -> None:
    """Parse flags, run every point, print the table and the JSON summary."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--ks", default=",".join(map(str, DEFAULT_KS)), help="comma-separated K values")
    p.add_argument("--kinds", default=",".join(KINDS), help="comma-separated: ec, plain")
    p.add_argument("--seconds", type=float, default=30.0, help="measured window per point (default 30)")
    p.add_argument(
        "--warmup",
        type=float,
        default=None,
        help="after all subscribed, before the window (default 25 s, so the relay's 64 MB cache is "
        "full and RSS is at steady state; 5 s for windows under 30 s)",
    )
    p.add_argument("--grace", type=float, default=6.0, help="after the window, for its last groups")
    p.add_argument(
        "--rss-cap-mb",
        type=float,
        default=6000.0,
        help="cut a point short once the relay's RSS passes this (it grows without bound when "
        "overloaded; the box has to survive the sweep; default %(default)g)",
    )
    p.add_argument("--ec-args", default="", help="extra flags for `ec-node relay`, e.g. '--receive-buffer-mb 8'")
    p.add_argument("--json-out", type=Path, help="also write the rows and summary here")
    p.add_argument("--keep", action="store_true", help="keep the work directory (logs of every process)")
    args = p.parse_args()
    if args.warmup is None:
        args.warmup = 25.0 if args.seconds >= 30 else 5.0
    ks = [int(x) for x in args.ks.split(",") if x.strip()]
    kinds = [x.strip() for x in args.kinds.split(",") if x.strip()]
    if not ks or any(k < 1 for k in ks) or not kinds or any(x not in KINDS for x in kinds):
        p.error("--ks needs positive integers, --kinds a subset of ec,plain")
    work = Path(tempfile.mkdtemp(prefix="bench-fanout-"))
    t_start = time.monotonic()
    rows: list[dict[str, Any]] = []
    try:
        setup = prepare(args, work)
        print(f"# 1080i channel {setup.media.name} ({setup.media.stat().st_size / 1e6:.0f} MB), "
              f"window {args.seconds:g} s, {os.cpu_count()} CPUs, work dir {work}", flush=True)  # fmt: skip
        print(" ".join(f"{title:>{w}}" for _, title, w in COLUMNS), flush=True)
        for kind in kinds:
            for k in ks:
                row = run_point(kind, k, setup)
                rows.append(row)
                print(format_row(row), flush=True)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    summary = summarize(rows)
    summary["elapsed_s"] = round(time.monotonic() - t_start, 1)
    print("# whole = every window group, right size, in order; win = groups in the window; lag = s behind the")
    print("# reference client on the publisher; rss0/rss1 = relay VmRSS at window start/end, peak = VmHWM (MB);")
    print("# MB/min = relay RSS growth in the window; CPU = % of one core over the window (box: 200 %);")
    print("# other = CPU used by processes outside this bench during the window (noise)")
    print(json.dumps({"summary": summary, "rows": rows}, indent=None, separators=(",", ":")))
    if args.json_out:
        args.json_out.write_text(json.dumps({"summary": summary, "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
