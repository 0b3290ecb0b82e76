"""The asyncio helpers: blocking work in threads that gives way to a stop signal."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator

import pytest

from ec_node.pipeline.aio import iterate_in_thread, run_stoppable, thread_stop


def test_run_stoppable_returns_the_result_or_raises_the_error() -> None:
    async def main() -> None:
        stop = asyncio.Event()
        assert await run_stoppable(stop, lambda a, b: a + b, 2, 3) == 5
        with pytest.raises(ZeroDivisionError):
            await run_stoppable(stop, lambda: 1 / 0)

    asyncio.run(main())


def test_run_stoppable_gives_way_to_a_stop_while_the_call_blocks() -> None:
    release = threading.Event()  # the blocking call (a tuner that does not answer) until the test ends
    started = threading.Event()

    def blocking() -> str:
        started.set()
        release.wait()
        return "too late"

    async def main() -> str | None:
        stop = asyncio.Event()
        task = asyncio.ensure_future(run_stoppable(stop, blocking))
        await asyncio.to_thread(started.wait)
        stop.set()  # SIGINT
        return await task

    try:
        assert asyncio.run(main()) is None  # and asyncio.run did not wait for the blocked thread
    finally:
        release.set()


def test_iterate_in_thread_ends_on_a_stop_while_the_iterator_blocks() -> None:
    release = threading.Event()

    def reads() -> Iterator[bytes]:
        yield b"first"
        release.wait()  # a cut stream being reconnected: nothing comes
        yield b"never taken"

    async def main() -> list[bytes]:
        stop = asyncio.Event()
        got = []
        async for data in iterate_in_thread(reads(), stop_on=stop):
            got.append(data)
            stop.set()  # SIGINT while the next read blocks
        return got

    try:
        assert asyncio.run(main()) == [b"first"]
    finally:
        release.set()


def test_thread_stop_mirrors_the_asyncio_stop_for_threads() -> None:
    async def main() -> tuple[bool, bool]:
        stop = asyncio.Event()
        async with thread_stop(stop) as halt:
            before = halt.is_set()
            stop.set()
            await asyncio.to_thread(halt.wait)  # set from the loop, seen by a thread
            return before, halt.is_set()

    assert asyncio.run(main()) == (False, True)
