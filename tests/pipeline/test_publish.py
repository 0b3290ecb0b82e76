"""moq-publish: --realtime pacing starts when ingest starts (on a fake clock), and a stop signal ends it
while it reconnects to a tuner (a real process against the emulator)."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import pytest

from ec_node.devkit.emulator import HdhrEmulator
from ec_node.devkit.procs import stop_process
from ec_node.errors import ExitCode
from ec_node.pipeline.publish import ingest_reads

from support.pcrts import FakeClock, pcr_packet


def _source() -> Iterator[bytes]:
    return iter([pcr_packet(i * 0.5) for i in range(25)])  # 12 s of media, a PCR every 0.5 s


@pytest.mark.parametrize("delay_s", [0.0, 11.5])
def test_realtime_pacing_starts_when_ingest_starts_after_the_probe_and_the_startup_delay(delay_s: float) -> None:
    clock = FakeClock()
    source = _source()
    head = [next(source) for _ in range(3)]  # what the probe read to name the stream (media 0.0 .. 1.0 s)
    clock.now += 0.2  # listening, announcing
    clock.now += delay_s  # --startup-delay-ms
    start = clock.now
    released = []
    for _ in ingest_reads(head, source, realtime=True, clock=clock, sleep=clock.sleep):
        released.append(clock.now - start)
    # every piece goes out at its own media time after ingest started: nothing is owed for the time
    # before (the bug: the delay's worth of media, all at once, as the delay ended)
    assert released == pytest.approx([i * 0.5 for i in range(25)])
    assert sum(1 for t in released if t < 1.0) == 2  # in the first second, one second of media


def test_without_realtime_ingest_reads_the_head_then_the_rest_at_once() -> None:
    clock = FakeClock()
    source = _source()
    head = [next(source) for _ in range(3)]
    got = list(ingest_reads(head, source, realtime=False, clock=clock, sleep=clock.sleep))
    assert got == list(_source()) and clock.now == 0.0


# -- a stop signal while the tuner is being reconnected (a real process) ------------------------------


class _Publisher:
    """`ec-node moq-publish` with its stderr read line by line as it comes (each line an event to wait for)."""

    def __init__(self, args: list[str], cwd: Path) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "ec_node", "moq-publish", *args],
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=dict(os.environ, PYTHONUNBUFFERED="1"),
        )
        self.stdout: queue.Queue[str | None] = queue.Queue()
        self.stderr: queue.Queue[str | None] = queue.Queue()
        self.err_lines: list[str] = []
        for pipe, q in ((self.proc.stdout, self.stdout), (self.proc.stderr, self.stderr)):
            threading.Thread(target=self._read, args=(pipe, q), daemon=True).start()

    @staticmethod
    def _read(pipe: IO[bytes] | None, q: queue.Queue[str | None]) -> None:
        assert pipe is not None
        for raw in pipe:
            q.put(raw.decode("utf-8", "replace").rstrip("\n"))
        q.put(None)

    def startup(self) -> dict[str, object]:
        line = self.stdout.get(timeout=HANG_GUARD_S)
        assert line is not None, f"exited ({self.proc.poll()}) before its startup line: {self.rest_of_stderr()}"
        obj = json.loads(line)
        assert isinstance(obj, dict)
        return obj

    def stderr_line(self, needle: str) -> str:
        """Wait for the stderr line containing ``needle`` (the event itself, not a guess at how long it takes)."""
        while True:
            line = self.stderr.get(timeout=HANG_GUARD_S)
            assert line is not None, f"exited ({self.proc.poll()}) without {needle!r}:\n" + "\n".join(self.err_lines)
            self.err_lines.append(line)
            if needle in line:
                return line

    def rest_of_stderr(self) -> str:
        while (line := self.stderr.get(timeout=HANG_GUARD_S)) is not None:
            self.err_lines.append(line)
        return "\n".join(self.err_lines)


HANG_GUARD_S = 120.0  # only against a hang: nothing here is timed


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_stop_signal_ends_moq_publish_while_it_reconnects_to_a_tuner_that_went_away(
    media_mpeg2: Path, tmp_path: Path, sig: signal.Signals
) -> None:
    emu = HdhrEmulator(media_mpeg2, serve_speed=1.0).start()  # a live tuner, real-time
    try:
        pub = _Publisher(["--input", f"hdhr://127.0.0.1:{emu.http_port}/7.1"], tmp_path)
        try:
            assert pub.startup()["tracks"] == ["chunks"]  # tuned, probed, serving: ingest is running
            emu.stop()  # the tuner goes away: the stream is cut and every reconnect is refused
            line = pub.stderr_line("failed")  # "reconnect to tuner ... failed: ...; retrying (attempt 2/5) in 1.0 s"
            assert "retrying (attempt" in line
            pub.proc.send_signal(sig)
            rc = pub.proc.wait(timeout=HANG_GUARD_S)
            err = pub.rest_of_stderr()
        finally:
            stop_process(pub.proc)
    finally:
        emu.stop()
    # stopped by the signal (ok, as documented), not by giving up on the tuner (4) after every retry
    assert rc == ExitCode.OK, err
    assert "gave up" not in err and "Traceback" not in err
