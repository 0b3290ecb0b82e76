"""One home node publishing N real-time tuner channels vs the same channels as separate processes.

Why: issue 11's figures. A home node (`ec-node node --config`) runs a tuner's lineup in one process;
targets on the 2-core box: >= 20 real-time 1080i channels in one process, RSS <= 50 MB per added
channel and <= 400 MB at 8 channels, compared with one `moq-publish` process per channel.

Per point (mode x N), all real processes on 127.0.0.1, each stopped at the end of the point:

1. ``ec-node hdhr-emulator --media <synthetic 1080i MPEG-2 + AC-3, ~16 Mb/s> --tuners N --channel ...``
   (N lineup entries, every one streaming the file from its start, PCR-paced at real time);
2. mode ``node``: ``ec-node node --config node.toml --json`` with N channels ``roles = ["leader",
   "objects"]`` (one publisher per channel serving ``chunks`` and signed ``manifests``, one signing
   key); mode ``procs``: N ``ec-node moq-publish --input hdhr://EMU/GN --publish-manifests
   --signing-key KEY --json`` processes (what a user runs today without the node);
3. the subscriber: this file re-run with ``--clients`` in one separate process holding one bare
   ``moq.Client`` per channel (no ec-node pipeline, no verification: a subscriber as cheap as a client
   can be, so it does not eat the CPU being measured) subscribed to that channel's ``chunks`` track,
   reading every group in full and recording (sequence, size, arrival time).

After every channel is subscribed and ``--warmup`` s, a window of ``--seconds`` is measured (cut short
so it ends before the first channel's stream loops: a loop restarts the PTS timeline and today's
chunk indices jump). A channel **keeps real time** when, in the window, it lost no group (no missing
sequence number between its first and last window group, no group that failed to read), got at least
``window / chunk - 1`` groups, and its groups' lateness against the media clock (arrival minus
``sequence x 2 s``) varied by less than one chunk (a publisher falling behind drifts without bound).

Reported per point: channels that kept real time, lost groups, groups per channel, drift; the
publisher side's CPU (% of one core over the window; the box has 2 cores = 200 %) and RSS (/proc VmRSS
at the window's end and VmHWM peak; summed over processes in mode ``procs``); the emulator's and the
subscriber's CPU, and CPU used by processes outside the bench during the window (other work on the
box). Then a table, the targets, and one JSON line (also ``--json-out``).

Usage::

    .venv/bin/python bench/bench_node.py                         # node N = 1,4,8,16,32; procs N = 1,4,8
    .venv/bin/python bench/bench_node.py --counts 1,4 --procs ''  # fewer points, node only
    .venv/bin/python bench/bench_node.py --cache-mb 16           # the publishers' group cache (default 64)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import shutil
import statistics
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

from bench_fanout import Proc, busy_s, cpu_s, status_mb, table_cells

from ec_node.devkit.media_cache import cached_media
from ec_node.devkit.synth import preset_options
from ec_node.integrity.keys import generate_key_file

BENCH = Path(__file__).resolve().parent
EC = [sys.executable, "-m", "ec_node"]
CHUNK_S = 2.0  # the publishers' default --chunk-ms
STARTUP_TIMEOUT_S = 180.0  # hang guards only
SAMPLE_S = 0.5
LOOP_MARGIN_S = 6.0  # the window ends this long before the earliest channel's stream loops
RSS_PER_CHANNEL_MB = 50.0
RSS_AT_8_MB = 400.0
TARGET_CHANNELS = 20


def guide_numbers(n: int) -> list[str]:
    return [f"{10 + i}.1" for i in range(n)]


# -- the subscriber process (--clients) ------------------------------------------------------------


async def _clients(spec: list[dict[str, str]], seconds: float, warmup: float, deadline_in: float) -> dict[str, Any]:
    """Subscribe to every channel, measure one window, judge each channel; the result line."""
    import moq
    from _fanout_clients import Client, _cpu_s, _open, _read, _subscribe, emit, stop_all

    t_start = time.monotonic()
    deadline = t_start + deadline_in
    holders: list[moq.Client] = []
    readers: list[asyncio.Task[None]] = []
    recs: list[Client] = []
    try:
        for ch in spec:
            rec = Client(ch["name"])
            recs.append(rec)
            client = await _open(ch["addr"], 15.0)
            holders.append(client)
            track = await _subscribe(client, ch["broadcast"], 15.0)
            rec.subscribed = True
            readers.append(asyncio.create_task(_read(track, rec), name=f"read-{ch['name']}"))
        emit({"event": "ready", "subscribed": len(readers), "setup_s": round(time.monotonic() - t_start, 2)})
        await asyncio.sleep(warmup)
        window = min(seconds, deadline - time.monotonic())
        if window < 4 * CHUNK_S:
            raise SystemExit(f"no room for a window before the media loops ({window:.1f} s): use longer --media-s")
        cpu0, t0 = _cpu_s(), time.monotonic()
        emit({"event": "window_start", "seconds": round(window, 1)})
        await asyncio.sleep(window)
        t1, cpu1 = time.monotonic(), _cpu_s()
        emit({"event": "window_end"})
        await asyncio.sleep(CHUNK_S)  # a group that completed in the window is still being read
    finally:
        await stop_all(readers, holders)
    chans = [_judge(rec, t0, t1) for rec in recs]
    return {
        "event": "result",
        "window_s": round(t1 - t0, 1),
        "channels": chans,
        "clients_cpu_pct": round(100 * (cpu1 - cpu0) / (t1 - t0), 1),
    }


def _judge(rec: Any, t0: float, t1: float) -> dict[str, Any]:
    """One channel's window: groups that arrived in it, missing sequence numbers, lateness drift."""
    win = [(seq, size, at) for seq, size, at in rec.got if t0 <= at <= t1]
    seqs = sorted({seq for seq, _, _ in win})
    lost = (seqs[-1] - seqs[0] + 1 - len(seqs)) if seqs else 0
    late = [at - seq * CHUNK_S for seq, _, at in win]
    drift = (max(late) - min(late)) if late else None
    slope = _slope([at for _, _, at in win], late)
    expected = math.floor((t1 - t0) / CHUNK_S) - 1
    realtime = bool(seqs) and lost == 0 and rec.group_errors == 0 and rec.error is None and len(seqs) >= expected
    return {
        "name": rec.name,
        "groups": len(seqs),
        "lost": lost,
        "group_errors": rec.group_errors,
        "error": rec.error,
        "mb": round(sum(size for _, size, _ in win) / 1e6, 1),
        "drift_s": round(drift, 2) if drift is not None else None,
        "slope_s_min": round(slope, 2) if slope is not None else None,
        "realtime": realtime and drift is not None and drift < CHUNK_S,
    }


def _slope(xs: list[float], ys: list[float]) -> float | None:
    """Least-squares growth of the lateness in s per minute (falling behind: it keeps growing)."""
    n = len(xs)
    if n < 4:
        return None
    mx, my = sum(xs) / n, sum(ys) / n
    var = sum((x - mx) ** 2 for x in xs)
    return 60 * sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / var if var else None


def clients_main(args: argparse.Namespace) -> None:
    from _fanout_clients import emit

    spec = json.loads(Path(args.clients).read_text())
    emit(asyncio.run(_clients(spec, args.seconds, args.warmup, args.deadline_in)))


# -- the publishers --------------------------------------------------------------------------------


class Sampler:
    """VmRSS of a set of processes, summed, every SAMPLE_S in a thread; the peak in the window."""

    def __init__(self, pids: list[int]) -> None:
        self.pids = pids
        self.samples: list[tuple[float, float]] = []
        self._stop = threading.Event()
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.samples.append((time.monotonic(), sum(status_mb(p).get("VmRSS", 0.0) for p in self.pids)))
            self._stop.wait(SAMPLE_S)

    def peak(self, t0: float, t1: float) -> float | None:
        inside = [m for t, m in self.samples if t0 <= t <= t1]
        return round(max(inside), 1) if inside else None

    def stop(self) -> None:
        self._stop.set()


def node_config(work: Path, emu_port: int, key: Path, gns: list[str], cache_mb: int | None) -> str:
    channels = "".join(f'\n[[channel]]\nguide_number = "{gn}"\n' for gn in gns)
    cache = f"cache_mb = {cache_mb}\n" if cache_mb else ""
    head = textwrap.dedent(
        f"""\
        [node]
        state_dir = "{work / "state"}"
        http = "127.0.0.1:0"
        status_every_s = 3600

        [tuner]
        device = "hdhr://127.0.0.1:{emu_port}"
        tuners = {len(gns)}

        [defaults]
        signing_key = "{key}"
        roles = ["leader", "objects"]
        """
    )
    return head + cache + channels


def start_node(work: Path, emu_port: int, key: Path, gns: list[str], cache_mb: int | None) -> tuple[
    list[Proc], list[dict[str, str]]
]:  # fmt: skip
    """The home node with N channels; once every channel published its first chunk, their addresses."""
    cfg = work / "node.toml"
    cfg.write_text(node_config(work, emu_port, key, gns, cache_mb))
    node = Proc("node", [*EC, "node", "--config", str(cfg), "--json", "--no-live"], work)
    procs = [node]
    node.wait_event("node_started", STARTUP_TIMEOUT_S)
    live: set[str] = set()
    while live != set(gns):
        ev = node.json_line(STARTUP_TIMEOUT_S)
        if ev.get("event") == "live" and ev.get("role") == "publisher":
            live.add(ev["channel"])
        elif ev.get("event") == "channel_stopped":
            raise RuntimeError(f"channel {ev['channel']} stopped: {ev.get('error')}")
    spec = []
    for gn in gns:
        start = json.loads((work / "state" / gn / "publisher.json").read_text())
        spec.append({"name": gn, "addr": json.dumps(start["endpoint_addr"]), "broadcast": start["broadcast"]})
    return procs, spec


def start_procs(work: Path, emu_port: int, key: Path, gns: list[str], cache_mb: int | None) -> tuple[
    list[Proc], list[dict[str, str]]
]:  # fmt: skip
    """One `moq-publish` per channel; once each published its first chunk, their addresses."""
    procs: list[Proc] = []
    spec = []
    for gn in gns:
        argv = [*EC, "moq-publish", "--input", f"hdhr://127.0.0.1:{emu_port}/{gn}", "--publish-manifests",
                "--signing-key", str(key), "--listen", "127.0.0.1:0", "--json",
                *(["--cache-mb", str(cache_mb)] if cache_mb else [])]  # fmt: skip
        procs.append(Proc(f"pub-{gn}", argv, work))
    for gn, p in zip(gns, procs, strict=True):
        start = p.json_line(STARTUP_TIMEOUT_S)
        spec.append({"name": gn, "addr": json.dumps(start["endpoint_addr"]), "broadcast": start["broadcast"]})
    for p in procs:
        p.wait_event("published", STARTUP_TIMEOUT_S)
    return procs, spec


def run_point(mode: str, n: int, media: Path, media_s: float, key: Path, args: argparse.Namespace,
              work: Path) -> dict[str, Any]:  # fmt: skip
    """One mode at one N; every process started here is stopped here, even on error."""
    point = work / f"{mode}-{n}"
    point.mkdir()
    gns = guide_numbers(n)
    procs: list[Proc] = []
    sampler: Sampler | None = None
    row: dict[str, Any] = {"mode": mode, "n": n, "load1": round(os.getloadavg()[0], 2)}
    try:
        emu = Proc("emulator", [*EC, "hdhr-emulator", "--media", str(media), "--tuners", str(n),
                                *[f"--channel={gn}=CH{gn.split('.')[0]}" for gn in gns]], point)  # fmt: skip
        procs.append(emu)
        emu_port = int(emu.json_line(STARTUP_TIMEOUT_S)["http_port"])
        t_tune = time.monotonic()  # no stream of this emulator started before now
        start = start_node if mode == "node" else start_procs
        pubs, spec = start(point, emu_port, key, gns, args.cache_mb)
        procs.extend(pubs)
        pids = [p.proc.pid for p in pubs]
        sampler = Sampler(pids)
        spec_file = point / "clients.json"
        spec_file.write_text(json.dumps(spec))
        deadline_in = media_s - (time.monotonic() - t_tune) - LOOP_MARGIN_S
        clients = Proc("clients", [sys.executable, str(BENCH / "bench_node.py"), "--clients", str(spec_file),
                                   "--seconds", str(args.seconds), "--warmup", str(args.warmup),
                                   "--deadline-in", f"{deadline_in:.1f}"], point)  # fmt: skip
        procs.append(clients)
        ready = clients.wait_event("ready", STARTUP_TIMEOUT_S)
        clients.wait_event("window_start", args.warmup + 60)
        t0, b0 = time.monotonic(), busy_s()
        c0 = {pid: cpu_s(pid) for pid in [*pids, emu.proc.pid]}
        clients.wait_event("window_end", args.seconds + 60)
        t1, b1 = time.monotonic(), busy_s()
        c1 = {pid: cpu_s(pid) for pid in [*pids, emu.proc.pid]}
        rss_end = sum(status_mb(pid).get("VmRSS", 0.0) for pid in pids)
        hwm = sum(status_mb(pid).get("VmHWM", 0.0) for pid in pids)
        result = clients.wait_event("result", 60)
        dt = t1 - t0
        pub_cpu = sum(c1[p] - c0[p] for p in pids)
        emu_cpu = c1[emu.proc.pid] - c0[emu.proc.pid]
        chans = result["channels"]
        drifts = [c["drift_s"] for c in chans if c["drift_s"] is not None]
        slopes = [c["slope_s_min"] for c in chans if c["slope_s_min"] is not None]
        row.update(
            ok=True,
            setup_s=ready["setup_s"],
            window_s=result["window_s"],
            realtime=sum(c["realtime"] for c in chans),
            lost=sum(c["lost"] for c in chans),
            group_errors=sum(c["group_errors"] for c in chans),
            groups_min=min(c["groups"] for c in chans),
            groups_mean=round(statistics.fmean(c["groups"] for c in chans), 1),
            drift_max_s=max(drifts) if drifts else None,
            slope_max_s_min=max(slopes) if slopes else None,
            mb_s=round(sum(c["mb"] for c in chans) / result["window_s"], 1),
            cpu_pct=round(100 * pub_cpu / dt, 1),
            rss_mb=round(rss_end, 1),
            rss_peak_mb=sampler.peak(t0, t1),
            hwm_mb=round(hwm, 1),
            emu_cpu_pct=round(100 * emu_cpu / dt, 1),
            clients_cpu_pct=result["clients_cpu_pct"],
            channels=chans,
        )
        ours = pub_cpu + emu_cpu + result["clients_cpu_pct"] * dt / 100
        row["other_cpu_pct"] = round(max(0.0, 100 * ((b1 - b0) - ours) / dt), 1)
        dead = [p.name for p in pubs if p.proc.poll() is not None]
        if dead:
            row.update(ok=False, error=f"exited during the window: {', '.join(dead)}")
    except (TimeoutError, RuntimeError, KeyError, ValueError, OSError) as exc:
        row.update(ok=False, error=str(exc)[:500])
    finally:
        if sampler is not None:
            sampler.stop()
        for p in reversed(procs):  # clients, publishers, emulator
            p.stop()
    return row


COLUMNS = [
    ("mode", "mode", 5), ("n", "N", 3), ("realtime", "realtime", 8), ("lost", "lost", 4),
    ("groups_min", "gmin", 4), ("drift_max_s", "drift", 5), ("slope_max_s_min", "s/min", 5),
    ("mb_s", "MB/s", 5), ("cpu_pct", "CPU%", 6), ("rss_mb", "RSS", 6), ("rss_peak_mb", "peak", 6),
    ("emu_cpu_pct", "emu%", 5), ("clients_cpu_pct", "sub%", 5), ("other_cpu_pct", "other%", 6),
    ("load1", "load1", 5), ("window_s", "win", 4),
]  # fmt: skip


def format_row(r: dict[str, Any]) -> str:
    line = table_cells(COLUMNS, r, ("realtime", "n"))
    if not r.get("ok"):
        line += f"  ERROR {r.get('error', '')[:200]}"
    else:
        bad = [c for c in r["channels"] if not c["realtime"]]
        if bad:
            line += "  behind: " + ", ".join(
                f"{c['name']} ({c['groups']} groups, lost {c['lost']}, drift {c['drift_s']} s"
                + (f", {c['error'][:60]}" if c["error"] else "") + ")"
                for c in bad[:4]
            )  # fmt: skip
    return line


def summarize(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Most channels all kept real time, RSS per added channel, RSS at 8, node vs procs at equal N."""
    node = {r["n"]: r for r in rows if r["mode"] == "node" and r.get("ok")}
    procs = {r["n"]: r for r in rows if r["mode"] == "procs" and r.get("ok")}
    all_rt = [n for n, r in node.items() if r["realtime"] == n]
    per_added = {}
    if 1 in node:
        for n, r in node.items():
            if n > 1:
                per_added[str(n)] = round((r["rss_mb"] - node[1]["rss_mb"]) / (n - 1), 1)
    vs = {str(n): {"node_rss_mb": node[n]["rss_mb"], "procs_rss_mb": procs[n]["rss_mb"],
                   "node_cpu_pct": node[n]["cpu_pct"], "procs_cpu_pct": procs[n]["cpu_pct"]}
          for n in sorted(node) if n in procs}  # fmt: skip
    max_rt = max(all_rt, default=0)
    targets: dict[str, bool | None] = {
        f">={TARGET_CHANNELS} realtime channels": max_rt >= TARGET_CHANNELS if max(node, default=0) >= 20 else None,
        f"RSS <={RSS_PER_CHANNEL_MB:g} MB per added channel": all(v <= RSS_PER_CHANNEL_MB for v in per_added.values())
        if per_added
        else None,
        f"RSS <={RSS_AT_8_MB:g} MB at 8": node[8]["rss_mb"] <= RSS_AT_8_MB if 8 in node else None,
    }
    return {"node_max_n_all_realtime": max_rt, "node_rss_per_added_channel_mb": per_added, "node_vs_procs": vs,
            "targets": targets}  # fmt: skip


def main() -> None:
    """Parse flags, run every point, print the table and the JSON summary."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--counts", default="1,4,8,16,32", help="N for the node (comma-separated)")
    p.add_argument("--procs", default="1,4,8", help="N for separate moq-publish processes ('' for none)")
    p.add_argument("--seconds", type=float, default=40.0, help="measured window per point (default 40)")
    p.add_argument("--warmup", type=float, default=5.0, help="after all subscribed, before the window")
    p.add_argument("--media-s", type=float, default=60.0, help="length of the synthetic 1080i file (default 60)")
    p.add_argument("--cache-mb", type=int, help="the publishers' group cache in MB (default: theirs, 64)")
    p.add_argument("--json-out", type=Path, help="also write the rows and summary here")
    p.add_argument("--keep", action="store_true", help="keep the work directory (logs of every process)")
    p.add_argument("--clients", help=argparse.SUPPRESS)  # internal: run as the subscriber process
    p.add_argument("--deadline-in", type=float, default=1e9, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.clients:
        clients_main(args)
        return
    try:
        counts = [int(x) for x in args.counts.split(",") if x.strip()]
        procs = [int(x) for x in args.procs.split(",") if x.strip()]
    except ValueError:
        p.error("--counts and --procs take comma-separated integers")
    if any(not 1 <= n <= 64 for n in [*counts, *procs]):
        p.error("N must be 1..64 (the emulator's tuner limit)")
    media = cached_media(preset_options("1080i", "mpeg2", duration_s=args.media_s))
    work = Path(tempfile.mkdtemp(prefix="bench-node-"))
    t_start = time.monotonic()
    rows: list[dict[str, Any]] = []
    try:
        key = work / "leader.key"
        generate_key_file(key)
        print(f"# 1080i channel {media.name} ({media.stat().st_size / 1e6:.0f} MB, {args.media_s:g} s), window "
              f"<= {args.seconds:g} s, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}, work dir {work}",
              flush=True)  # fmt: skip
        print(" ".join(f"{title:>{w}}" for _, title, w in COLUMNS), flush=True)
        for mode, ns in (("node", counts), ("procs", procs)):
            for n in ns:
                row = run_point(mode, n, media, args.media_s, key, args, work)
                rows.append(row)
                print(format_row(row), flush=True)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    summary = summarize(rows)
    summary["elapsed_s"] = round(time.monotonic() - t_start, 1)
    print("# realtime = channels that lost no group, got >= window/2s - 1 groups and drifted < one chunk (2 s);")
    print("# lost = missing groups, all channels; gmin = fewest groups of a channel; drift = max spread of a")
    print("# channel's lateness (s); s/min = the fastest growth of a channel's lateness (least squares); MB/s =")
    print("# all channels' groups received; CPU% / RSS / peak = the node process (procs: all publishers summed),")
    print("# % of one core over the window (box: 200 %), VmRSS MB at the window's end / highest sampled in it;")
    print("# emu% / sub% = emulator / subscriber process; other% = CPU of processes outside this bench in the")
    print("# window; load1 = load average before the point")
    brief = [{k: v for k, v in r.items() if k != "channels"} for r in rows]  # per channel: --json-out
    print(json.dumps({"summary": summary, "rows": brief}, separators=(",", ":")))
    if args.json_out:
        args.json_out.write_text(json.dumps({"summary": summary, "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
