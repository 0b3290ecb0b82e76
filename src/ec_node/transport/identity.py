"""A node's TLS identity: a self-signed certificate whose SHA-256 is the node id.

Peers pin the certificate by that fingerprint (``tls_fingerprints`` in moq), so keeping the same
certificate across restarts (``--identity DIR``) keeps the node id that others were given.
The fingerprint is SHA-256 over the certificate's DER bytes, which is exactly what
``moq.Server.cert_fingerprints()`` reports (checked when a listener starts).

Layout of DIR: ``cert.pem`` (public) and ``key.pem`` (PKCS#8, mode 0600). The key is ECDSA P-256,
which every rustls build accepts.
"""

from __future__ import annotations

import atexit
import datetime
import hashlib
import os
import shutil
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

CERT_FILE = "cert.pem"
KEY_FILE = "key.pem"
_MAX_PEM_BYTES = 64 * 1024


class IdentityError(Exception):
    """The identity directory is incomplete, unreadable, mismatched or too open to trust."""


class IdentityWriteError(IdentityError):
    """The identity directory or its files cannot be created; a distinct class because the cure differs."""


@dataclass(frozen=True)
class NodeIdentity:
    """Paths the TLS server loads, plus the node id (lowercase hex SHA-256 of the cert DER)."""

    cert_pem_path: Path
    key_pem_path: Path
    fingerprint: str


def load_or_create_identity(directory: Path | None) -> NodeIdentity:
    """Load the identity in ``directory``, creating it there if absent.

    ``None`` makes a fresh identity in a private temporary directory removed at interpreter exit.
    Raises IdentityError for a half-present, unreadable or mismatched identity, or a key readable by
    others; IdentityWriteError if the directory cannot be written.
    """
    if directory is None:
        tmp = Path(tempfile.mkdtemp(prefix="ec-node-identity-"))
        atexit.register(shutil.rmtree, tmp, True)
        return _create(tmp)
    directory = Path(directory)
    cert_path, key_path = directory / CERT_FILE, directory / KEY_FILE
    has_cert, has_key = cert_path.exists(), key_path.exists()
    if has_cert and has_key:
        return _load(cert_path, key_path)
    if has_cert or has_key:
        missing = key_path if has_cert else cert_path
        raise IdentityError(f"identity directory {directory} is incomplete: {missing.name} is missing")
    try:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise IdentityWriteError(f"cannot create identity directory {directory}: {exc.strerror or exc}") from None
    return _create(directory)


def cert_fingerprint(cert_der: bytes) -> str:
    """Node id of a certificate: lowercase hex SHA-256 of its DER encoding."""
    return hashlib.sha256(cert_der).hexdigest()


def _create(directory: Path) -> NodeIdentity:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ec-node")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        # 9999-12-31 is X.509's "no well-defined expiry": the pin, not the date, is the trust.
        .not_valid_after(datetime.datetime(9999, 12, 31, 23, 59, 59, tzinfo=datetime.UTC))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    cert_path, key_path = directory / CERT_FILE, directory / KEY_FILE
    try:
        # Create the key 0600 from the start, so it is never briefly readable by others.
        fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(key_pem)
        os.chmod(key_path, 0o600)  # in case the umask is odd
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    except OSError as exc:
        raise IdentityWriteError(f"cannot write identity in {directory}: {exc.strerror or exc}") from None
    return NodeIdentity(cert_path, key_path, cert_fingerprint(cert.public_bytes(serialization.Encoding.DER)))


def _load(cert_path: Path, key_path: Path) -> NodeIdentity:
    try:
        mode = key_path.stat().st_mode
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise IdentityError(
                f"identity key {key_path} is accessible by other users (mode {stat.S_IMODE(mode):04o}); "
                f"run: chmod 600 {key_path}"
            )
        cert_pem = _read_bounded(cert_path)
        key_pem = _read_bounded(key_path)
    except OSError as exc:
        raise IdentityError(f"cannot read identity {cert_path.parent}: {exc.strerror or exc}") from None
    try:
        cert = x509.load_pem_x509_certificate(cert_pem)
    except ValueError:
        raise IdentityError(f"identity certificate {cert_path} is not a PEM certificate") from None
    try:
        key = serialization.load_pem_private_key(key_pem, password=None)
    except (ValueError, TypeError):
        raise IdentityError(f"identity key {key_path} is not an unencrypted PEM private key") from None
    pub = serialization.PublicFormat.SubjectPublicKeyInfo
    if key.public_key().public_bytes(serialization.Encoding.DER, pub) != cert.public_key().public_bytes(
        serialization.Encoding.DER, pub
    ):
        raise IdentityError(f"identity key {key_path} does not belong to certificate {cert_path}")
    return NodeIdentity(cert_path, key_path, cert_fingerprint(cert.public_bytes(serialization.Encoding.DER)))


def _read_bounded(path: Path) -> bytes:
    if path.stat().st_size > _MAX_PEM_BYTES:
        raise IdentityError(f"identity file {path} is larger than {_MAX_PEM_BYTES} bytes")
    return path.read_bytes()
