"""Small asyncio helpers shared by the node's pipelines."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any, TextIO

from ec_node.atomic import write_atomic

_END = object()


async def iterate_in_thread(it: Iterator[bytes], maxsize: int = 16) -> AsyncIterator[bytes]:
    """Drive a blocking iterator (file, socket, tuner) in a thread; bounded, so reads pause when we lag."""
    loop = asyncio.get_running_loop()
    q: asyncio.Queue[object] = asyncio.Queue(maxsize)
    stop = threading.Event()

    def pump() -> None:
        try:
            for item in it:
                if stop.is_set():
                    break
                asyncio.run_coroutine_threadsafe(q.put(item), loop).result()
            asyncio.run_coroutine_threadsafe(q.put(_END), loop).result()
        except BaseException as e:  # handed to the consumer, which re-raises it
            with contextlib.suppress(RuntimeError):
                asyncio.run_coroutine_threadsafe(q.put(e), loop).result()

    t = threading.Thread(target=pump, name="ingest", daemon=True)
    t.start()
    try:
        while True:
            item = await q.get()
            if item is _END:
                return
            if isinstance(item, BaseException):
                raise item
            assert isinstance(item, bytes)
            yield item
    finally:
        stop.set()
        while not q.empty():  # unblock the pump if it waits on a full queue
            q.get_nowait()


def install_stop_signals(stop: asyncio.Event) -> None:
    """SIGINT/SIGTERM end the run gracefully (finish tracks, close sessions, exit 0)."""
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)


def emit_json(out: TextIO, obj: dict[str, Any]) -> None:
    """Write one JSON line and flush it (events are read live by other programs)."""
    out.write(json.dumps(obj, separators=(",", ":")) + "\n")
    out.flush()


def write_json_file(path: Path, obj: dict[str, Any]) -> None:
    """Write a JSON file atomically (an address file another node may be reading)."""
    write_atomic(path, (json.dumps(obj) + "\n").encode())


def rss_mb() -> float:
    """Resident memory of this process in MB (Linux /proc; 0 elsewhere)."""
    try:
        with open("/proc/self/statm") as f:
            pages = int(f.read().split()[1])
        return round(pages * os.sysconf("SC_PAGE_SIZE") / 1e6, 1)
    except (OSError, ValueError, IndexError):
        return 0.0
