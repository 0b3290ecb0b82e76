"""The devkit's plain moq relay (origin fan-out) carries a real ec-node broadcast unchanged.

Everything is real: `ec-node moq-publish` and `moq-subscribe` processes, the relay process, MoQ over
QUIC on 127.0.0.1. Every process is stopped by its context manager.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import moq

from ec_node.devkit.plain_relay import upstream_urls
from ec_node.errors import ExitCode
from ec_node.transport.addr import endpoint_addr_from_obj
from ec_node.ts.chunker import Chunk, Chunker

from support.procs import Node, addr_arg

STOP_AFTER = 3
HISTORY_US = 600_000_000


def _plain_relay(cwd: Path, *args: str, name: str = "plain-relay") -> Node:
    return Node([], cwd, name, argv=[sys.executable, "-m", "ec_node.devkit.plain_relay", "-v", *args])


def _chunks(path: Path) -> list[Chunk]:
    ch = Chunker(2000)
    return [c for c in ch.feed(path.read_bytes()) + ch.flush() if c.complete]


async def _chunk_groups(
    endpoint: dict[str, Any], broadcast: str, count: int, timeout_s: float = 15.0
) -> dict[int, bytes]:
    """The first ``count`` groups of ``chunks`` (history from the start), read with a bare moq client."""
    urls, pins = upstream_urls(endpoint_addr_from_obj(endpoint))
    client = moq.Client(urls[0], tls_fingerprints=pins, reconnect=False)
    await asyncio.wait_for(client.__aenter__(), timeout_s)
    try:
        consumer = await asyncio.wait_for(client.announced_broadcast(broadcast).available(), timeout_s)
        track = await consumer.subscribe_track("chunks", moq.Subscription(max_age_us=HISTORY_US, group_start=0))
        groups: dict[int, bytes] = {}
        while len(groups) < count and (group := await asyncio.wait_for(track.recv_group(), timeout_s)) is not None:
            parts = []
            while (frame := await group.read_frame()) is not None:
                parts.append(frame.payload)
            groups[group.sequence] = b"".join(parts)
        return groups
    finally:
        await client.__aexit__(None, None, None)


def test_chunks_pass_through_the_plain_relay_byte_identical(media_mpeg2: Path, tmp_path: Path) -> None:
    expected = _chunks(media_mpeg2)[:STOP_AFTER]
    assert len(expected) == STOP_AFTER
    pub_json, relay_json, out = tmp_path / "pub.json", tmp_path / "relay.json", tmp_path / "hls"
    # --realtime: a live track. The moq origin fan-out cannot relay a track that had already finished
    # upstream when it was first asked for (a cancelled group, then an empty end): see plain_relay.
    with Node(["moq-publish", "--input", str(media_mpeg2), "--realtime", "--linger-ms", "600000",
               "--publish-manifests", "--addr-file", str(pub_json)], tmp_path, "publisher") as pub:  # fmt: skip
        sp = pub.startup()
        with _plain_relay(tmp_path, "--remote", f"@{pub_json}", "--listen", "127.0.0.1:0",
                          "--addr-file", str(relay_json)) as relay:  # fmt: skip
            sr = relay.startup()
            # ec-node's startup shape, its own node id, the publisher's broadcast and signer
            assert json.loads(relay_json.read_text()) == sr
            assert sr["endpoint_addr"]["id"] != sp["endpoint_addr"]["id"]
            assert sr["endpoint_addr"]["addrs"][0].startswith("127.0.0.1:")
            assert (sr["broadcast"], sr["stream_id"], sr["tracks"], sr["signer_id"]) == (
                sp["broadcast"], sp["stream_id"], sp["tracks"], sp["signer_id"],
            )  # fmt: skip
            with Node(["moq-subscribe", "--remote", addr_arg(sr), "--broadcast", sr["broadcast"],
                       "--subscribe-manifests", "--require-manifest", "--trust-signer", sp["signer_id"],
                       "--output-dir", str(out), "--json", "--max-invalid-chunks", "0",
                       "--stop-after", str(STOP_AFTER)], tmp_path, "subscriber") as sub:  # fmt: skip
                assert sub.wait() == 0, sub.stderr()
                events = sub.events()
            direct = asyncio.run(_chunk_groups(sp["endpoint_addr"], sp["broadcast"], STOP_AFTER))
            relayed = asyncio.run(_chunk_groups(sr["endpoint_addr"], sr["broadcast"], STOP_AFTER))
            assert relay.proc.poll() is None, relay.stderr()  # serves until stopped
        relay_err = relay.stderr()
    assert relay.proc.returncode == 0, relay_err  # SIGTERM: clean exit
    assert "session 1 accepted" in relay_err
    assert events[-1]["event"] == "end" and events[-1]["rejected"] == 0
    for chunk in expected:  # verified and decrypted by ec-node: the recording's own bytes
        assert (out / f"segment_{chunk.index:06d}.ts").read_bytes() == chunk.data
    # the sealed objects themselves: same sequences, same bytes as straight from the publisher
    assert len(direct) == STOP_AFTER and relayed == direct


def test_unreachable_upstream_and_bad_listen_address_exit_with_codes(tmp_path: Path) -> None:
    nobody = json.dumps({"id": "a" * 64, "addrs": ["127.0.0.1:9"]})
    with _plain_relay(tmp_path, "--remote", nobody, "--connect-timeout", "1", name="unreachable") as r:
        assert r.wait(timeout=30) == ExitCode.UNREACHABLE, r.stderr()
        assert "cannot connect to upstream" in r.stderr()
    with _plain_relay(tmp_path, "--remote", nobody, "--listen", "0.0.0.0:0", name="wildcard") as r:
        assert r.wait(timeout=30) == ExitCode.USAGE, r.stderr()
