"""Fuzz targets: every decoder that reads peer or device input, one entry per decoder family.

Each :class:`Target` is ``run(data: bytes)`` plus the exception classes its decoder documents. A run
that raises one of those is a rejection, which is fine; anything else escaping (IndexError, KeyError,
struct.error, TypeError, RecursionError, a leaked UnicodeDecodeError, an AssertionError from an
invariant checked here...) is a finding, as is a run that takes too long or too much memory (the
runner's libFuzzer limits). ``fuzz/run.py`` drives these with atheris; ``tests/fuzz`` runs a short,
bounded campaign and replays the seed corpus (``fuzz/corpus/<target>/``, made by ``make_corpus.py``).

This module is deliberately free of atheris so the seed-corpus test runs without it. Everything the
seeds need (keys, stream id, plaintexts) is fixed here so seeds and invariants agree.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import shutil
import struct
import tempfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ec_node.errors import UnreachableError, UsageError
from ec_node.hdhr import discovery
from ec_node.hdhr.api import parse_discover_json, parse_lineup_json
from ec_node.integrity._json import canonical_json, loads_strict
from ec_node.integrity.aead import StreamCipher, chunk_hash
from ec_node.integrity.errors import IntegrityFormatError, IntegrityRejection, StreamIdError
from ec_node.integrity.frames import Limits, decode_frame, encode_frame
from ec_node.integrity.keys import derive_stream_key, signer_id_of, signing_key_from_seed
from ec_node.integrity.manifest import check_manifest_body, parse_manifest
from ec_node.integrity.objects import open_object
from ec_node.integrity.stream_id import SourceHint, derive_stream_id
from ec_node.integrity.verifier import Verdict, Verifier
from ec_node.pipeline.channels import parse_stream_id
from ec_node.pipeline.identify import identity_of
from ec_node.pipeline.startup import read_startup_file
from ec_node.transport.addr import AddressError, parse_endpoint_addr
from ec_node.ts.chunker import Chunk, Chunker
from ec_node.ts.crc import crc32_mpeg
from ec_node.ts.errors import NotTsError, SectionError
from ec_node.ts.guard import GuardedChunker
from ec_node.ts.inspect import inspect_ts, lineup
from ec_node.ts.packets import (
    PACKET_SIZE,
    SYNC_BYTE,
    adaptation_length,
    continuity_counter,
    discontinuity_indicator,
    has_payload,
    payload_offset,
    pid_of,
    pusi,
    random_access_indicator,
    read_pcr,
    transport_error,
)
from ec_node.ts.pcr import PcrClock
from ec_node.ts.pes import is_random_access, pes_dts, pes_pts
from ec_node.ts.psi import parse_pat, parse_pmt
from ec_node.ts.psip import parse_mgt, parse_stt, parse_tvct, parse_vct
from ec_node.ts.section import SectionReassembler, parse_section_header

# ---------------------------------------------------------------------------------- fixtures

#: The stream every integrity seed belongs to (a broadcast id as the synthetic media kit's stream derives).
STREAM_ID = "ec/stream/v1/broadcast/atsc/tsid-2049/program-3/callsign-wsyn-hd/profile-passthrough/variant-source"
STREAM_KEY = derive_stream_key(STREAM_ID)
LEADER_KEY = signing_key_from_seed(bytes(range(32)))  # the trusted leader of the seeds
COSIGNER_KEY = signing_key_from_seed(bytes(range(32, 64)))  # a second leader co-signing the same bodies
LEADER_ID = signer_id_of(LEADER_KEY)
EPOCH_CHUNKS = 4  # chunks per manifest in the seeds
GENUINE_CHUNKS = 8  # indices 0..7: two epochs
CHUNK_MS = 2000
#: Small bounds for the verifier target, so its buffers and eviction are reached by small inputs.
VERIFIER_LIMITS = Limits(
    max_frame_bytes=1 << 16, max_meta_bytes=8192, max_manifest_bytes=1 << 16, max_manifest_chunks=16
)


def genuine_plaintext(index: int) -> bytes:
    """The leader's chunk at ``index``: two TS-shaped packets (content is irrelevant to the integrity layer)."""
    return b"".join(bytes([SYNC_BYTE, 0x01, 0x00, 0x10 | (k & 0x0F)]) + bytes([index]) * 184 for k in range(2))


GENUINE = {i: chunk_hash(genuine_plaintext(i)).hex() for i in range(GENUINE_CHUNKS)}

# ---------------------------------------------------------------------------------- registry


@dataclass(frozen=True)
class Target:
    """One fuzz target: what it covers, the decoder entry point and the exceptions it may raise."""

    name: str
    covers: str
    run: Callable[[bytes], None]
    expected: tuple[type[BaseException], ...]
    max_len: int
    dictionary: str | None = None  # a libFuzzer dictionary under fuzz/dicts/

    def one_input(self, data: bytes) -> None:
        """Run on one input; a documented rejection is swallowed, anything else propagates."""
        with contextlib.suppress(*self.expected):
            self.run(data)


TARGETS: dict[str, Target] = {}


def target(
    name: str,
    covers: str,
    *,
    expected: tuple[type[BaseException], ...] = (),
    max_len: int,
    dictionary: str | None = None,
) -> Callable[[Callable[[bytes], None]], Callable[[bytes], None]]:
    """Register ``fn`` as the target ``name``."""

    def register(fn: Callable[[bytes], None]) -> Callable[[bytes], None]:
        TARGETS[name] = Target(name, covers, fn, expected, max_len, dictionary)
        return fn

    return register


@contextlib.contextmanager
def allowed(*exc: type[BaseException]) -> Iterator[None]:
    """A sub-call that may raise its own documented error class (and only that)."""
    with contextlib.suppress(*exc):
        yield


_TMP: Path | None = None


def _scratch_file(data: bytes) -> Path:
    """``data`` in a private temp file (decoders that read ``@PATH`` files); one file, rewritten each run."""
    global _TMP
    if _TMP is None:
        _TMP = Path(tempfile.mkdtemp(prefix="ec-fuzz-"))
        atexit.register(shutil.rmtree, _TMP, True)
    path = _TMP / "input.json"
    path.write_bytes(data)
    return path


# ---------------------------------------------------------------------------------- integrity


@target(
    "frame",
    "object frames: u32 length, canonical meta JSON, chunk_proof",
    expected=(IntegrityFormatError,),
    max_len=8192,
    dictionary="integrity.dict",
)
def fuzz_frame(data: bytes) -> None:
    frame = decode_frame(data)
    payload = bytes(frame.payload)
    again = decode_frame(encode_frame(frame.meta, payload))
    assert again.meta == frame.meta and bytes(again.payload) == payload, "frame does not survive re-encoding"


_CIPHER = StreamCipher(STREAM_ID, STREAM_KEY)


@target(
    "object",
    "open_object: decode, stream/alg/nonce checks, AEAD, chunk_hash",
    expected=(IntegrityRejection,),
    max_len=8192,
    dictionary="integrity.dict",
)
def fuzz_object(data: bytes) -> None:
    opened = open_object(_CIPHER, data)
    i = opened.meta.chunk_index
    assert i in GENUINE and opened.plaintext == genuine_plaintext(i), "an object no leader sealed opened"


@target(
    "manifest",
    "manifests: body fields, slots, metadata, signatures; self-consistency",
    expected=(IntegrityRejection,),
    max_len=16384,
    dictionary="integrity.dict",
)
def fuzz_manifest(data: bytes) -> None:
    m = parse_manifest(data)
    assert parse_manifest(m.encode()) == m, "manifest does not survive re-encoding"
    obj = json.loads(data)
    if set(obj) == {"body", "manifest_id", "signatures"} and all(
        set(s) == {"signer_id", "signature"} for s in obj["signatures"]
    ):
        assert m.encode() == bytes(data), "a canonical manifest re-encodes to other bytes"
    signers = m.valid_signers()
    body = m.body
    for i in (body.chunk_start_index, body.end_index - 1, body.end_index):
        body.slot(i)
    body.epoch  # noqa: B018 - the property divides by total_chunks
    check_manifest_body(m)
    assert not signers or body.chunk_hashes == () or all(h in ("", *GENUINE.values()) for h in body.chunk_hashes), (
        "a manifest no leader signed verified"
    )


@target(
    "canonical_json",
    "strict canonical JSON reading (duplicates, constants, floats, depth, UTF-8)",
    expected=(IntegrityFormatError,),
    max_len=4096,
    dictionary="json.dict",
)
def fuzz_canonical_json(data: bytes) -> None:
    value = loads_strict(data, "fuzz")
    assert isinstance(value, dict) and canonical_json(value) == bytes(data)


def _records(data: bytes) -> Iterator[tuple[int, bytes]]:
    """``[kind u8][length u16be][bytes]`` records (the last one may be short)."""
    pos = 0
    while pos + 3 <= len(data):
        kind = data[pos]
        (n,) = struct.unpack_from(">H", data, pos + 1)
        yield kind, data[pos + 3 : pos + 3 + n]
        pos += 3 + n


@target("verifier", "the acceptance policy fed a sequence of manifest and object frames", max_len=32768)
def fuzz_verifier(data: bytes) -> None:
    """Byte 0 configures (bit 0 keyless, bit 1 unverified mode, bit 2 TOFU, bit 3 per-source share); then records.

    Record kind bit 0: manifest (else object); bits 1-2: which of four sources sent it; kind 0xFF:
    ``drop_pending(below=length)``. Invariant: with the manifests a leader signed being the only
    valid signatures the fuzzer can replay, nothing but a genuine chunk is ever accepted.
    """
    if not data:
        return
    cfg = data[0]
    keyless, unverified, tofu, share = (bool(cfg & b) for b in (1, 2, 4, 8))
    v = Verifier(
        STREAM_ID,
        None if keyless else STREAM_KEY,
        trusted_signers=() if tofu else (LEADER_ID,),
        max_pending_objects=4,
        max_pending_bytes=8192,
        max_pending_per_source=2 if share else None,
        max_retained_slots=32,
        limits=VERIFIER_LIMITS,
        require_manifest=not unverified,
    )
    junk_allowed = keyless and unverified  # a keyless node without manifests takes any self-consistent object
    accepted: set[int] = set()
    for kind, payload in _records(data[1:]):
        if kind == 0xFF:
            v.drop_pending(len(payload))
            continue
        source = "abcd"[(kind >> 1) & 3]
        decision = v.add_manifest(payload) if kind & 1 else v.add_object(payload, source)
        for a in decision.released:
            if not junk_allowed:
                assert GENUINE.get(a.chunk_index) == a.meta.chunk_hash, f"accepted a forged object at {a.chunk_index}"
            if a.plaintext is not None:
                assert a.plaintext == genuine_plaintext(a.chunk_index), "accepted plaintext differs from the leader's"
            assert a.chunk_index not in accepted, f"index {a.chunk_index} accepted twice"
            accepted.add(a.chunk_index)
        if decision.verdict is Verdict.REJECTED:
            assert decision.reason is not None
        assert 0 <= v.pending_count <= v.max_pending_objects and v.pending_bytes >= 0


# ---------------------------------------------------------------------------------- transport, startup


@target(
    "endpoint_addr",
    "EndpointAddr CLI/JSON text and URLs (parse_endpoint_addr)",
    expected=(AddressError,),
    max_len=4096,
    dictionary="addr.dict",
)
def fuzz_endpoint_addr(data: bytes) -> None:
    text = data.decode("utf-8", "surrogateescape")  # as argv arrives
    if text.strip().startswith("@"):
        return  # the @PATH form reads a file: fuzzed by endpoint_addr_file with contents we choose
    addr = parse_endpoint_addr(text)
    assert parse_endpoint_addr(addr.to_arg()) == addr, "an address does not survive to_arg()"


@target(
    "endpoint_addr_file",
    "@PATH files: EndpointAddr JSON, startup objects, JSON-lines logs",
    expected=(AddressError,),
    max_len=8192,
    dictionary="addr.dict",
)
def fuzz_endpoint_addr_file(data: bytes) -> None:
    parse_endpoint_addr("@" + str(_scratch_file(data)))


@target(
    "startup",
    "startup object files (read_startup_file / StartupObject.from_json)",
    expected=(UsageError,),
    max_len=8192,
    dictionary="addr.dict",
)
def fuzz_startup(data: bytes) -> None:
    obj = read_startup_file(_scratch_file(data))
    obj.to_json()


@target(
    "channel_id", "stream ids peers announce, parsed back into a channel identity", max_len=1024, dictionary="addr.dict"
)
def fuzz_channel_id(data: bytes) -> None:
    ident = parse_stream_id(data.decode("utf-8", "replace"))
    if ident is not None:
        ident.describe()
        ident.to_json()
        (ident.tsid, ident.program, ident.callsign)  # noqa: B018


# ---------------------------------------------------------------------------------- MPEG-TS


def _chunks(stream: bytes, step: int) -> list[Chunk]:
    ch = Chunker(100)
    out: list[Chunk] = []
    for pos in range(0, len(stream), step):
        out += ch.feed(stream[pos : pos + step])
    return out + ch.flush()


@target(
    "ts_stream",
    "a TS byte stream: framer/resync, sections, PAT/PMT/PSIP, PES, PCR, chunker, inspector, guard",
    max_len=40000,
)
def fuzz_ts_stream(data: bytes) -> None:
    """Byte 0 picks a read size; the rest is the stream. Any read split must give the same chunks."""
    if not data:
        return
    stream = data[1:]
    step = max(1 + data[0] * 53, len(stream) // 64 + 1)  # at most 64 reads: small splits, bounded cost
    report = inspect_ts(stream)
    lineup(report)
    assert report.packets * PACKET_SIZE + report.skipped_bytes == len(stream), "bytes neither framed nor skipped"
    whole = _chunks(stream, max(len(stream), 1))
    split = _chunks(stream, step)
    for c in whole:
        assert c.data and len(c.data) % PACKET_SIZE == 0 and c.data[::PACKET_SIZE].strip(b"\x47") == b""
    assert [(c.index, c.data, c.complete) for c in whole] == [(c.index, c.data, c.complete) for c in split], (
        "chunks depend on how the reads were split"
    )
    g = GuardedChunker(100)
    with allowed(NotTsError):
        g.feed(stream)
        g.flush()
        identity = identity_of(g.chunker.info)
        with allowed(StreamIdError):
            derive_stream_id(identity, SourceHint("stdin"))
    clock = PcrClock()
    clock.feed(stream[:step])
    clock.feed(stream[step:])
    clock.flush()


@target(
    "ts_packet",
    "one 188-byte packet: header fields, adaptation field, PCR, PES header, random access",
    max_len=PACKET_SIZE,
)
def fuzz_ts_packet(data: bytes) -> None:
    pkt = (bytes([SYNC_BYTE]) + data[1:]).ljust(PACKET_SIZE, b"\xff")[:PACKET_SIZE]
    pid_of(pkt), pusi(pkt), transport_error(pkt), continuity_counter(pkt), has_payload(pkt)  # noqa: B018
    adaptation_length(pkt), random_access_indicator(pkt), discontinuity_indicator(pkt), read_pcr(pkt)  # noqa: B018
    off = payload_offset(pkt)
    assert off is None or 4 <= off < PACKET_SIZE
    pts, es = pes_pts(pkt)
    assert 0 <= es <= PACKET_SIZE and (pts is None or 0 <= pts < 1 << 33)
    pes_dts(pkt)
    for codec in ("mpeg2", "h264", "hevc"):
        is_random_access(pkt, codec, es)
    asm = SectionReassembler()
    asm.feed(pkt)
    asm.feed(pkt[:3] + bytes([(pkt[3] & 0xF0) | ((pkt[3] + 1) & 0x0F)]) + pkt[4:])


_SECTION_PARSERS: tuple[tuple[int | None, Callable[[bytes], Any]], ...] = (
    (0x00, parse_pat),
    (0x02, parse_pmt),
    (0xC7, parse_mgt),
    (0xC8, parse_tvct),
    (0xC9, parse_vct),
    (0xCD, parse_stt),
    (None, parse_section_header),
)


def fix_section(sec: bytes, table_id: int | None) -> bytes:
    """``sec`` with its section_length, CRC (and table_id) made right, so the table parser is reached."""
    if len(sec) < 4:
        return sec
    b = bytearray(sec)
    if table_id is not None:
        b[0] = table_id
    n = len(b) - 3
    b[1] = (b[1] & 0xF0) | ((n >> 8) & 0x0F)
    b[2] = n & 0xFF
    b[-4:] = crc32_mpeg(bytes(b[:-4])).to_bytes(4, "big")
    return bytes(b)


@target(
    "ts_psi", "PSI/PSIP sections: header, CRC, PAT, PMT, MGT, TVCT/CVCT, STT", expected=(SectionError,), max_len=4100
)
def fuzz_ts_psi(data: bytes) -> None:
    """Byte 0: low 3 bits pick the parser, bit 3 fixes length and CRC, bit 4 also the table_id."""
    if not data:
        return
    table_id, parse = _SECTION_PARSERS[(data[0] & 7) % len(_SECTION_PARSERS)]
    sec = data[1:]
    if data[0] & 8:
        sec = fix_section(sec, table_id if data[0] & 16 else None)
    parse(sec)


# ---------------------------------------------------------------------------------- HDHomeRun


@target(
    "hdhr_discover",
    "HDHomeRun /discover.json bodies",
    expected=(UnreachableError,),
    max_len=8192,
    dictionary="hdhr.dict",
)
def fuzz_hdhr_discover(data: bytes) -> None:
    info = parse_discover_json(data, "fuzz")
    assert isinstance(info.device_id, str)


@target(
    "hdhr_lineup", "HDHomeRun /lineup.json bodies", expected=(UnreachableError,), max_len=16384, dictionary="hdhr.dict"
)
def fuzz_hdhr_lineup(data: bytes) -> None:
    for entry in parse_lineup_json(data, "fuzz"):
        assert entry.url.startswith(("http://", "https://")) and entry.guide_number
        entry.to_json()


@target(
    "hdhr_discovery",
    "HDHomeRun UDP discovery datagrams (replies and requests)",
    expected=(discovery.DiscoveryPacketError,),
    max_len=3100,
)
def fuzz_hdhr_discovery(data: bytes) -> None:
    """Byte 0 bit 0: make the payload length and CRC right so the TLV walk is reached."""
    if not data:
        return
    pkt = data[1:]
    if data[0] & 1 and len(pkt) >= 8:
        head = pkt[:2] + struct.pack(">H", len(pkt) - 8) + pkt[4:-4]
        pkt = head + struct.pack("<I", zlib.crc32(head))
    with allowed(discovery.DiscoveryPacketError):
        discovery.request_matches(discovery.parse_packet(pkt), discovery.DEVICE_TYPE_TUNER, 0x1234_5678)
    discovery.parse_reply(pkt, "192.0.2.1").to_json()


def corpus_dir(name: str) -> Path:
    """Where the committed seeds of target ``name`` live."""
    return Path(__file__).resolve().parent / "corpus" / name


def dict_path(t: Target) -> Path | None:
    """The target's libFuzzer dictionary, if it has one."""
    return Path(__file__).resolve().parent / "dicts" / t.dictionary if t.dictionary else None


__all__ = ["GENUINE", "STREAM_ID", "TARGETS", "Target", "corpus_dir", "dict_path", "fix_section", "genuine_plaintext"]
