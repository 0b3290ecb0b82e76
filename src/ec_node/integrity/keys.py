"""Stream key derivation (ECP-0011) and Ed25519 signing-key files.

The stream key is public when no network secret is given (anyone who knows the stream id can derive it):
it then hides content from casual relays only. With a secret, only its holders can open objects.
Key files are PEM PKCS#8, written with mode 0600 and never overwritten by accident; folders made
for them are 0700.
"""

from __future__ import annotations

import logging
import os
import shlex
import stat
import tempfile
from pathlib import Path

import blake3
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from ec_node.integrity._json import is_hex
from ec_node.integrity.errors import InvalidValueError, KeyFileError, KeyFileWriteError

log = logging.getLogger("ec_node.integrity")

STREAM_KEY_CONTEXT = "every.channel stream key v1"
MAX_NETWORK_SECRET_BYTES = 1024
MAX_KEY_FILE_BYTES = 16 * 1024


def derive_stream_key(stream_id: str, network_secret: bytes = b"") -> bytes:
    """32-byte key = BLAKE3 derive_key("every.channel stream key v1", secret || 0x00 || stream_id)."""
    material = bytes(network_secret) + b"\x00" + stream_id.encode("utf-8")
    return blake3.blake3(material, derive_key_context=STREAM_KEY_CONTEXT).digest()


def parse_network_secret(value: str | None) -> bytes:
    """``--network-secret`` hex -> bytes; None or "" means no secret; malformed: :class:`InvalidValueError`."""
    if value is None:
        return b""
    text = value.strip().lower()
    if len(text) % 2 or len(text) > 2 * MAX_NETWORK_SECRET_BYTES or not is_hex(text, len(text) // 2):
        raise InvalidValueError("--network-secret must be an even number of hex digits (at most 1024 bytes)")
    return bytes.fromhex(text)


def signer_id_of(key: Ed25519PublicKey | Ed25519PrivateKey) -> str:
    """Signer id = lowercase hex of the 32-byte raw Ed25519 public key."""
    pub = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    return pub.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw).hex()


def parse_signer_id(value: str) -> str:
    """Normalize a ``--trust-signer`` value (64 hex digits); :class:`InvalidValueError` unless a usable Ed25519 key."""
    text = value.strip().lower()
    if not is_hex(text, 32):
        raise InvalidValueError(f"signer id must be 64 hex digits (an Ed25519 public key), got {value!r}")
    try:
        Ed25519PublicKey.from_public_bytes(bytes.fromhex(text))
    except ValueError:
        raise InvalidValueError(f"signer id {value!r} is not a valid Ed25519 public key") from None
    return text


def generate_signing_key() -> Ed25519PrivateKey:
    """A fresh random Ed25519 key for signing manifests."""
    return Ed25519PrivateKey.generate()


def signing_key_from_seed(seed: bytes) -> Ed25519PrivateKey:
    """Deterministic key from a 32-byte seed (test vectors)."""
    return Ed25519PrivateKey.from_private_bytes(seed)


def _pem(key: Ed25519PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _make_private_parents(p: Path) -> None:
    """Create the missing folders above key file ``p``, each mode 0700 (existing ones are left as they are)."""
    missing: list[Path] = []
    parent = p.parent
    while not parent.exists() and parent != parent.parent:
        missing.append(parent)
        parent = parent.parent
    for d in reversed(missing):
        try:
            d.mkdir(mode=0o700)
            os.chmod(d, 0o700)  # the umask may only narrow; make the mode exact
        except FileExistsError:
            continue  # made by someone else meanwhile
        except OSError as e:
            raise KeyFileWriteError(f"{p}: cannot create folder {d}: {e.strerror}") from None


def save_signing_key(path: str | os.PathLike[str], key: Ed25519PrivateKey, *, force: bool = False) -> None:
    """Write ``key`` as PEM PKCS#8, mode 0600, creating missing parent folders (0700);
    :class:`KeyFileWriteError` for an existing file (unless ``force``) or an unwritable path."""
    p = Path(path)
    data = _pem(key)
    _make_private_parents(p)
    if not force:
        try:
            fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            raise KeyFileWriteError(f"{p}: file exists; pass --force to overwrite") from None
        except OSError as e:
            raise KeyFileWriteError(f"{p}: cannot create key file: {e.strerror}") from None
        try:
            os.fchmod(fd, 0o600)  # the umask may only narrow; make the mode exact
            _write_all(fd, data)
        except OSError as e:
            raise KeyFileWriteError(f"{p}: cannot write key file: {e.strerror}") from None
        finally:
            os.close(fd)
        return
    # force: write a private temp file beside the target, then atomically replace it
    try:
        fd, tmp = tempfile.mkstemp(prefix=".keygen-", dir=p.parent)
    except OSError as e:
        raise KeyFileWriteError(f"{p}: cannot create key file: {e.strerror}") from None
    try:
        os.fchmod(fd, 0o600)
        _write_all(fd, data)
        os.close(fd)
        fd = -1
        os.replace(tmp, p)
    except OSError as e:
        if fd >= 0:
            os.close(fd)
        Path(tmp).unlink(missing_ok=True)
        raise KeyFileWriteError(f"{p}: cannot write key file: {e.strerror}") from None


def load_signing_key(path: str | os.PathLike[str]) -> Ed25519PrivateKey:
    """Read a PEM PKCS#8 Ed25519 key file; any problem is one :class:`KeyFileError`."""
    p = Path(path)
    try:
        st = p.stat()
        if not stat.S_ISREG(st.st_mode):
            raise KeyFileError(f"{p}: not a regular file")
        if st.st_size > MAX_KEY_FILE_BYTES:
            raise KeyFileError(f"{p}: too large to be a signing key file")
        data = p.read_bytes()
    except FileNotFoundError:
        hint = f"create it with: ec-node keygen -o {shlex.quote(str(p))}"
        raise KeyFileError(f"{p}: signing key file not found; {hint}") from None
    except OSError as e:
        raise KeyFileError(f"{p}: cannot read signing key file: {e.strerror}") from None
    if st.st_mode & 0o077:
        log.warning("%s: signing key file is readable by group/others (mode %o)", p, st.st_mode & 0o777)
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise KeyFileError(f"{p}: not an unencrypted PEM PKCS#8 private key") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise KeyFileError(f"{p}: not an Ed25519 private key")
    return key


def generate_key_file(path: str | os.PathLike[str], *, force: bool = False) -> str:
    """Create a new signing key file (mode 0600, parents 0700) and return its signer id (for ``ec-node keygen``)."""
    key = generate_signing_key()
    save_signing_key(path, key, force=force)
    return signer_id_of(key)


def key_file_signer_id(path: str | os.PathLike[str]) -> str:
    """The signer id of an existing key file, which is only read (``ec-node keygen --show``); :class:`KeyFileError`."""
    return signer_id_of(load_signing_key(path))


__all__ = [
    "STREAM_KEY_CONTEXT",
    "derive_stream_key",
    "generate_key_file",
    "generate_signing_key",
    "key_file_signer_id",
    "load_signing_key",
    "parse_network_secret",
    "parse_signer_id",
    "save_signing_key",
    "signer_id_of",
    "signing_key_from_seed",
]
