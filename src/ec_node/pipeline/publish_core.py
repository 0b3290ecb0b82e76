"""What a publisher sends for each chunk, decided without I/O.

The leader hashes every chunk and signs per-epoch manifests; an availability publisher seals
chunks into objects. The same node may do both. The shell (`publish.py`) applies the
returned :class:`GroupWrite`s to the transport.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace

import blake3

from ec_node.integrity.aead import StreamCipher
from ec_node.integrity.frames import CHUNKS_TRACK, MANIFESTS_TRACK
from ec_node.integrity.manifest import PREV_CHUNK_KEY, EpochAssembler, Manifest, ManifestBody, epoch_id_for, epoch_of
from ec_node.integrity.objects import seal_object
from ec_node.integrity.signer import Signer
from ec_node.pipeline.cosign import CoSigner
from ec_node.ts.chunker import Chunk

log = logging.getLogger(__name__)

ENCODER_PROFILE_ID = "passthrough-mpegts-v1"


@dataclass(frozen=True)
class GroupWrite:
    """Publish ``payload`` as group ``sequence`` of ``track``."""

    track: str
    sequence: int
    payload: bytes


@dataclass
class PublishStats:
    """What the publisher did so far (for logs and progress events)."""

    chunks: int = 0
    damaged_dropped: int = 0
    incomplete_dropped: int = 0
    objects: int = 0
    manifests: int = 0
    bytes_in: int = 0
    last_index: int | None = None
    extra: dict[str, int] = field(default_factory=dict)


class PublishCore:
    """Chunks in, group writes out: manifests (if signing) before the objects they cover."""

    def __init__(
        self,
        stream_id: str,
        stream_key: bytes,
        *,
        signer: Signer | None,
        publish_chunks: bool,
        epoch_chunks: int = 1,
        chunk_ms: int = 2000,
        metadata: dict[str, str] | None = None,
        cosign_hold_ms: int | None = None,
    ) -> None:
        if signer is None and not publish_chunks:
            raise ValueError("a publisher must publish chunks, manifests, or both")
        self.stream_id = stream_id
        self.cipher = StreamCipher(stream_id, stream_key)
        self.signer = signer
        self.publish_chunks = publish_chunks
        self.epoch_chunks = epoch_chunks
        self.chunk_ms = chunk_ms
        self.stats = PublishStats()
        self._epochs = (
            EpochAssembler(
                stream_id,
                epoch_chunks=epoch_chunks,
                chunk_duration_ms=chunk_ms,
                encoder_profile_id=ENCODER_PROFILE_ID,
                metadata=metadata,
                commit_objects=True,  # version-2 manifests: keyless relays can check every object
            )
            if signer is not None
            else None
        )
        # co-signing (--cosign): own manifests wait up to cosign_hold_ms for another leader's signatures
        self.cosigner = CoSigner(stream_id, cosign_hold_ms) if cosign_hold_ms is not None and signer else None
        self._prev_of: dict[int, int | None] = {}  # chunk index -> the index published before it
        self._broken = False  # a damaged or cut chunk since the last published one

    @property
    def tracks(self) -> list[str]:
        """The tracks this publisher serves, in announce order."""
        out = []
        if self.publish_chunks:
            out.append(CHUNKS_TRACK)
        if self.signer is not None:
            out.append(MANIFESTS_TRACK)
        return out

    def on_chunk(self, chunk: Chunk, now_ms: int) -> list[GroupWrite]:
        """One chunk in; the manifests it closes, then its object (damaged or incomplete chunks: nothing)."""
        if not chunk.complete:
            # the tail at end of input ends wherever this node's input ended: other nodes differ
            self._broken = True
            self.stats.incomplete_dropped += 1
            log.info("chunk %d not ended by a cut point (end of input); not published", chunk.index)
            return []
        if chunk.damaged:
            # a chunk we saw damaged differs from every other node's copy: never sign or serve it,
            # and never claim its window was empty
            self._broken = True
            self.stats.damaged_dropped += 1
            log.warning("chunk %d damaged in ingest (sync or continuity loss); dropped", chunk.index)
            return []
        if self.stats.last_index is not None and chunk.index <= self.stats.last_index:
            log.warning("chunk index %d not after %d; dropped", chunk.index, self.stats.last_index)
            return []
        intact = not self._broken and self.stats.last_index is not None
        self._prev_of[chunk.index] = self.stats.last_index if intact else None
        while len(self._prev_of) > 4 * self.epoch_chunks + 16:  # bounded: only the open epochs matter
            del self._prev_of[min(self._prev_of)]
        self._broken = False
        self.stats.last_index = chunk.index
        self.stats.chunks += 1
        self.stats.bytes_in += len(chunk.data)
        epoch = epoch_of(chunk.index, self.epoch_chunks)
        # a manifests-only leader seals too: its manifests commit to the exact object frame, which
        # sealing makes deterministic (every honest publisher's frame is byte-identical)
        sealed = seal_object(
            self.cipher,
            chunk.index,
            chunk.data,
            epoch_id=epoch_id_for(self.stream_id, epoch),
            chunk_duration_ms=self.chunk_ms,  # the nominal window, as in the manifest; real length is in the bytes
        )
        out: list[GroupWrite] = []
        if self._epochs is not None and self.signer is not None:
            object_hash = blake3.blake3(sealed.frame).hexdigest()
            for body in self._epochs.add_chunk(
                chunk.index, sealed.meta.chunk_hash, now_ms, intact=intact, object_hash=object_hash
            ):
                out.extend(self._manifest(body, now_ms))
        if self.publish_chunks:
            out.append(GroupWrite(CHUNKS_TRACK, chunk.index, sealed.frame))
            self.stats.objects += 1
        return out

    def finish(self, now_ms: int) -> list[GroupWrite]:
        """The input ended: sign the open epoch (and publish what still waits for a co-signature)."""
        if self._epochs is None:
            return []
        return [w for b in self._epochs.finish(now_ms) for w in self._manifest(b, now_ms)] + self.flush_cosigned()

    def flush_cosigned(self) -> list[GroupWrite]:
        """Everything still held for a co-signature, now (alone): the publisher is stopping."""
        if self.cosigner is None:
            return []
        return [self._write(m) for m in self.cosigner.flush()]

    def on_peer_manifest(self, data: bytes, now_ms: int) -> list[GroupWrite]:
        """A frame of the other leader's ``manifests`` track (``--cosign``)."""
        if self.cosigner is None:
            return []
        return [self._write(m) for m in self.cosigner.theirs(data, now_ms)]

    def tick(self, now_ms: int) -> list[GroupWrite]:
        """Time passed: own manifests whose co-signing wait is over go out alone."""
        if self.cosigner is None:
            return []
        return [self._write(m) for m in self.cosigner.due(now_ms)]

    def _write(self, m: Manifest) -> GroupWrite:
        return GroupWrite(MANIFESTS_TRACK, epoch_of(m.body.chunk_start_index, self.epoch_chunks), m.encode())

    def _manifest(self, body: ManifestBody, now_ms: int) -> list[GroupWrite]:
        assert self.signer is not None
        present = [body.chunk_start_index + k for k, h in enumerate(body.chunk_hashes) if h]
        prev = self._prev_of.get(present[0]) if present else None
        if prev is not None:
            # signed link to the chunk before this epoch's first, given only when the leader saw the
            # stream intact in between: lets subscribers tell a jump in indices (long GOP, new
            # timeline) from chunks they missed
            body = replace(body, metadata={**body.metadata, PREV_CHUNK_KEY: prev})
        self.stats.manifests += 1
        m = self.signer.sign(body)
        if self.cosigner is not None:
            return [self._write(x) for x in self.cosigner.own(m, now_ms)]
        return [self._write(m)]
