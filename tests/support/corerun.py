"""A fake-clock harness around NodeCore, and a small published stream to feed it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, TypeVar

from ec_node.integrity.aead import StreamCipher
from ec_node.integrity.frames import CHUNKS_TRACK, MANIFESTS_TRACK
from ec_node.integrity.keys import derive_stream_key
from ec_node.integrity.manifest import epoch_id_for
from ec_node.integrity.objects import seal_object
from ec_node.integrity.signer import Signer
from ec_node.node.core import NodeCore, make_verifier
from ec_node.node.events import GroupReceived, Input, LinkUp, Output, Report, ServeGroup, Track, WriteSegment
from ec_node.node.settings import NodeSettings, Role
from ec_node.pipeline.publish_core import GroupWrite, PublishCore
from ec_node.ts.chunker import Chunk, chunk_stream

from support.tsbuild import stream

SID = "ec/stream/v1/source/file/name-test/profile-passthrough/variant-source"
KEY = derive_stream_key(SID, b"")
SIGNER = Signer.generate()
R = TypeVar("R")


def chunks(frames: int = 800) -> list[Chunk]:
    """Complete chunks of a small synthetic stream (2 s windows, 30 frames/s)."""
    return [c for c in chunk_stream([stream([i * 3003 for i in range(frames)])]) if c.complete]


@dataclass
class Published:
    objects: list[GroupWrite]
    manifests: list[GroupWrite]

    @property
    def genuine(self) -> dict[int, bytes]:
        return {w.sequence: w.payload for w in self.objects}


def publish(signer: Signer = SIGNER, cs: list[Chunk] | None = None) -> Published:
    """A leader's manifests and an availability publisher's objects for the same chunks."""
    leader = PublishCore(SID, KEY, signer=signer, publish_chunks=False)
    objects = PublishCore(SID, KEY, signer=None, publish_chunks=True)
    man: list[GroupWrite] = []
    obj: list[GroupWrite] = []
    for c in cs if cs is not None else chunks():
        man += leader.on_chunk(c, 0)
        obj += objects.on_chunk(c, 0)
    man += leader.finish(0)
    return Published(obj, man)


def impostor(index: int) -> bytes:
    """A self-consistent object (the public stream key is derivable) with the wrong content."""
    return seal_object(
        StreamCipher(SID, KEY), index, b"\x47" + bytes(187), epoch_id=epoch_id_for(SID, index), chunk_duration_ms=2000
    ).frame


@dataclass
class Run:
    """One NodeCore on a fake clock; every output is kept in ``outs``."""

    role: Role = Role.SUBSCRIBER
    objects_peers: tuple[str, ...] = ("a",)
    manifests_peer: str | None = "m"
    trusted: tuple[str, ...] = (SIGNER.signer_id,)
    keyless: bool = False
    settings: dict[str, Any] = field(default_factory=dict)
    t: float = 0.0
    outs: list[Output] = field(default_factory=list)

    def __post_init__(self) -> None:
        s = NodeSettings(role=self.role, **self.settings)
        key = None if self.keyless or (self.role is Role.RELAY and not s.require_manifest) else KEY
        v = make_verifier(s, SID, key, trusted_signers=self.trusted)
        self.core = NodeCore(s, v, objects_peers=list(self.objects_peers), manifests_peer=self.manifests_peer,
                             now=self.t, measure=lambda data, nominal: nominal)  # fmt: skip

    def feed(self, ev: Input) -> list[Output]:
        out = self.core.handle(ev, self.t)
        self.outs += out
        return out

    def up(self) -> None:
        """Every link comes up."""
        for peer, track in list(self.core.links):
            self.feed(LinkUp(peer, track))

    def obj(self, payload: bytes, peer: str = "a", seq: int = 0) -> list[Output]:
        return self.feed(GroupReceived(peer, Track.CHUNKS, seq, payload))

    def man(self, w: GroupWrite, peer: str = "m") -> list[Output]:
        return self.feed(GroupReceived(peer, Track.MANIFESTS, w.sequence, w.payload))

    def advance(self, dt: float) -> list[Output]:
        """Let ``dt`` seconds pass, firing every deadline on the way."""
        end = self.t + dt
        out: list[Output] = []
        while (d := self.core.next_deadline()) is not None and d <= end:
            self.t = max(self.t, d)
            out += self.core.on_timer(self.t)
            after = self.core.next_deadline()
            # a deadline that on_timer does not move would spin the shell's loop
            assert after is None or after > self.t, f"deadline {after} not after {self.t}"
        self.t = end
        self.outs += out
        return out

    def of(self, cls: type[R], outs: list[Output] | None = None) -> list[R]:
        return [o for o in (self.outs if outs is None else outs) if isinstance(o, cls)]

    def segments(self) -> list[WriteSegment]:
        return self.of(WriteSegment)

    def served(self, track: str = CHUNKS_TRACK) -> dict[int, bytes]:
        out: dict[int, bytes] = {}
        for g in self.of(ServeGroup):
            if g.track == track:
                assert g.sequence not in out, f"{track} {g.sequence} served twice"
                out[g.sequence] = g.payload
        return out

    def events(self, name: str) -> list[dict[str, Any]]:
        return [r.to_json() for r in self.of(Report) if r.to_json()["event"] == name]


__all__ = ["CHUNKS_TRACK", "MANIFESTS_TRACK", "Published", "Run", "chunks", "impostor", "publish"]
