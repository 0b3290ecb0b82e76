"""MoqTransport over real QUIC on 127.0.0.1: delivery, history, end, identity, fetch, relaying, shedding."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import pytest

from ec_node.errors import UnreachableError
from ec_node.transport.addr import EndpointAddr
from ec_node.transport.base import GroupEvent, NotFoundError, PeerLostError
from ec_node.transport.certs import rotate_at
from ec_node.transport.identity import NodeIdentity, load_or_create_identity
from ec_node.transport.moq_transport import MoqConfig, MoqListener, MoqSubscription, MoqTransport

T = TypeVar("T")
GUARD_S = 60  # hang guard only; never a speed assertion


@pytest.fixture(scope="module")
def identity(tmp_path_factory: pytest.TempPathFactory) -> NodeIdentity:
    return load_or_create_identity(tmp_path_factory.mktemp("ident"))


def run(coro: Awaitable[T]) -> T:
    async def guarded() -> T:
        return await asyncio.wait_for(coro, GUARD_S)

    return asyncio.run(guarded())


def payload(seq: int, size: int = 1000) -> bytes:
    return (b"%08d" % seq) * (size // 8) + bytes([seq % 256]) * (size % 8)


async def collect(sub: MoqSubscription, n: int | None = None) -> list[GroupEvent]:
    events: list[GroupEvent] = []
    async for ev in sub:
        events.append(ev)
        if n is not None and len(events) == n:
            break
    return events


def _by_seq(events: list[GroupEvent]) -> list[GroupEvent]:
    """Groups arrive in arrival order (one QUIC stream each); compare them by sequence."""
    return sorted(events, key=lambda e: e.sequence)


async def with_listener(
    identity: NodeIdentity, body: Callable[[MoqTransport, MoqListener], Awaitable[T]], **cfg: float
) -> T:
    transport = MoqTransport(MoqConfig(**cfg))
    listener = await transport.listen("127.0.0.1:0", identity, 50_000_000)
    try:
        return await body(transport, listener)
    finally:
        await listener.close()


def test_publish_then_subscribe_every_group(identity: NodeIdentity) -> None:
    sizes = [2, 1, 188_000, 7, 250_000] + [3000] * 15  # (an empty group is an end: see below)

    async def body(t: MoqTransport, lis: MoqListener) -> list[GroupEvent]:
        w = lis.publish_broadcast("demo", ["chunks"])["chunks"]
        sess = await t.connect(lis.endpoint_addr, 5)
        try:
            sub = await sess.subscribe("demo", "chunks", start=0)
            for seq, size in enumerate(sizes):
                w.write_group(seq, payload(seq, size))
            w.finish()
            return await collect(sub)
        finally:
            await sess.close()

    events = run(with_listener(identity, body))
    # every group, intact; in arrival order (one QUIC stream each), which the node core reorders
    assert _by_seq(events) == [GroupEvent(i, payload(i, s)) for i, s in enumerate(sizes)]


def test_late_joiner_gets_history_and_start(identity: NodeIdentity) -> None:
    async def body(t: MoqTransport, lis: MoqListener) -> tuple[list[GroupEvent], list[GroupEvent], bytes | None]:
        w = lis.publish_broadcast("demo", ["chunks"])["chunks"]
        for seq in range(30):
            w.write_group(seq, payload(seq))  # no subscriber exists yet; track not finished
        sess = await t.connect(lis.endpoint_addr, 5)
        try:
            all_events = await collect(await sess.subscribe("demo", "chunks"), 30)
            tail = await collect(await sess.subscribe("demo", "chunks", start=25), 5)
            return all_events, tail, await sess.fetch("demo", "chunks", 3)
        finally:
            await sess.close()

    all_events, tail, fetched = run(with_listener(identity, body))
    assert _by_seq(all_events) == [GroupEvent(i, payload(i)) for i in range(30)]
    assert _by_seq(tail) == [GroupEvent(i, payload(i)) for i in range(25, 30)]
    assert fetched == payload(3)


def test_track_finish_ends_iterator_and_close_ends_cleanly(identity: NodeIdentity) -> None:
    async def body(t: MoqTransport, lis: MoqListener) -> tuple[list[GroupEvent], list[GroupEvent]]:
        ws = lis.publish_broadcast("demo", ["a", "b"])
        sess = await t.connect(lis.endpoint_addr, 5)
        try:
            sub_a = await sess.subscribe("demo", "a")
            sub_b = await sess.subscribe("demo", "b")
            ws["a"].write_group(0, b"a0")
            ws["a"].finish()
            ws["b"].write_group(0, b"b0")
            got_a = await collect(sub_a)  # ends: finish() reached the subscriber
            assert await sub_a.next() is None
            first_b = await sub_b.next()
            await lis.close()  # graceful close finishes "b" too
            rest_b = await collect(sub_b)
            return got_a, [first_b, *rest_b] if first_b else rest_b
        finally:
            await sess.close()

    got_a, got_b = run(with_listener(identity, body))
    assert got_a == [GroupEvent(0, b"a0")]
    assert got_b == [GroupEvent(0, b"b0")]


def test_an_empty_group_ends_the_track_as_ietf_end_of_track_does(identity: NodeIdentity) -> None:
    async def body(t: MoqTransport, lis: MoqListener) -> list[GroupEvent]:
        ws = lis.publish_broadcast("demo", ["a"])
        sess = await t.connect(lis.endpoint_addr, 5)
        try:
            sub = await sess.subscribe("demo", "a")
            ws["a"].write_group(0, b"a0")
            assert await sub.next() == GroupEvent(0, b"a0")
            ws["a"].write_group(1, b"")  # what an IETF relay delivers for END_OF_TRACK
            rest = await collect(sub)
            assert await sub.next() is None
            return rest
        finally:
            await sess.close()

    assert run(with_listener(identity, body)) == []  # ended, and no group to judge (or charge)


def test_fingerprint_mismatch_is_refused(identity: NodeIdentity) -> None:
    async def body(t: MoqTransport, lis: MoqListener) -> str:
        wrong = EndpointAddr(id="00" * 32, addrs=lis.endpoint_addr.addrs)
        with pytest.raises(UnreachableError) as info:
            await t.connect(wrong, 5)
        return str(info.value)

    assert f"peer is not node {'00' * 32}" in run(with_listener(identity, body))


def test_unreachable_peer_raises_within_timeout(identity: NodeIdentity) -> None:
    # Hold a bound UDP socket that never answers, so nothing else can take the port.
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
        silent.bind(("127.0.0.1", 0))
        port = silent.getsockname()[1]
        addr = EndpointAddr(id=identity.node_id, addrs=(f"127.0.0.1:{port}",))

        async def body() -> str:
            with pytest.raises(UnreachableError) as info:
                await asyncio.wait_for(MoqTransport().connect(addr, 0.5), 20)
            return str(info.value)

        message = run(body())
    assert f"127.0.0.1:{port}" in message and "no answer" in message


def test_missing_broadcast_and_track_are_not_found(identity: NodeIdentity) -> None:
    async def body(t: MoqTransport, lis: MoqListener) -> None:
        lis.publish_broadcast("demo", ["chunks"])
        sess = await t.connect(lis.endpoint_addr, 5)
        try:
            with pytest.raises(NotFoundError, match="did not announce"):
                await sess.subscribe("nope", "chunks")
            with pytest.raises(NotFoundError):
                sub = await sess.subscribe("demo", "nope")
                await sub.next(5)
            assert await sess.fetch("demo", "chunks", 42) is None
        finally:
            await sess.close()

    run(with_listener(identity, body, announce_timeout_s=0.3))


def test_subscribe_before_announce_waits(identity: NodeIdentity) -> None:
    async def body(t: MoqTransport, lis: MoqListener) -> list[GroupEvent]:
        sess = await t.connect(lis.endpoint_addr, 5)
        try:
            pending = asyncio.create_task(sess.subscribe("later", "chunks"))
            await asyncio.sleep(0)  # let the subscribe start waiting for the announcement
            w = lis.publish_broadcast("later", ["chunks"])["chunks"]
            w.write_group(0, b"x")
            w.finish()
            return await collect(await pending)
        finally:
            await sess.close()

    assert run(with_listener(identity, body)) == [GroupEvent(0, b"x")]


def test_item_timeout_then_still_usable(identity: NodeIdentity) -> None:
    async def body(t: MoqTransport, lis: MoqListener) -> GroupEvent | None:
        w = lis.publish_broadcast("demo", ["chunks"])["chunks"]
        sess = await t.connect(lis.endpoint_addr, 5)
        try:
            sub = await sess.subscribe("demo", "chunks", start=0)
            with pytest.raises(TimeoutError):
                await sub.next(timeout=0.2)
            w.write_group(0, b"after")
            return await sub.next(timeout=10)
        finally:
            await sess.close()

    assert run(with_listener(identity, body)) == GroupEvent(0, b"after")


def test_groups_come_in_arrival_order_and_old_ones_can_be_fetched(identity: NodeIdentity) -> None:
    """No reordering in the transport (the node core does it): a late group is delivered as it
    arrives; groups already cached come back through fetch, also after the track finished (which
    exercises the one-shot-session fallback for moq's 'dropped')."""

    async def body(t: MoqTransport, lis: MoqListener) -> tuple[list[GroupEvent], dict[int, bytes | None]]:
        w = lis.publish_broadcast("demo", ["chunks"])["chunks"]
        sess = await t.connect(lis.endpoint_addr, 5)
        try:
            sub = await sess.subscribe("demo", "chunks", start=0)
            for seq in (0, 1, 3):
                w.write_group(seq, payload(seq))
            events = await collect(sub, 3)
            w.write_group(2, payload(2))  # turns up late: delivered as it comes
            events.append(await sub.next(10) or GroupEvent(-1, b""))
            w.finish()
            fetched = await sess.fetch_many("demo", "chunks", [1, 2, 9])
            return events, fetched
        finally:
            await sess.close()

    events, fetched = run(with_listener(identity, body))
    assert [e.sequence for e in events] == [0, 1, 3, 2]
    assert all(e.payload == payload(e.sequence) for e in events)
    assert fetched == {1: payload(1), 2: payload(2), 9: None}


def test_a_listener_refuses_sessions_beyond_its_cap(identity: NodeIdentity) -> None:
    from ec_node.transport.shedding import ShedLimits

    async def body() -> tuple[list[dict[str, object]], str]:
        t = MoqTransport()
        lis = await t.listen("127.0.0.1:0", identity, 10_000_000, shed=ShedLimits(max_sessions=1))
        events: list[dict[str, object]] = []
        lis.on_event = events.append
        w = lis.publish_broadcast("demo", ["chunks"])["chunks"]
        w.write_group(0, b"x")
        first = await t.connect(lis.endpoint_addr, 5)
        try:
            sub = await first.subscribe("demo", "chunks", start=0)
            assert await sub.next(10) == GroupEvent(0, b"x")
            second = await t.connect(lis.endpoint_addr, 5)  # moq accepts the handshake, then closes it
            try:
                with pytest.raises(UnreachableError) as err:
                    await second.subscribe("demo", "chunks", start=0)
            finally:
                await second.close()
            return events, str(err.value)
        finally:
            await first.close()
            await lis.close()

    events, _ = run(body())
    assert events == [{"event": "subscriber_refused", "detail": "1 sessions already (limit 1)"}]


def test_two_listeners_two_sessions_and_relay_in_one_process(identity: NodeIdentity) -> None:
    """One event loop: two listeners publishing the same broadcast name, a relay that
    subscribes to both and re-serves, and a client of the relay."""

    async def main() -> tuple[list[GroupEvent], list[GroupEvent]]:
        t = MoqTransport()
        a = await t.listen("127.0.0.1:0", identity, 10_000_000)
        b = await t.listen("127.0.0.1:0", load_or_create_identity(None), 10_000_000)
        relay = await t.listen("127.0.0.1:0", load_or_create_identity(None), 10_000_000)
        sessions = []
        try:
            wa = a.publish_broadcast("demo", ["chunks"])["chunks"]
            wb = b.publish_broadcast("demo", ["manifests"])["manifests"]
            for seq in range(10):
                wa.write_group(seq, payload(seq, 50_000))
                wb.write_group(seq, b"m%d" % seq)
            wa.finish()
            wb.finish()
            sa, sb = await asyncio.gather(t.connect(a.endpoint_addr, 5), t.connect(b.endpoint_addr, 5))
            sessions += [sa, sb]
            out = relay.publish_broadcast("demo", ["chunks", "manifests"])

            async def pump(sess: object, track: str) -> None:
                sub = await sess.subscribe("demo", track)  # type: ignore[attr-defined]
                async for ev in sub:
                    assert isinstance(ev, GroupEvent)
                    out[track].write_group(ev.sequence, ev.payload)
                out[track].finish()

            await asyncio.gather(pump(sa, "chunks"), pump(sb, "manifests"))
            client = await t.connect(relay.endpoint_addr, 5)
            sessions.append(client)
            chunks = await collect(await client.subscribe("demo", "chunks"))
            manifests = await collect(await client.subscribe("demo", "manifests"))
            return chunks, manifests
        finally:
            for s in sessions:
                await s.close()
            for lis in (a, b, relay):
                await lis.close()

    chunks, manifests = run(main())
    assert _by_seq(chunks) == [GroupEvent(i, payload(i, 50_000)) for i in range(10)]
    assert _by_seq(manifests) == [GroupEvent(i, b"m%d" % i) for i in range(10)]


PUBLISHER = textwrap.dedent(
    """
    import asyncio, json, sys
    from pathlib import Path
    from ec_node.transport.identity import load_or_create_identity
    from ec_node.transport.moq_transport import MoqTransport

    async def main():
        lis = await MoqTransport().listen("127.0.0.1:0", load_or_create_identity(Path(sys.argv[1])), 10_000_000)
        w = lis.publish_broadcast("demo", ["chunks"])["chunks"]
        for seq in range(3):
            w.write_group(seq, b"g%d" % seq)
        print(json.dumps({"endpoint_addr": lis.endpoint_addr.to_json()}), flush=True)
        await asyncio.Event().wait()

    asyncio.run(main())
    """
)


@pytest.mark.slow
def test_publisher_killed_gives_peer_lost(tmp_path: Path) -> None:
    """SIGKILL of the publisher process: the subscriber gets PeerLostError (after the ~13 s QUIC
    idle timeout), with the identity loaded from the same --identity DIR as the child used."""
    proc = subprocess.Popen(
        [sys.executable, "-c", PUBLISHER, str(tmp_path / "ident")],
        stdout=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2] / "src")},
    )
    try:
        assert proc.stdout is not None
        startup = json.loads(proc.stdout.readline())
        assert startup["endpoint_addr"]["id"] == load_or_create_identity(tmp_path / "ident").node_id
        (tmp_path / "startup.json").write_text(json.dumps(startup))
        from ec_node.transport.addr import parse_endpoint_addr

        addr = parse_endpoint_addr(f"@{tmp_path / 'startup.json'}")

        async def body() -> list[GroupEvent]:
            sess = await MoqTransport().connect(addr, 5)
            try:
                sub = await sess.subscribe("demo", "chunks")
                got = await collect(sub, 3)
                proc.send_signal(signal.SIGKILL)
                with pytest.raises(PeerLostError):
                    await sub.next()
                return got
            finally:
                await sess.close()

        assert run(body()) == [GroupEvent(i, b"g%d" % i) for i in range(3)]
    finally:
        proc.kill()
        proc.wait()


def test_rotation_keeps_old_addresses_working_through_the_signed_statement(tmp_path: Path) -> None:
    """A rotated listener presents its next certificate on the same port without a restart; an
    address from before one rotation still pins it; after two, the dialler learns the new hashes
    from the node's signed statement. The statement broadcast is never listed as a channel."""
    ident = load_or_create_identity(tmp_path / "ident")

    async def main() -> None:
        lis = await MoqTransport().listen("127.0.0.1:0", ident, 10_000_000)
        events: list[dict[str, object]] = []
        lis.on_event = events.append
        try:
            w = lis.publish_broadcast("demo", ["chunks"])["chunks"]
            w.write_group(0, b"g0")
            old = lis.endpoint_addr
            assert old.id == ident.node_id and old.cert_sha256 == ident.cert_sha256

            async def read_first(addr: EndpointAddr) -> tuple[MoqTransport, bytes]:
                t = MoqTransport()
                sess = await t.connect(addr, 10)
                try:
                    assert await sess.announced(window_s=1.0) == ["demo"]  # never the statement broadcast
                    sub = await sess.subscribe("demo", "chunks", start=0)
                    ev = await sub.next(10)
                    assert ev is not None
                    return t, ev.payload
                finally:
                    await sess.close()

            assert (await read_first(old))[1] == b"g0"
            assert await lis.rotate_certificate(now=rotate_at(ident.current.window)) is True
            assert lis.endpoint_addr.cert_sha256[0] == old.cert_sha256[1]
            assert events[-1] == {"event": "cert_rotated", "cert_sha256": list(lis.endpoint_addr.cert_sha256)}
            assert (await read_first(old))[1] == b"g0"  # pinned by the "next" hash it listed

            assert await lis.rotate_certificate(now=rotate_at(ident.current.window)) is True
            assert not set(lis.endpoint_addr.cert_sha256) & set(old.cert_sha256)
            t, got = await read_first(old)  # no hash of it is presented any more: learnt from the statement
            assert got == b"g0"
            assert set(lis.endpoint_addr.cert_sha256) <= set(t.pins_for(old))
            bare = EndpointAddr(id=ident.node_id, addrs=old.addrs)
            assert (await read_first(bare))[1] == b"g0"
        finally:
            await lis.close()

    run(main())


def test_an_impostor_with_a_statement_of_its_own_is_not_the_node(tmp_path: Path) -> None:
    real = load_or_create_identity(tmp_path / "real")
    impostor = load_or_create_identity(tmp_path / "impostor")

    async def body(t: MoqTransport, lis: MoqListener) -> str:
        claimed = EndpointAddr(id=real.node_id, addrs=lis.endpoint_addr.addrs, cert_sha256=real.cert_sha256)
        with pytest.raises(UnreachableError) as info:
            await t.connect(claimed, 10)
        return str(info.value)

    assert f"peer is not node {real.node_id}" in run(with_listener(impostor, body))


def test_a_listen_address_in_use_is_an_output_error_not_usage(identity: NodeIdentity) -> None:
    """Exit 7 like an HTTP server that cannot bind: the flag was well-formed, the port is taken."""
    from ec_node.errors import ExitCode, OutputError

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("127.0.0.1", 0))
        port = taken.getsockname()[1]
        with pytest.raises(OutputError, match=f"cannot listen on '127.0.0.1:{port}'") as info:
            run(MoqTransport().listen(f"127.0.0.1:{port}", identity, 1_000_000))
    assert info.value.code is ExitCode.OUTPUT


def test_a_rotation_whose_restart_failed_is_completed_by_the_next_check(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Review finding: a failed restart must neither leave the listener dead for good nor break close()."""
    import ec_node.transport.moq_transport as mt
    from ec_node.errors import OutputError

    ident = load_or_create_identity(tmp_path / "ident")
    real_start = mt.start_server

    async def main() -> None:
        lis = await MoqTransport().listen("127.0.0.1:0", ident, 10_000_000)
        try:
            lis.publish_broadcast("demo", ["chunks"])["chunks"].write_group(0, b"g0")
            due = rotate_at(ident.current.window)

            async def refuse(*_: object) -> object:
                raise OutputError("port taken meanwhile")

            monkeypatch.setattr(mt, "start_server", refuse)
            with pytest.raises(OutputError):
                await lis.rotate_certificate(now=due)
            monkeypatch.setattr(mt, "start_server", real_start)
            assert await lis.rotate_certificate(now=due + 1) is True  # presented != current: completed now
            sess = await MoqTransport().connect(EndpointAddr(id=ident.node_id, addrs=lis.endpoint_addr.addrs), 10)
            try:
                sub = await sess.subscribe("demo", "chunks", start=0)
                ev = await sub.next(10)
                assert ev is not None and ev.payload == b"g0"
            finally:
                await sess.close()
        finally:
            await lis.close()

    run(main())
