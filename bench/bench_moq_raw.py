"""Raw MoQ throughput through ec_node.transport (no chunking, crypto or manifests).

``run_raw(payloads)`` starts a listener in a *separate process* (multiprocessing, spawn) that
publishes one group per payload as fast as it can once a subscriber is attached; this process
subscribes over loopback QUIC (``moql://127.0.0.1``, pinned self-signed cert) and reads every
group. MB/s = payload bytes / (last group received - first group written), wall clock, 1 MB = 1e6 B.

Usage: .venv/bin/python bench/bench_moq_raw.py
"""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import os
import time
from multiprocessing.connection import Connection

from ec_node.transport.addr import EndpointAddr
from ec_node.transport.base import GroupEvent
from ec_node.transport.identity import load_or_create_identity
from ec_node.transport.moq_transport import MoqTransport

BROADCAST, TRACK = "bench", "chunks"


def _publisher(conn: Connection, payloads: list[bytes]) -> None:
    async def main() -> None:
        cache = sum(len(p) for p in payloads) + (16 << 20)
        listener = await MoqTransport().listen("127.0.0.1:0", load_or_create_identity(None), cache)
        try:
            writer = listener.publish_broadcast(BROADCAST, [TRACK])[TRACK]
            conn.send(listener.endpoint_addr.to_json())
            await writer.wait_subscribed()
            t0 = time.time()
            for seq, payload in enumerate(payloads):
                writer.write_group(seq, payload)
            writer.finish()
            conn.send(t0)
            await asyncio.get_running_loop().run_in_executor(None, conn.recv)  # until the reader is done
        finally:
            await listener.close()

    asyncio.run(main())


async def _subscribe(addr: EndpointAddr, n: int) -> tuple[int, int, float]:
    session = await MoqTransport().connect(addr, 10)
    try:
        sub = await session.subscribe(BROADCAST, TRACK, start=0)
        got: dict[int, int] = {}
        t_end = 0.0
        async for event in sub:
            if isinstance(event, GroupEvent):
                got[event.sequence] = len(event.payload)
                t_end = time.time()
        # groups still in flight when the track ended are fetched, as the node core does
        missing = [seq for seq in range(n) if seq not in got]
        if missing:
            fetched = await session.fetch_many(BROADCAST, TRACK, missing)
            got.update({seq: len(p) for seq, p in fetched.items() if p is not None})
            t_end = time.time()
        return len(got), sum(got.values()), t_end
    finally:
        await session.close()


def run_raw(payloads: list[bytes]) -> float:
    """MB/s of ``payloads`` published (one group each) and received over loopback QUIC."""
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=_publisher, args=(child, payloads), daemon=True)
    proc.start()
    try:
        addr = EndpointAddr(**{k: tuple(v) if k == "addrs" else v for k, v in parent.recv().items()})
        count, size, t_end = asyncio.run(_subscribe(addr, len(payloads)))
        t0 = parent.recv()
        parent.send("done")
        if count != len(payloads):
            raise RuntimeError(f"received {count} of {len(payloads)} groups")
        return size / max(t_end - t0, 1e-9) / 1e6
    finally:
        proc.join(10)
        if proc.is_alive():
            proc.kill()
            proc.join()


def main() -> None:
    for n, size in ((200, 188_000), (50, 2_000_000)):
        payloads = [os.urandom(size) for _ in range(n)]
        runs = [run_raw(payloads) for _ in range(3)]
        runs_text = ", ".join(f"{r:.1f}" for r in runs)
        print(f"{n} x {size / 1000:g} kB: median {sorted(runs)[1]:.1f} MB/s (runs: {runs_text})", flush=True)


if __name__ == "__main__":
    main()
