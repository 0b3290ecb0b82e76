"""The publisher's manifest signer: one Ed25519 key, loaded from a key file that ``ec-node keygen`` made.

A missing key file is an error, never a reason to make one: a typo in ``--signing-key`` would
otherwise silently start a new signing identity that no subscriber trusts.
"""

from __future__ import annotations

import logging
import os

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ec_node.integrity.keys import generate_signing_key, load_signing_key, signer_id_of
from ec_node.integrity.manifest import Manifest, ManifestBody, add_signature, sign_manifest

log = logging.getLogger("ec_node.integrity")


class Signer:
    """Signs manifest bodies; ``signer_id`` is what subscribers pass to ``--trust-signer``."""

    def __init__(self, key: Ed25519PrivateKey) -> None:
        self._key = key
        self.signer_id = signer_id_of(key)

    @classmethod
    def generate(cls) -> Signer:
        """An ephemeral key (subscribers must then trust it on first use or be told its id)."""
        return cls(generate_signing_key())

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Signer:
        """Use an existing key file; raises :class:`KeyFileError` if it is missing or unusable."""
        return cls(load_signing_key(path))

    def sign(self, body: ManifestBody) -> Manifest:
        """Turn ``body`` into a manifest signed by this key alone."""
        return sign_manifest(body, self._key)

    def cosign(self, manifest: Manifest) -> Manifest:
        """Add this signer's signature to a manifest someone else built (checks its id first)."""
        return add_signature(manifest, self._key)

    def sign_bytes(self, message: bytes) -> bytes:
        """Ed25519 signature over arbitrary bytes with this signer's key."""
        return self._key.sign(message)


__all__ = ["Signer"]
