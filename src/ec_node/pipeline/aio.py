"""Small asyncio helpers shared by the node's pipelines."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any, TextIO, TypeVar

from ec_node.atomic import write_atomic

_END = object()
_T = TypeVar("_T")


async def _first(stop: asyncio.Event | None, work: asyncio.Future[_T]) -> bool:
    """Wait for ``work`` or ``stop``, whichever comes first; True if ``work`` is done."""
    if stop is None:
        await asyncio.wait({work})
        return True
    stopper = asyncio.ensure_future(stop.wait())
    either: set[asyncio.Future[Any]] = {work, stopper}
    try:
        await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopper.cancel()
    return work.done()


async def run_stoppable(stop: asyncio.Event, fn: Callable[..., _T], *args: Any) -> _T | None:
    """``fn(*args)`` in a daemon thread: its result, or None as soon as ``stop`` is set.

    Why not ``asyncio.to_thread``: a blocking device call (tuning, a busy tuner's retries, a probe
    that is reconnecting) cannot be interrupted, and ``asyncio.run`` joins its executor threads at
    exit, so a stop signal would wait for the call. A daemon thread is left to end with the process.
    """
    loop = asyncio.get_running_loop()
    fut: asyncio.Future[_T] = loop.create_future()

    def settle(ok: bool, value: Any) -> None:
        if fut.done():  # abandoned on stop (cancelled): nobody waits for it
            return
        if ok:
            fut.set_result(value)
        else:
            fut.set_exception(value)

    def work() -> None:
        try:
            result: Any = fn(*args)
            ok = True
        except BaseException as e:  # handed to the awaiting task, which re-raises it
            result, ok = e, False
        with contextlib.suppress(RuntimeError):  # the loop may be closed by then
            loop.call_soon_threadsafe(settle, ok, result)

    threading.Thread(target=work, name=getattr(fn, "__name__", "blocking"), daemon=True).start()
    if await _first(stop, fut):
        return fut.result()
    fut.cancel()
    return None


async def iterate_in_thread(
    it: Iterator[bytes], maxsize: int = 16, stop_on: asyncio.Event | None = None
) -> AsyncIterator[bytes]:
    """Drive a blocking iterator (file, socket, tuner) in a thread; bounded, so reads pause when we lag.

    With ``stop_on``, iteration ends as soon as that event is set, even while the iterator blocks
    (a tuner being reconnected): the thread is a daemon and is told to stop at its next item.
    """
    loop = asyncio.get_running_loop()
    q: asyncio.Queue[object] = asyncio.Queue(maxsize)
    stop = threading.Event()

    def put(item: object) -> None:
        if stop.is_set() or loop.is_closed():
            return  # the consumer is gone (stopped): nobody would take it
        asyncio.run_coroutine_threadsafe(q.put(item), loop).result()

    def pump() -> None:
        try:
            for item in it:
                if stop.is_set():
                    return
                put(item)
            put(_END)
        except BaseException as e:  # handed to the consumer, which re-raises it
            with contextlib.suppress(RuntimeError):
                put(e)

    t = threading.Thread(target=pump, name="ingest", daemon=True)
    t.start()
    try:
        while True:
            get = asyncio.ensure_future(q.get())
            if not await _first(stop_on, get):
                get.cancel()
                return
            item = get.result()
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


@contextlib.asynccontextmanager
async def thread_stop(stop: asyncio.Event) -> AsyncIterator[threading.Event]:
    """A threading.Event set as soon as ``stop`` is, for blocking code in threads (a reconnect's backoff)."""
    halt = threading.Event()

    async def mirror() -> None:
        await stop.wait()
        halt.set()

    task = asyncio.ensure_future(mirror())
    try:
        yield halt
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


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
