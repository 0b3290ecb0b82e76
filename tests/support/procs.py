"""Real `ec-node` processes for integration tests: started, awaited on their own output, always stopped."""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

from ec_node.devkit.procs import stop_process

STARTUP_TIMEOUT_S = 60.0
EXIT_TIMEOUT_S = 120.0


class Node:
    """One `python -m ec_node ...` process. stdout lines are collected by a thread as they come."""

    def __init__(self, args: list[str], cwd: Path, name: str = "node", *, argv: list[str] | None = None) -> None:
        self.name = name
        self.args = args
        self.stderr_path = cwd / f"{name}.stderr"
        self._err = self.stderr_path.open("wb")
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        self.proc = subprocess.Popen(
            argv or [sys.executable, "-m", "ec_node", "-v", *args],
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=self._err,
            env=env,
        )
        self._lines: queue.Queue[str | None] = queue.Queue()
        self.lines: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            self._lines.put(raw.decode("utf-8", "replace").rstrip("\n"))
        self._lines.put(None)

    def next_line(self, timeout: float = STARTUP_TIMEOUT_S) -> str:
        """Wait for the next stdout line (the event, not a sleep)."""
        line = self._lines.get(timeout=timeout)
        if line is None:
            raise AssertionError(f"{self.name} exited ({self.proc.poll()}) before printing; stderr:\n{self.stderr()}")
        self.lines.append(line)
        return line

    def startup(self) -> dict[str, Any]:
        obj = json.loads(self.next_line())
        assert isinstance(obj, dict)
        return obj

    def wait(self, timeout: float = EXIT_TIMEOUT_S) -> int:
        rc = self.proc.wait(timeout=timeout)
        while True:  # drain the rest of stdout
            try:
                line = self._lines.get(timeout=5)
            except queue.Empty:
                break
            if line is None:
                break
            self.lines.append(line)
        return rc

    def events(self) -> list[dict[str, Any]]:
        """Every JSON line printed so far (the startup object included)."""
        while True:  # take what the reader thread has queued without waiting
            try:
                line = self._lines.get_nowait()
            except queue.Empty:
                break
            if line is None:
                break
            self.lines.append(line)
        return [json.loads(x) for x in self.lines if x.startswith("{")]

    def stderr(self) -> str:
        if not self._err.closed:
            self._err.flush()
        return self.stderr_path.read_text(errors="replace")

    def stop(self) -> None:
        stop_process(self.proc)
        self._err.close()

    def __enter__(self) -> Node:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def addr_arg(startup: dict[str, Any]) -> str:
    return json.dumps(startup["endpoint_addr"])
