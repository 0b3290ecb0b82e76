"""A browser reads MoQ groups byte-identical: headless Chromium with moq-dev's @moq/lite over WebTransport.

The page (tests/support/moq_lite.py) dials the MoQ server straight at https://127.0.0.1:PORT, pins
its certificate with ``serverCertificateHashes`` and subscribes to one track. @moq/lite's
``subscribe`` has no start group, so the browser joins at the live edge: the publisher keeps making
new groups until the browser has read its ``count``, and the check is that the browser got that many
distinct groups and each is byte-identical to the published group with the same sequence.

1. A ``moq.Server`` of this process (its generated certificate is ECDSA and valid for 14 days, what
   Chromium accepts for a pinned hash) publishing multi-frame groups.
2. A real ``ec-node moq-publish --listen`` node: the browser reads 3 groups of ``chunks`` and they
   equal what the project's own moq-rs subscriber fetches for the same sequences. It needs the
   listener to advertise a browser-acceptable certificate as ``endpoint_addr["cert_sha256"]``; until
   the node does, it is skipped.

Skipped without a Chromium or without web/node_modules/@moq/lite. Everything binds and dials
127.0.0.1; every server, process and browser is stopped by the test.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections.abc import Awaitable
from pathlib import Path
from typing import TypeVar

import moq
import pytest

from ec_node.devkit.media_cache import cached_media
from ec_node.devkit.synth import preset_options
from ec_node.transport.addr import endpoint_addr_from_obj
from ec_node.transport.moq_transport import MoqTransport

from support.browser import artifacts_dir
from support.moq_lite import BrowserGroup, browser_read_groups, require_browser_moq_lite
from support.procs import Node

pytestmark = pytest.mark.slow
X = TypeVar("X")
TRACK = "chunks"
T = 60.0  # bound on the browser's read (a hang guard, not a speed threshold)
GUARD_S = 120.0  # bound on a whole test's event loop
PUBLISH_EVERY_S = 0.1  # the live publisher's pace: a new group this often until the browser is done


def run(coro: Awaitable[X]) -> X:
    async def guarded() -> X:
        return await asyncio.wait_for(coro, GUARD_S)

    return asyncio.run(guarded())


def _frames(seq: int) -> tuple[bytes, ...]:
    """Group ``seq``'s frames: a text header, a large binary frame, an empty one, every byte value."""
    big = hashlib.shake_256(b"group %d" % seq).digest(300_000 + 997 * seq)
    return (b"group %d" % seq, big, b"", bytes(range(256)))


async def _hold_sessions(server: moq.Server, sessions: list[moq.Session]) -> None:
    """Accept every session and keep it (dropping a Session closes it); the test cancels this."""
    async for request in server:
        with contextlib.suppress(moq.Error):
            sessions.append(await request.accept())


async def _publish_live(track: moq.TrackProducer, published: dict[int, tuple[bytes, ...]], done: asyncio.Event) -> None:
    seq = 0
    while not done.is_set():
        frames = _frames(seq)
        group = track.create_group(seq)
        for frame in frames:
            group.write_frame(frame)
        group.finish()
        published[seq] = frames
        seq += 1
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(done.wait(), PUBLISH_EVERY_S)


def test_chromium_reads_multi_frame_groups_byte_identical_from_a_moq_server(tmp_path, request):
    require_browser_moq_lite()
    count = 5
    artifacts = artifacts_dir(request, tmp_path)

    async def body() -> tuple[list[BrowserGroup], dict[int, tuple[bytes, ...]]]:
        origin = moq.OriginProducer(cache_capacity_bytes=64 << 20)
        published: dict[int, tuple[bytes, ...]] = {}
        sessions: list[moq.Session] = []
        async with moq.Server("127.0.0.1:0", tls_generate=["localhost"], publish=origin) as server:
            hashes = server.cert_fingerprints()  # before the first accept()
            broadcast = origin.create_broadcast("ec-test/browser")
            track = broadcast.publish_track(TRACK)
            broadcast.announce()
            done = asyncio.Event()
            accept = asyncio.create_task(_hold_sessions(server, sessions))
            publisher = asyncio.create_task(_publish_live(track, published, done))
            try:
                got = await browser_read_groups(
                    f"https://{server.local_addr}", hashes, "ec-test/browser", TRACK, count, T, artifacts=artifacts
                )
            finally:
                done.set()
                await publisher
                track.finish()
                accept.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await accept
                for session in sessions:
                    session.cancel(0)
        return got, published

    got, published = run(body())
    assert len(got) == count
    assert len({g.sequence for g in got}) == count, f"a group came twice: {[g.sequence for g in got]}"
    for g in got:
        assert g.sequence in published, f"group {g.sequence} was never published"
        want = published[g.sequence]
        assert [len(f) for f in g.frames] == [len(f) for f in want], f"group {g.sequence}: frame sizes differ"
        assert g.frames == want, f"group {g.sequence}: frames differ"


@pytest.fixture(scope="module")
def live_media() -> Path:
    """30 s of small MPEG-2/AC-3: played in real time it outlasts the browser's start and its 3 groups."""
    return cached_media(preset_options("small", "mpeg2", duration_s=30.0))


async def _moq_rs_groups(startup: dict[str, object], broadcast: str, sequences: list[int]) -> dict[int, bytes | None]:
    """The groups as the project's own moq-rs subscriber path fetches them from the node."""
    session = await MoqTransport().connect(endpoint_addr_from_obj(startup), timeout_s=T)
    try:
        return await session.fetch_many(broadcast, TRACK, sequences)
    finally:
        await session.close()


def test_chromium_reads_an_ec_node_listeners_chunks_like_a_moq_rs_subscriber(tmp_path, live_media, request):
    require_browser_moq_lite()
    count = 3
    argv = ["moq-publish", "--input", str(live_media), "--realtime", "--chunk-ms", "1000",
            "--listen", "127.0.0.1:0", "--json", "--linger-ms", "600000"]  # fmt: skip
    with Node(argv, tmp_path, "pub") as pub:
        startup = pub.startup()
        ep = startup["endpoint_addr"]
        if not ep.get("cert_sha256"):
            pytest.skip("needs cert_sha256 in endpoint_addr (issue 10 identity)")
        hashes = list(ep["cert_sha256"])
        url = f"https://{ep['addrs'][0]}"
        assert url.startswith("https://127.0.0.1:"), url
        broadcast = startup["broadcast"]
        assert TRACK in startup["tracks"]
        artifacts = artifacts_dir(request, tmp_path)
        got = run(browser_read_groups(url, hashes, broadcast, TRACK, count, T, artifacts=artifacts))
        sequences = [g.sequence for g in got]
        reference = run(_moq_rs_groups(startup, broadcast, sequences))
    assert len(got) == count and len(set(sequences)) == count, sequences
    for g in got:
        want = reference[g.sequence]
        assert want is not None, f"the moq-rs subscriber could not fetch group {g.sequence}"
        assert len(g.frames) == 1, f"group {g.sequence}: {len(g.frames)} frames (ec-node writes one per group)"
        assert len(g.payload) == len(want), f"group {g.sequence}: size differs"
        assert g.payload == want, f"group {g.sequence}: payload differs"
