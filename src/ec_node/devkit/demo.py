"""`ec-node demo`: the whole split-source mesh on this machine, with live progress.

Emulated tuner (on generated ATSC-like media) -> duration-query capture -> leader
(manifests only) + availability publisher (objects only), both pacing the capture in real
time -> a verifying relay re-serving the publisher's objects -> subscriber taking objects from
the relay and manifests from the leader -> verified HLS. Every node is a real `ec-node` process
talking MoQ over QUIC on 127.0.0.1.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from ec_node.devkit.decode import decode
from ec_node.devkit.emulator import HdhrEmulator
from ec_node.devkit.media_cache import cached_media
from ec_node.devkit.procs import stop_process
from ec_node.devkit.synth import preset_options
from ec_node.errors import EcError, ExitCode
from ec_node.hdhr.capture import capture
from ec_node.pipeline.channel_output import BROWSER_DIR
from ec_node.pipeline.hls import prepare_dir
from ec_node.serve.server import ThreadedWatchServer
from ec_node.serve.state import WatchState


@dataclass
class DemoConfig:
    """What the demo runs: where, how long, which media."""

    directory: Path = Path("ec-demo")
    seconds: int = 24
    size: str = "720p"
    codec: str = "mpeg2"
    stop_after: int | None = None
    realtime: bool = True
    http: tuple[str, int] = ("127.0.0.1", 0)  # the watch server (port 0: any free port)
    serve: bool = True  # keep serving the result until Ctrl-C


@dataclass
class _Proc:
    name: str
    popen: subprocess.Popen[bytes]
    log: IO[bytes]
    counters: dict[str, int] = field(default_factory=dict)


class Demo:
    """The whole mesh on this machine as child processes, with live progress."""

    def __init__(self, cfg: DemoConfig, out: IO[str]) -> None:
        self.cfg = cfg
        self.out = out
        self.procs: list[_Proc] = []
        self.lock = threading.Lock()
        self.watch: ThreadedWatchServer | None = None

    def say(self, text: str) -> None:
        """Print one progress line (threads share the output)."""
        with self.lock:
            self.out.write(text + "\n")
            self.out.flush()

    # -- processes ------------------------------------------------------------
    def spawn(self, name: str, args: list[str], *, follow_progress: bool = False) -> _Proc:
        """Start one ``ec-node`` process (log on stderr -> NAME.log, JSON events on stdout)."""
        log = (self.cfg.directory / f"{name}.log").open("wb")
        p = subprocess.Popen(
            [sys.executable, "-m", "ec_node", "-v", *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=log,
        )
        proc = _Proc(name, p, log)
        self.procs.append(proc)
        if follow_progress:
            proc.counters = {}
        return proc

    def _follow_events(self, proc: _Proc) -> None:
        """Keep the latest ``published`` counters of a publisher (its JSON events after the startup line)."""
        assert proc.popen.stdout is not None
        for raw in proc.popen.stdout:
            try:
                ev = json.loads(raw)
            except json.JSONDecodeError:
                continue
            if isinstance(ev, dict) and ev.get("event") == "published":
                proc.counters = {k: int(ev[k]) for k in ("chunk_index", "chunks", "objects", "manifests")}

    def first_line(self, proc: _Proc, timeout: float = 60) -> dict[str, Any]:
        """The process's first stdout line (its startup object), or an error naming its log."""
        assert proc.popen.stdout is not None
        box: list[bytes] = []
        t = threading.Thread(target=lambda: box.append(proc.popen.stdout.readline()), daemon=True)  # type: ignore[union-attr]
        t.start()
        t.join(timeout)
        if not box or not box[0]:
            raise EcError(f"{proc.name} did not start; see {self.cfg.directory / (proc.name + '.log')}")
        obj = json.loads(box[0])
        assert isinstance(obj, dict)
        return obj

    def stop_all(self) -> None:
        """Stop every child, the subscriber first."""
        for p in reversed(self.procs):  # subscriber first, then the nodes it pulls from
            stop_process(p.popen)
            p.log.close()

    def _leader_key(self, key: Path) -> Path:
        """The leader's signing key: made once with ``ec-node keygen`` (a publisher never makes one), then reused."""
        if not key.exists():
            made = subprocess.run(
                [sys.executable, "-m", "ec_node", "keygen", "-o", str(key)], capture_output=True, text=True, check=False
            )
            if made.returncode != 0:
                code = next((c for c in ExitCode if c == made.returncode), ExitCode.FAILURE)
                raise EcError(f"ec-node keygen -o {key} failed: {made.stderr.strip()}", code)
        return key

    # -- the run ----------------------------------------------------------------
    def run(self) -> int:
        """Run every step and return the exit code."""
        d = prepare_dir(self.cfg.directory)
        hls = d / "hls"
        if hls.exists():
            shutil.rmtree(hls)
        prepare_dir(hls)
        self.say(f"== every.channel split-source demo (everything under {d}/)")
        self.watch = ThreadedWatchServer(WatchState(), hls, *self.cfg.http)
        self.say(f"   watch it live: {self.watch.url}/")
        opts = preset_options(self.cfg.size, self.cfg.codec, duration_s=float(self.cfg.seconds + 6))  # type: ignore[arg-type]
        t0 = time.monotonic()
        media = cached_media(opts, cache_dir=d / "media")
        self.say(
            f"1. media: {media.name} ({opts.width}x{opts.height} {self.cfg.codec}, ATSC PSIP) "
            f"[{time.monotonic() - t0:.1f} s]"
        )
        rec = d / "capture.ts"
        with HdhrEmulator(media, tuners=2, serve_speed=0) as emu:
            host = f"127.0.0.1:{emu.http_port}"
            self.say(f"2. tuner: HDHomeRun emulator at http://{host} (device {emu.info()['device_id']})")
            s = capture(host, "7.1", self.cfg.seconds, rec)
            self.say(f"3. capture: {s.bytes / 1e6:.1f} MB of channel 7.1 via ?duration={self.cfg.seconds}")
        pace = ["--realtime"] if self.cfg.realtime else []
        # both publishers: the same capture, paced alike, starting once their peers can be attached
        publish = ["moq-publish", "--input", str(rec), *pace, "--startup-delay-ms", "1500", "--linger-ms", "600000",
                   "--json"]  # fmt: skip
        key = self._leader_key(d / "leader.key")
        try:
            leader = self.spawn(
                "leader",
                [
                    *publish,
                    "--publish-manifests",
                    "--publish-chunks=false",
                    "--signing-key",
                    str(key),
                    "--addr-file",
                    str(d / "leader.json"),
                ],  # fmt: skip
                follow_progress=True,
            )
            publisher = self.spawn(
                "publisher",
                [*publish, "--publish-chunks=true", "--addr-file", str(d / "publisher.json")],
                follow_progress=True,
            )
            sl, sp = self.first_line(leader), self.first_line(publisher)
            for p in (leader, publisher):
                threading.Thread(target=self._follow_events, args=(p,), daemon=True).start()
            self.say(f"4. leader (manifests only)    {sl['endpoint_addr']['addrs'][0]} signer {sl['signer_id'][:16]}…")
            self.say(f"   publisher (objects only)   {sp['endpoint_addr']['addrs'][0]}")
            self.say(f"   stream {sl['stream_id']}")
            relay = self.spawn(
                "relay",
                [
                    "relay",
                    "--remote",
                    f"@{d / 'publisher.json'}",
                    "--remote-manifests",
                    f"@{d / 'leader.json'}",
                    "--require-manifest",
                    "--trust-signer",
                    sl["signer_id"],
                    "--addr-file",
                    str(d / "relay.json"),
                ],
            )
            sr = self.first_line(relay)
            self.say(f"5. relay (verifying, objects) {sr['endpoint_addr']['addrs'][0]}: re-serves only what verifies")
            stop = ["--stop-after", str(self.cfg.stop_after)] if self.cfg.stop_after else []
            sub = self.spawn(
                "subscriber",
                [
                    "moq-subscribe",
                    "--remote",
                    f"@{d / 'relay.json'}",
                    "--remote-manifests",
                    f"@{d / 'leader.json'}",
                    "--broadcast",
                    sr["broadcast"],
                    "--subscribe-manifests",
                    "--require-manifest",
                    "--trust-signer",
                    sl["signer_id"],
                    "--max-invalid-chunks",
                    "0",
                    "--output-dir",
                    str(hls),
                    "--json",
                    *stop,
                ],
            )
            self.say("6. subscriber: objects from the relay, manifests from the leader, --require-manifest")
            code = self._watch(sub, leader, publisher)
        finally:
            self.stop_all()
        code = self._report(hls, code)
        self._serve()
        return code

    def _serve(self) -> None:
        """Keep the watch server up until Ctrl-C (or stop it at once with --no-serve)."""
        assert self.watch is not None
        try:
            if self.cfg.serve:
                self.say(f"== open {self.watch.url}/ to watch the recording (Ctrl-C to stop)")
                threading.Event().wait()
        except KeyboardInterrupt:
            pass
        finally:
            self.watch.stop()

    def _watch(self, sub: _Proc, leader: _Proc, publisher: _Proc) -> int:
        assert sub.popen.stdout is not None
        verified = rejected = 0
        for raw in sub.popen.stdout:
            ev = json.loads(raw)
            if self.watch is not None:
                self.watch.on_event(ev)
            kind = ev.get("event")
            if kind == "segment":
                verified += 1
                self.say(
                    f"   segment {ev['chunk_index']:>6} {ev['duration_ms'] / 1000:5.2f} s {ev['bytes'] / 1e3:7.0f} KB"
                    f" | published: {publisher.counters.get('objects', 0)} objects,"
                    f" {leader.counters.get('manifests', 0)} manifests signed"
                    f" | verified {verified}, rejected {rejected}"
                )
            elif kind == "rejected":
                rejected += 1
                self.say(f"   REJECTED object {ev.get('chunk_index')}: {ev['reason']}")
            elif kind == "rendition_skipped":
                self.say(f"   browser rendition skipped chunk {ev.get('chunk_index')}: {ev.get('reason')}")
            elif kind == "end":
                self.say(f"7. subscriber finished: {ev['reason']}")
        return sub.popen.wait()

    def _report(self, hls: Path, code: int) -> int:
        segs = sorted(hls.glob("segment_*.ts"))
        bad = [p.name for p in segs if not decode(p).ok]
        playlist = hls / "index.m3u8"
        ended = playlist.exists() and "#EXT-X-ENDLIST" in playlist.read_text()
        whole = decode(playlist) if ended else None  # FFmpeg would follow a live playlist forever
        self.say(
            f"== {len(segs)} segments in {hls}/, {len(segs) - len(bad)} decode cleanly with FFmpeg (PyAV)"
            + (f"; playlist plays {whole.video_frames} frames" if whole and whole.ok else "")
        )
        browser = sorted((hls / BROWSER_DIR).glob("segment_*.ts"))
        bad_browser = [p.name for p in browser if not decode(p).ok]
        if browser:
            self.say(f"   browser rendition (H.264/AAC): {len(browser) - len(bad_browser)} of {len(browser)} decode")
            bad += [f"{BROWSER_DIR}/{n}" for n in bad_browser]
        if bad:
            self.say(f"   decode problems: {', '.join(bad)}")
        self.say("   play it:  ffplay " + str(hls / "index.m3u8"))
        self.say("             vlc " + str(hls / "index.m3u8") + "   |   mpv " + str(hls / "index.m3u8"))
        self.say(f"   logs: {self.cfg.directory}/{{leader,publisher,relay,subscriber}}.log")
        if code != 0:
            return code
        return int(ExitCode.FAILURE) if bad or not segs else 0


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def run_demo(cfg: DemoConfig, out: IO[str] = sys.stdout) -> int:
    """Run the demo; SIGTERM, like Ctrl-C, still stops every node it started."""
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        return Demo(cfg, out).run()
    finally:
        signal.signal(signal.SIGTERM, previous)
