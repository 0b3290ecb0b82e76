"""The subscriber side of bench_fanout: one process holding K light moq clients on a relay, plus a reference.

Each client is a bare ``moq.Client`` (no ec-node pipeline: the bench measures the relay, so the
subscribers are as cheap as a client can be) that subscribes to ``chunks`` with history
(``Subscription(max_age_us=600 s)``, as ec-node subscribers do) and reads every group in arrival order,
recording ``(sequence, size, arrival time)``. One extra *reference* client subscribes to the publisher
directly: the groups it sees arrive inside the measured window are what every subscriber must get.

Timeline: connect and subscribe all K (in batches), wait ``--warmup`` s, then the window runs for
``--seconds``; after a ``--grace`` s for the tail to arrive, each client is judged. A client is *whole*
if it got every window group (same size as the reference's) and in increasing order. Stdout is JSON
lines for the parent: ``{"event": "ready"}``, ``{"event": "window_start"}``, ``{"event": "window_end"}``,
then ``{"event": "result", ...}``.

Usage (normally run by bench_fanout.py)::

    python bench/_fanout_clients.py --relay @relay.json --publisher @pub.json --broadcast B --k 10 --seconds 10
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import moq

from ec_node.devkit.plain_relay import upstream_urls
from ec_node.transport.addr import parse_endpoint_addr
from ec_node.transport.moq_transport import describe_moq_error

TRACK = "chunks"
HISTORY_US = 600_000_000
CLIENT_CACHE_BYTES = 16 * 1024 * 1024  # a couple of 1080i chunks: enough for a reader that keeps up
CONNECT_BATCH = 25


@dataclass
class Client:
    """What one subscriber received; ``error`` is the reason it stopped early, if it did."""

    name: str
    got: list[tuple[int, int, float]] = field(default_factory=list)  # (sequence, size, monotonic arrival)
    group_errors: int = 0
    group_error_kinds: dict[str, int] = field(default_factory=dict)
    error: str | None = None
    subscribed: bool = False


def emit(obj: dict[str, Any]) -> None:
    """One JSON line for the parent (it waits on these events, not on sleeps)."""
    sys.stdout.write(json.dumps(obj, separators=(",", ":")) + "\n")
    sys.stdout.flush()


async def _open(addr_text: str, timeout_s: float) -> moq.Client:
    """Dial like ec-node does: pinned by fingerprint, each address in turn."""
    urls, pins = upstream_urls(parse_endpoint_addr(addr_text))
    last: Exception | None = None
    for url in urls:
        client = moq.Client(
            url,
            tls_fingerprints=pins,
            reconnect=False,
            subscribe=moq.OriginProducer(cache_capacity_bytes=CLIENT_CACHE_BYTES),
            publish=moq.OriginProducer(cache_capacity_bytes=1024 * 1024),
        )
        try:
            await asyncio.wait_for(client.__aenter__(), timeout_s)
            return client
        except (TimeoutError, moq.Error) as exc:
            last = exc
            with contextlib.suppress(moq.Error):
                await client.__aexit__(None, None, None)
    raise RuntimeError(f"cannot connect: {describe_moq_error(last) if last else 'no address'}")


async def _subscribe(client: moq.Client, broadcast: str, timeout_s: float) -> moq.TrackConsumer:
    consumer = await asyncio.wait_for(client.announced_broadcast(broadcast).available(), timeout_s)
    return await consumer.subscribe_track(TRACK, moq.Subscription(max_age_us=HISTORY_US))


async def _read(track: moq.TrackConsumer, rec: Client) -> None:
    """Read every group (all frames) until the track ends or fails; never raises."""
    try:
        while (group := await track.recv_group()) is not None:
            size = 0
            try:
                while (frame := await group.read_frame()) is not None:
                    size += len(frame.payload)
            except moq.Error as exc:
                rec.group_errors += 1
                kind = describe_moq_error(exc)[:60]
                rec.group_error_kinds[kind] = rec.group_error_kinds.get(kind, 0) + 1
                continue
            rec.got.append((group.sequence, size, time.monotonic()))
    except moq.Error as exc:
        rec.error = describe_moq_error(exc)
    except asyncio.CancelledError:
        pass


async def stop_all(readers: list[asyncio.Task[None]], holders: list[moq.Client]) -> None:
    """Cancel the readers, then close the clients (ignoring a client that already failed)."""
    for task in readers:
        task.cancel()
    await asyncio.gather(*readers, return_exceptions=True)
    for client in holders:
        with contextlib.suppress(moq.Error):
            await client.__aexit__(None, None, None)


async def _start(
    name: str, addr: str, broadcast: str, timeout_s: float, holders: list[moq.Client]
) -> tuple[Client, asyncio.Task[None] | None]:
    rec = Client(name)
    try:
        client = await _open(addr, timeout_s)
        holders.append(client)
        track = await _subscribe(client, broadcast, timeout_s)
    except (RuntimeError, TimeoutError, moq.Error) as exc:
        why = describe_moq_error(exc) if isinstance(exc, moq.Error) else str(exc) or type(exc).__name__
        rec.error = f"setup: {why}"
        return rec, None
    rec.subscribed = True
    return rec, asyncio.create_task(_read(track, rec), name=f"read-{name}")


def _judge(rec: Client, expected: dict[int, int], ref_at: dict[int, float]) -> dict[str, Any]:
    """Window groups this client got (right size), whether in order, and its lag behind the reference."""
    first: dict[int, tuple[int, float]] = {}
    order: list[int] = []
    for seq, size, at in rec.got:
        if seq in expected and seq not in first:
            first[seq] = (size, at)
            order.append(seq)
    good = [s for s in order if first[s][0] == expected[s]]
    in_order = all(a < b for a, b in zip(order, order[1:], strict=False))
    lags = [first[s][1] - ref_at[s] for s in good]
    return {
        "got": len(good),
        "whole": bool(expected) and len(good) == len(expected) and in_order,
        "in_order": in_order,
        "lag_max_s": round(max(lags), 3) if lags else None,
        "lags": lags,
    }


def _cpu_s() -> float:
    with open("/proc/self/stat") as f:
        parts = f.read().rsplit(")", 1)[1].split()
    return (int(parts[11]) + int(parts[12])) / os.sysconf("SC_CLK_TCK")


async def run(args: argparse.Namespace) -> dict[str, Any]:
    """Connect, measure one window, judge; the result dict is the last stdout line."""
    holders: list[moq.Client] = []
    readers: list[asyncio.Task[None]] = []
    t_setup = time.monotonic()
    ref, ref_task = await _start("reference", args.publisher, args.broadcast, args.timeout, holders)
    if ref_task is None:
        raise SystemExit(f"reference client failed: {ref.error}")
    readers.append(ref_task)
    clients = [Client(f"c{i}") for i in range(args.k)]
    setups: list[asyncio.Task[tuple[Client, asyncio.Task[None] | None]]] = []
    try:
        # batches start CONNECT_BATCH apart in time, not one after the other's end: a relay that
        # stalls some handshakes must not push the window past the end of the media
        deadline = t_setup + args.setup_timeout
        for base in range(0, args.k, CONNECT_BATCH):
            for i in range(base, min(args.k, base + CONNECT_BATCH)):
                setups.append(asyncio.create_task(
                    _start(f"c{i}", args.relay, args.broadcast, args.timeout, holders), name=f"setup-c{i}"
                ))  # fmt: skip
            await asyncio.wait(setups[base:], timeout=min(1.0, max(0.0, deadline - time.monotonic())))
        await asyncio.wait(setups, timeout=max(0.0, deadline - time.monotonic()))
        for i, setup in enumerate(setups):
            if setup.done() and not setup.cancelled():
                clients[i], reader = setup.result()
                if reader is not None:
                    readers.append(reader)
            else:
                setup.cancel()
                clients[i].error = f"setup: not subscribed within {args.setup_timeout:g} s"
        setup_s = time.monotonic() - t_setup
        emit({"event": "ready", "subscribed": sum(c.subscribed for c in clients), "k": args.k,
              "setup_s": round(setup_s, 2)})  # fmt: skip
        await asyncio.sleep(args.warmup)
        cpu0, t0 = _cpu_s(), time.monotonic()
        emit({"event": "window_start"})
        await asyncio.sleep(args.seconds)
        t1 = time.monotonic()
        cpu1 = _cpu_s()
        emit({"event": "window_end"})
        await asyncio.sleep(args.grace)
    finally:
        await stop_all(readers, holders)

    ref_at = {seq: at for seq, _, at in ref.got if t0 <= at <= t1}
    expected = {seq: size for seq, size, at in ref.got if seq in ref_at}
    judged = [_judge(c, expected, ref_at) for c in clients]
    gots = [j["got"] for j in judged]
    lags = sorted(x for j in judged for x in j["lags"])
    errors: dict[str, int] = {}
    kinds: dict[str, int] = {}
    for c in clients:
        for kind, n in c.group_error_kinds.items():
            kinds[kind] = kinds.get(kind, 0) + n
        if c.error:
            key = c.error[:80]
            errors[key] = errors.get(key, 0) + 1
    return {
        "event": "result",
        "k": args.k,
        "window_groups": len(expected),
        "window_seqs": [min(expected), max(expected)] if expected else None,
        "subscribed": sum(c.subscribed for c in clients),
        "whole": sum(j["whole"] for j in judged),
        "out_of_order": sum(not j["in_order"] for j in judged),
        "groups_mean": round(statistics.fmean(gots), 2) if gots else 0.0,
        "groups_min": min(gots) if gots else 0,
        "lag_p50_s": round(lags[len(lags) // 2], 3) if lags else None,
        "lag_max_s": round(lags[-1], 3) if lags else None,
        "group_errors": sum(c.group_errors for c in clients),
        "group_error_kinds": kinds,
        "received_mean": round(statistics.fmean(len(c.got) for c in clients), 1) if clients else 0.0,
        "received_last_seq": max((c.got[-1][0] for c in clients if c.got), default=None),
        "reference_seqs": [ref.got[0][0], ref.got[-1][0]] if ref.got else None,
        "client_errors": errors,
        "clients_cpu_pct": round(100 * (cpu1 - cpu0) / max(t1 - t0, 1e-9), 1),
        "setup_s": round(setup_s, 2),
    }


def main() -> None:
    """Parse flags, run, print the result line."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--relay", required=True, help="the relay: EndpointAddr JSON or @startup.json")
    p.add_argument("--publisher", required=True, help="the publisher (reference client): same forms")
    p.add_argument("--broadcast", required=True)
    p.add_argument("--k", type=int, required=True, help="subscribers on the relay")
    p.add_argument("--seconds", type=float, default=30.0, help="measured window")
    p.add_argument("--warmup", type=float, default=3.0, help="after all are subscribed, before the window")
    p.add_argument("--grace", type=float, default=6.0, help="after the window, for its last groups to arrive")
    p.add_argument("--timeout", type=float, default=15.0, help="connect / announce timeout per client")
    p.add_argument(
        "--setup-timeout",
        type=float,
        default=25.0,
        help="all K must be subscribed by then; the rest count as failed (default %(default)g)",
    )
    emit(asyncio.run(run(p.parse_args())))


if __name__ == "__main__":
    main()
