"""A hostile availability relay: re-serves an upstream's `chunks` with forged objects mixed in.

Run as a script: hostile_relay.py UPSTREAM_ADDR BROADCAST [ATTACK,ATTACK,...]. It prints one startup JSON line
(`endpoint_addr`, `plan`: {chunk_index: attack}) once it has taken the upstream's whole track,
serves it, and exits on SIGTERM. Attacks: bit flip in the
ciphertext, truncated frame, a replay of an earlier object relabelled with this index, an object
relabelled as another stream, a flipped chunk_hash in the metadata, other bytes re-sealed under the
public stream key behind the honest metadata (a key holder sees it fail to open under the honest
nonce; without the key only a manifest's object commitment refutes it); and, when asked, an
oversized object or one whose length prefix announces ~4 GB. One each, on the objects after the first.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import signal
import sys

from ec_node.integrity.aead import StreamCipher
from ec_node.integrity.frames import CHUNKS_TRACK, Encryption, decode_frame, encode_frame
from ec_node.integrity.keys import derive_stream_key
from ec_node.integrity.objects import seal_object
from ec_node.transport.addr import parse_endpoint_addr
from ec_node.transport.base import GroupEvent
from ec_node.transport.identity import load_or_create_identity
from ec_node.transport.moq_transport import MoqTransport

ATTACKS = ["bit_flip", "truncated", "replayed", "foreign_stream", "hash_flip", "resealed"]
OVERSIZE_BYTES = 3 * 1024 * 1024


def forge(attack: str, frame: bytes, earlier: bytes) -> bytes:
    f = decode_frame(frame)
    if attack == "bit_flip":
        b = bytearray(frame)
        b[-40] ^= 0x10
        return bytes(b)
    if attack == "truncated":
        return frame[: 4 + 20]
    if attack == "replayed":
        old = decode_frame(earlier)
        meta = dataclasses.replace(old.meta, chunk_index=f.meta.chunk_index, epoch_id=f.meta.epoch_id)
        return encode_frame(meta, bytes(old.payload))
    if attack == "foreign_stream":
        other = "ec/stream/v1/broadcast/atsc/tsid-1/program-1/profile-passthrough/variant-source"
        enc = Encryption(f.meta.encryption.alg, other, f.meta.encryption.nonce)
        meta = dataclasses.replace(f.meta, stream_id=other, encryption=enc)
        return encode_frame(meta, bytes(f.payload))
    if attack == "oversized":  # a whole object far over the receiver's limit
        return frame + bytes(OVERSIZE_BYTES)
    if attack == "huge_length":  # a frame whose meta length prefix announces ~4 GB
        return b"\xff\xff\xff\xf0" + frame[4:]
    if attack == "resealed":  # without a network secret anyone can derive the key (PROTOCOL.md §3)
        cipher = StreamCipher(f.meta.stream_id, derive_stream_key(f.meta.stream_id))
        other = seal_object(
            cipher, f.meta.chunk_index, b"forged " + bytes(range(256)) * 8, epoch_id=f.meta.epoch_id,
            chunk_duration_ms=f.meta.chunk_duration_ms,
        )  # fmt: skip
        return encode_frame(f.meta, bytes(decode_frame(other.frame).payload))
    if attack == "hash_flip":
        h = f.meta.chunk_hash
        meta = dataclasses.replace(f.meta, chunk_hash=("0" if h[0] != "0" else "1") + h[1:])
        return encode_frame(meta, bytes(f.payload))
    raise ValueError(attack)


async def main(upstream: str, broadcast: str, attacks: list[str]) -> None:
    t = MoqTransport()
    session = await t.connect(parse_endpoint_addr(upstream), 10)
    sub = await session.subscribe(broadcast, CHUNKS_TRACK)
    groups: list[tuple[int, bytes]] = []
    async for ev in sub:
        if isinstance(ev, GroupEvent):
            groups.append((ev.sequence, ev.payload))
        if len(groups) >= 64:
            break
    await sub.close()
    await session.close()
    listener = await t.listen("127.0.0.1:0", load_or_create_identity(None), 64 * 1024 * 1024)
    writer = listener.publish_broadcast(broadcast, [CHUNKS_TRACK])[CHUNKS_TRACK]
    plan: dict[int, str] = {}
    for k, (seq, payload) in enumerate(groups):
        if 1 <= k <= len(attacks):
            attack = attacks[k - 1]
            plan[seq] = attack
            payload = forge(attack, payload, groups[0][1])
        writer.write_group(seq, payload)
    writer.finish()
    print(json.dumps({"endpoint_addr": listener.endpoint_addr.to_json(), "plan": plan}), flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for s in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(s, stop.set)
    await stop.wait()
    await listener.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3].split(",") if len(sys.argv) > 3 else ATTACKS))
