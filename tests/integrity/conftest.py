"""Shared fixtures for the integrity-layer tests: a stream, its cipher, a signer, sealed objects."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from ec_node.integrity.aead import StreamCipher
from ec_node.integrity.keys import derive_stream_key, signing_key_from_seed
from ec_node.integrity.manifest import Manifest, build_epoch_body, epoch_id_for, epoch_of
from ec_node.integrity.objects import SealedObject, seal_object
from ec_node.integrity.signer import Signer

STREAM = "ec/stream/v1/broadcast/atsc/tsid-2049/program-3/callsign-wsyn-hd/profile-passthrough/variant-source"
SECRET = bytes.fromhex("00112233445566778899aabbccddeeff")


def chunk_bytes(i: int, size: int = 3000) -> bytes:
    seed = f"chunk-{i}-".encode()
    return (seed * (size // len(seed) + 1))[:size]


@pytest.fixture
def stream_key() -> bytes:
    return derive_stream_key(STREAM, SECRET)


@pytest.fixture
def cipher(stream_key: bytes) -> StreamCipher:
    return StreamCipher(STREAM, stream_key)


@pytest.fixture
def signer() -> Signer:
    return Signer(signing_key_from_seed(bytes(range(32))))


@pytest.fixture
def other_signer() -> Signer:
    return Signer(signing_key_from_seed(bytes(range(1, 33))))


@pytest.fixture
def seal(cipher: StreamCipher) -> Callable[..., SealedObject]:
    def _seal(
        i: int, data: bytes | None = None, *, epoch_chunks: int = 1, duration: int = 2000, chunk_proof: Any = None
    ) -> SealedObject:
        pt = chunk_bytes(i) if data is None else data
        return seal_object(
            cipher,
            i,
            pt,
            epoch_id=epoch_id_for(STREAM, epoch_of(i, epoch_chunks)),
            chunk_duration_ms=duration,
            chunk_proof=chunk_proof,
        )

    return _seal


@pytest.fixture
def make_manifest(signer: Signer) -> Callable[..., Manifest]:
    def _make(
        epoch: int,
        hashes: dict[int, str],
        *,
        epoch_chunks: int = 1,
        duration: int = 2000,
        by: Signer | None = None,
        stream: str = STREAM,
        objects: dict[int, str] | None = None,
    ) -> Manifest:
        body = build_epoch_body(
            stream,
            epoch,
            epoch_chunks,
            hashes,
            chunk_duration_ms=duration,
            encoder_profile_id="passthrough",
            created_unix_ms=None if objects is not None else 1_700_000_000_000,
            metadata={"title": "WSYN-HD 7.1"},
            objects=objects,
        )
        return (by or signer).sign(body)

    return _make
