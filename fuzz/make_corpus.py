"""Write the seed corpus, ``fuzz/corpus/<target>/``, from the project's own encoders.

Every seed is something ec-node itself produces or reads: frames sealed by ``seal_object``, manifests
signed by ``sign_manifest``, startup objects from ``StartupObject``, TS from the synthetic media kit,
sections its PSIP builders write, and the discover/lineup documents and discovery datagrams the
virtual tuner serves. Deterministic (fixed keys, times and media options), so re-running it gives
the committed files back. Usage: ``python fuzz/make_corpus.py`` (replaces the corpus directories).
"""

from __future__ import annotations

import json
import shutil
import struct
import sys
from pathlib import Path

from ec_node.devkit.synth import preset_options, synthesize_bytes
from ec_node.hdhr import discovery
from ec_node.hdhr.device import Channel, DeviceIdentity, device_id_from, discover_json, lineup_json
from ec_node.integrity._json import canonical_json
from ec_node.integrity.aead import StreamCipher
from ec_node.integrity.frames import encode_frame
from ec_node.integrity.manifest import PREV_CHUNK_KEY, ManifestBody, build_epoch_body, sign_manifest
from ec_node.integrity.merkle import merkle_proof
from ec_node.integrity.objects import SealedObject, seal_object
from ec_node.integrity.stream_id import BroadcastIdentity, SourceHint, derive_stream_id
from ec_node.pipeline.startup import StartupObject
from ec_node.transport.addr import EndpointAddr
from ec_node.ts.packets import PACKET_SIZE, pid_of
from ec_node.ts.psi import PAT_PID, parse_pat
from ec_node.ts.psip import PSIP_BASE_PID
from ec_node.ts.section import SectionReassembler, build_section, packetize_section

sys.path.insert(0, str(Path(__file__).resolve().parent))
from targets import (  # noqa: E402 - the fixtures that seeds and invariants share
    CHUNK_MS,
    COSIGNER_KEY,
    EPOCH_CHUNKS,
    GENUINE,
    LEADER_ID,
    LEADER_KEY,
    STREAM_ID,
    STREAM_KEY,
    TARGETS,
    genuine_plaintext,
)

CREATED_MS = 1_704_067_200_000
NODE_ID = "3f" * 32
CHANNEL_META = {"channel_name": "WSYN-HD", "channel_number": "7.1"}


# ---------------------------------------------------------------------------------- integrity


def _epoch_id(epoch: int) -> str:
    return f"{STREAM_ID}/epoch-{epoch}"


def _bodies() -> list[ManifestBody]:
    """Epoch 0 lists all four chunks; epoch 1 has an empty slot (index 6) and the signed link to epoch 0."""
    e0 = {i: GENUINE[i] for i in range(EPOCH_CHUNKS)}
    e1 = {i: GENUINE[i] for i in (4, 5, 7)}
    common = {"chunk_duration_ms": CHUNK_MS, "encoder_profile_id": "passthrough", "created_unix_ms": CREATED_MS}
    return [
        build_epoch_body(STREAM_ID, 0, EPOCH_CHUNKS, e0, metadata=CHANNEL_META, **common),
        build_epoch_body(STREAM_ID, 1, EPOCH_CHUNKS, e1, metadata={**CHANNEL_META, PREV_CHUNK_KEY: 3}, **common),
    ]


def _root_only(body: ManifestBody) -> ManifestBody:
    """The same epoch committed by its Merkle root alone (objects then carry a chunk_proof)."""
    return ManifestBody(**{**body.__dict__, "chunk_hashes": ()})


def _sealed(index: int, *, proof: bool = False) -> SealedObject:
    start = index - index % EPOCH_CHUNKS
    slots = [GENUINE.get(i, "") if i != 6 else "" for i in range(start, start + EPOCH_CHUNKS)]
    return seal_object(
        StreamCipher(STREAM_ID, STREAM_KEY),
        index,
        genuine_plaintext(index),
        epoch_id=_epoch_id(index // EPOCH_CHUNKS),
        chunk_duration_ms=CHUNK_MS,
        chunk_proof=merkle_proof(slots, index - start) if proof else None,
    )


def _with_extra_meta_field(obj: SealedObject) -> bytes:
    """A frame whose meta carries a field this version does not know (it must be ignored)."""
    meta = canonical_json({**obj.meta.to_json(), "x_note": "ignored"})
    payload = obj.frame[4 + int.from_bytes(obj.frame[:4], "big") :]
    return struct.pack(">I", len(meta)) + meta + payload


def _record(kind: int, payload: bytes) -> bytes:
    return bytes([kind]) + struct.pack(">H", len(payload)) + payload


def integrity_seeds() -> dict[str, dict[str, bytes]]:
    """Frames, manifests, canonical JSON and verifier feeds of the fixture stream (two epochs of four chunks)."""
    b0, b1 = _bodies()
    m0 = sign_manifest(b0, LEADER_KEY)
    m1 = sign_manifest(b1, LEADER_KEY)
    m0_cosigned = sign_manifest(b0, LEADER_KEY, COSIGNER_KEY)
    m1_root = sign_manifest(_root_only(b1), LEADER_KEY)
    o = {i: _sealed(i) for i in (0, 1, 2, 3, 4, 5, 7)}
    p = {i: _sealed(i, proof=True) for i in (4, 5, 7)}
    assert encode_frame(o[0].meta, o[0].frame[-(len(genuine_plaintext(0)) + 16) :]) == o[0].frame
    frames = {
        "object-0.bin": o[0].frame,
        "object-5-proof.bin": p[5].frame,
        "object-1-extra-field.bin": _with_extra_meta_field(o[1]),
    }
    man, obj = 1, 0  # record kinds: manifest, object (bits 1-2 pick the source)
    verifier = {
        # manifest first, then its objects, one repeated (a duplicate) from another source
        "pinned-in-order.bin": bytes([0])
        + _record(man, m0.encode())
        + b"".join(_record(obj, o[i].frame) for i in range(4))
        + _record(obj | 2, o[2].frame),
        # objects before their manifest: buffered, then released by it
        "pinned-buffered.bin": bytes([0])
        + _record(obj, o[5].frame)
        + _record(obj | 4, o[4].frame)
        + _record(man, m1.encode())
        + _record(obj, o[7].frame),
        # root-only manifest with proofs, signer trusted on first use, share per source
        "tofu-root-only-proofs.bin": bytes([4 | 8])
        + _record(man, m1_root.encode())
        + b"".join(_record(obj, p[i].frame) for i in (4, 5, 7)),
        # keyless relay, co-signed manifest, buffer dropped
        "keyless-cosigned.bin": bytes([1])
        + _record(obj, o[1].frame)
        + _record(0xFF, b"\x00" * 2)
        + _record(man, m0_cosigned.encode())
        + _record(obj | 6, o[1].frame),
        # unverified mode: objects accepted on their own, then a manifest arrives
        "unverified.bin": bytes([2]) + _record(obj, o[0].frame) + _record(obj, o[3].frame) + _record(man, m0.encode()),
    }
    manifests = {
        "epoch-0.json": m0.encode(),
        "epoch-1-absent-slot.json": m1.encode(),
        "epoch-1-root-only.json": m1_root.encode(),
        "epoch-0-cosigned.json": m0_cosigned.encode(),
    }
    canonical = {
        "meta.json": canonical_json(o[0].meta.to_json()),
        "meta-proof.json": canonical_json(p[4].meta.to_json()),
        "manifest.json": m1.encode(),
        "values.json": canonical_json({"a": [0, -1, 18446744073709551615, "é\u2028", None, True, {}], "b": {"c": []}}),
    }
    return {
        "frame": frames,
        "object": {**frames, "object-7.bin": o[7].frame},
        "manifest": manifests,
        "canonical_json": canonical,
        "verifier": verifier,
    }


# ---------------------------------------------------------------------------------- addresses


def address_seeds() -> dict[str, dict[str, bytes]]:
    """EndpointAddr arguments and files, startup objects, and the stream ids peers announce."""
    ep = EndpointAddr(id=NODE_ID, addrs=("127.0.0.1:4443", "[::1]:4443"))
    startup = StartupObject(
        ep, STREAM_ID, STREAM_ID, ("chunks", "manifests"), LEADER_ID, ("https://relay.example.net/anon",)
    )
    startup_line = json.dumps(startup.to_json(), separators=(",", ":")).encode()
    event = json.dumps({"event": "published", "chunk_index": 0, "bytes": 1316}).encode()
    iroh = json.dumps({"id": NODE_ID.upper(), "addrs": [{"Ip": "192.0.2.7:4443"}, {"Relay": "https://relay.example/"}]})
    nested = json.dumps({"endpoint_addr": ep.to_arg(), "broadcast": STREAM_ID})
    files = {
        "endpoint-addr.json": ep.to_arg().encode(),
        "startup.json": json.dumps(startup.to_json(), indent=2).encode(),
        "startup-log.jsonl": startup_line + b"\n" + event + b"\n",
        "iroh-form.json": iroh.encode(),
        "startup-string-addr.json": nested.encode(),
    }
    args = {
        "endpoint-addr.txt": ep.to_arg().encode(),
        "iroh-form.txt": iroh.encode(),
        "startup.txt": startup_line,
        "moql-url.txt": b"moql://relay.example.net:4443",
        "https-url.txt": b"https://relay.example.net/anon?jwt=x",
        "moqt-v6.txt": b"moqt://[2001:db8::1]:443",
        "cert-pins.txt": json.dumps(
            {"id": NODE_ID, "addrs": ["node.example:4443"], "cert_sha256": ["ab" * 32]}
        ).encode(),
    }
    ids = [
        derive_stream_id(BroadcastIdentity(2049, (3,), True, "WSYN-HD"), SourceHint("stdin")),
        derive_stream_id(BroadcastIdentity(0x801, (3,), False, None), SourceHint("stdin")),
        derive_stream_id(None, SourceHint("hdhr", device_id="1234ABCD", channel="7.1")),
        derive_stream_id(None, SourceHint("file", locator="/media/capture.ts")),
        derive_stream_id(None, SourceHint("url", locator="http://192.0.2.5:5004/auto/v7.1")),
        "relay.example/anon/" + STREAM_ID,
        "la-nbc",
    ]
    return {
        "endpoint_addr": args,
        "endpoint_addr_file": files,
        "startup": {k: v for k, v in files.items() if k.startswith("startup")},
        "channel_id": {f"id-{n}.txt": s.encode() for n, s in enumerate(ids)},
    }


# ---------------------------------------------------------------------------------- MPEG-TS


def _synth(**kw: object) -> bytes:
    data, _ = synthesize_bytes(preset_options("small", duration_s=1.0, **kw))  # type: ignore[arg-type]
    return data


def _pes_start(pid: int, pts: int, cc: int, *, keyframe: bool) -> bytes:
    pts_b = bytes(
        [
            0x21 | ((pts >> 29) & 0x0E),
            (pts >> 22) & 0xFF,
            0x01 | ((pts >> 14) & 0xFE),
            (pts >> 7) & 0xFF,
            0x01 | ((pts << 1) & 0xFE),
        ]
    )
    es = b"\x00\x00\x01\xb3" + b"\x14\x00\xb4\x13" if keyframe else b"\x00\x00\x01\x00\x00\x10"
    pes = b"\x00\x00\x01\xe0\x00\x00\x80\x80\x05" + pts_b + es
    af = bytes([0x01, 0x40 if keyframe else 0x00])
    head = bytes([0x47, 0x40 | (pid >> 8), pid & 0xFF, 0x30 | (cc & 0xF)]) + af
    return (head + pes).ljust(PACKET_SIZE, b"\xff")


def _tiny_stream() -> bytes:
    """PAT, PMT and five video PES, keyframes in different 100 ms windows: complete chunks and a tail."""
    pmt_pid, vid = 0x100, 0x101
    pat = build_section(0x00, 0x801, struct.pack(">HH", 3, 0xE000 | pmt_pid), private_indicator=False)
    pmt = build_section(
        0x02, 3, struct.pack(">HHBHH", 0xE000 | vid, 0xF000, 0x02, 0xE000 | vid, 0xF000), private_indicator=False
    )
    out = bytearray()
    for k, pts in enumerate((90_000, 99_000, 108_000, 117_000, 126_000)):
        out += packetize_section(PAT_PID, pat, k & 0xF)[0] + packetize_section(pmt_pid, pmt, k & 0xF)[0]
        out += _pes_start(vid, pts, 2 * k, keyframe=k != 3)
        out += bytes([0x47, vid >> 8, vid & 0xFF, 0x10 | ((2 * k + 1) & 0xF)]) + bytes([k]) * 184
    return bytes(out)


def _sections(ts: bytes) -> dict[int, bytes]:
    """The first complete section of each table_id on the PAT, PMT and PSIP PIDs of ``ts``."""
    asm = {PAT_PID: SectionReassembler(PAT_PID), PSIP_BASE_PID: SectionReassembler(PSIP_BASE_PID)}
    found: dict[int, bytes] = {}
    for off in range(0, len(ts) - PACKET_SIZE + 1, PACKET_SIZE):
        pkt = ts[off : off + PACKET_SIZE]
        a = asm.get(pid_of(pkt))
        for sec in a.feed(pkt) if a else ():
            found.setdefault(sec.data[0], sec.data)
            if sec.data[0] == 0x00:
                for pmt_pid in parse_pat(sec.data).programs.values():
                    asm.setdefault(pmt_pid, SectionReassembler(pmt_pid))
    return found


def _packets_by_kind(ts: bytes) -> dict[str, bytes]:
    """One packet of each kind the stream carries: PSI, PSIP, PES starts with and without PCR, payload."""
    out: dict[str, bytes] = {}
    for off in range(0, len(ts) - PACKET_SIZE + 1, PACKET_SIZE):
        pkt = ts[off : off + PACKET_SIZE]
        pid, start, af = pid_of(pkt), bool(pkt[1] & 0x40), bool(pkt[3] & 0x20)
        if pid == PAT_PID:
            kind = "pat"
        elif pid == PSIP_BASE_PID:
            kind = "psip"
        elif start and af and pkt[4] >= 7 and pkt[5] & 0x10:
            kind = f"pes-pcr-{pid:04x}"
        elif start:
            kind = f"pes-{pid:04x}"
        else:
            kind = f"payload-{pid:04x}"
        out.setdefault(kind, pkt)
    out["null"] = bytes([0x47, 0x1F, 0xFF, 0x10]) + b"\xff" * 184
    return out


def ts_seeds() -> dict[str, dict[str, bytes]]:
    """A few KB of the synthetic media kit's TS (and a hand-made tiny stream), its packets and its sections."""
    head = _synth()[: 44 * PACKET_SIZE]  # PAT, PMT, MGT/TVCT/STT and the first picture's packets
    low = _synth(video_bitrate=30_000, audio_bitrate=32_000, gop_s=0.2, fps="30")  # pictures close together
    cut = low[: 176 * PACKET_SIZE]  # one complete chunk at 100 ms
    stream = {
        "synth-head.ts": bytes([3]) + head,
        "synth-one-chunk.ts": bytes([40]) + cut,
        "tiny-cuts.ts": bytes([0]) + _tiny_stream(),
        "synth-head-junk.ts": bytes([1]) + head[:1000] + b"\x47junk" + head[1000:],
    }
    packets = {f"{k}.bin": v for k, v in _packets_by_kind(head + cut).items()}
    parsers = {0x00: 0, 0x02: 1, 0xC7: 2, 0xC8: 3, 0xC9: 4, 0xCD: 5}
    psi = {}
    for tid, sec in sorted(_sections(head + cut).items()):
        if tid in parsers:
            psi[f"table-{tid:02x}.bin"] = bytes([parsers[tid] | 8]) + sec
    psi["table-c9-from-tvct.bin"] = bytes([4 | 8 | 16]) + psi["table-c8.bin"][1:]  # a CVCT: the TVCT layout
    psi["header-unfixed.bin"] = bytes([6]) + next(iter(_sections(head).values()))
    return {"ts_stream": stream, "ts_packet": packets, "ts_psi": psi}


# ---------------------------------------------------------------------------------- HDHomeRun


def hdhr_seeds() -> dict[str, dict[str, bytes]]:
    """The discover/lineup documents and discovery datagrams the virtual tuner and emulator serve."""
    did = device_id_from(b"fuzz")
    dev = DeviceIdentity(did, "HDHomeRun CONNECT QUATRO", "HDHR5-4US", "hdhomerun5_atsc", "20250506", "abcdEFGH1234", 4)
    base = "http://192.0.2.20:80"
    doc = discover_json(dev, base)
    channels = [
        Channel("7.1", "WSYN-HD", f"{base}:5004/auto/v7.1", "MPEG2", "AC3"),
        Channel("7.2", "WSYN-SD", f"{base}:5004/auto/v7.2", "MPEG2", "AC3", hd=False),
        Channel("9.1", "KFZZ", f"{base}:5004/auto/v9.1", "H264", "AAC"),
    ]
    lineup = lineup_json(channels)
    tagged = [{**lineup[0], "Tags": "favorite,drm", "DRM": 1, "Favorite": 1}, {"GuideNumber": 11, "URL": "http://x/"}]
    compact = {"separators": (",", ":")}
    reply = discovery.build_reply(
        did, tuner_count=4, base_url=base, lineup_url=f"{base}/lineup.json", device_auth="abcdEFGH1234"
    )
    return {
        "hdhr_discover": {
            "discover.json": json.dumps(doc).encode(),
            "discover-minimal.json": json.dumps({"DeviceID": doc["DeviceID"], "TunerCount": "2"}, **compact).encode(),  # type: ignore[arg-type]
        },
        "hdhr_lineup": {
            "lineup.json": json.dumps(lineup).encode(),
            "lineup-flags.json": json.dumps(tagged, **compact).encode(),  # type: ignore[arg-type]
        },
        "hdhr_discovery": {
            "reply.bin": bytes([0]) + reply,
            "reply-fixup.bin": bytes([1]) + reply,
            "request.bin": bytes([0]) + discovery.build_request(),
            "request-id.bin": bytes([1]) + discovery.build_request(device_id=did),
        },
    }


def main() -> int:
    """Rewrite every target's corpus directory."""
    root = Path(__file__).resolve().parent / "corpus"
    seeds = {**integrity_seeds(), **address_seeds(), **ts_seeds(), **hdhr_seeds()}
    missing = set(TARGETS) - set(seeds)
    if missing:
        raise SystemExit(f"no seeds for {sorted(missing)}")
    for name, files in sorted(seeds.items()):
        d = root / name
        shutil.rmtree(d, ignore_errors=True)
        d.mkdir(parents=True)
        for fname, data in sorted(files.items()):
            (d / fname).write_bytes(data)
        print(f"{name}: {len(files)} seeds, {sum(map(len, files.values()))} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
