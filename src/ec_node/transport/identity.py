"""A node's identity on disk: a long-lived Ed25519 node key, and short-lived TLS certificates it vouches for.

The node id is the lowercase hex of the node key's 32-byte raw public key; it never changes while
``--identity DIR`` is kept. The TLS certificate a listener presents is ECDSA P-256 and valid for
13 days, so that browsers accept it pinned by hash; it is replaced before it expires, without a
restart, by a *next* certificate minted ahead of time (schedule and signed statement:
:mod:`ec_node.transport.certs`, PROTOCOL.md §11.2).

Layout of DIR (mode 0700; every file 0600):

* ``node.key`` -- the Ed25519 node key (PKCS#8 PEM).
* ``tls/current.pem`` -- the presented certificate followed by its private key (PEM).
* ``tls/next.pem`` -- the one that follows it.

A rotation renames ``next.pem`` over ``current.pem`` (atomic), then mints a new ``next.pem``; a crash
in between leaves a directory that the next load completes. A directory of the old layout
(``cert.pem`` + ``key.pem``, whose certificate hash was the node id) is upgraded in place: it gets a
node key and so a new node id, which is logged.
"""

from __future__ import annotations

import atexit
import contextlib
import datetime
import fcntl
import hashlib
import ipaddress
import logging
import os
import shutil
import stat
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.x509.oid import NameOID

from ec_node.transport.certs import (
    CertStatement,
    CertWindow,
    needs_rotation,
    next_start,
    sign_statement,
    usable_next,
    validity_for,
)

NODE_KEY_FILE = "node.key"
TLS_DIR = "tls"
CURRENT_FILE = "current.pem"
NEXT_FILE = "next.pem"
LEGACY_FILES = ("cert.pem", "key.pem")
_MAX_PEM_BYTES = 64 * 1024

log = logging.getLogger(__name__)


class IdentityError(Exception):
    """The identity directory is incomplete, unreadable, mismatched or too open to trust."""


class IdentityWriteError(IdentityError):
    """The identity directory or its files cannot be created; a distinct class because the cure differs."""


@dataclass(frozen=True)
class TlsCert:
    """One certificate-and-key PEM file the TLS server loads, and the window it is valid for."""

    pem_path: Path
    window: CertWindow

    @property
    def sha256(self) -> str:
        """Lowercase hex SHA-256 of the certificate's DER (what ``moq.Server.cert_fingerprints()`` reports)."""
        return self.window.sha256


class NodeIdentity:
    """The node key, the current and next certificates, and the rotation between them."""

    def __init__(self, directory: Path, node_key: Ed25519PrivateKey, current: TlsCert, nxt: TlsCert) -> None:
        self.directory = directory
        self._node_key = node_key
        raw = node_key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        #: The node id: hex of the Ed25519 public key (64 digits).
        self.node_id = raw.hex()
        self.current = current
        self.next = nxt

    def __repr__(self) -> str:  # never shows key material
        return f"NodeIdentity(node_id={self.node_id!r}, current={self.current.sha256[:16]}...)"

    @property
    def cert_sha256(self) -> tuple[str, str]:
        """Hashes peers and browsers may pin: the current certificate's, then the next one's."""
        return (self.current.sha256, self.next.sha256)

    def statement(self) -> CertStatement:
        """The signed list of the current and next certificates."""
        return sign_statement(self._node_key, self.node_id, (self.current.window, self.next.window))

    def maintain(self, now: int | None = None) -> bool:
        """Rotate if the schedule says so, and make sure a usable next certificate exists.

        Returns True if the presented certificate changed (a listener must then restart its TLS
        server). IdentityWriteError if the directory cannot be written.
        """
        now = int(time.time()) if now is None else now
        tls = self.directory / TLS_DIR
        changed = False
        if needs_rotation(now, self.current.window):
            nxt = self.next if usable_next(now, self.current.window, self.next.window) else None
            if nxt is None or nxt.window.not_before > now:
                nxt = _mint(tls / NEXT_FILE, now)
            _replace(nxt.pem_path, tls / CURRENT_FILE)
            self.current = TlsCert(tls / CURRENT_FILE, nxt.window)
            changed = True
            log.info("TLS certificate rotated: now presenting %s", self.current.sha256)
        if changed or not usable_next(now, self.current.window, self.next.window):
            self.next = _mint(tls / NEXT_FILE, max(now, next_start(self.current.window)))
        return changed


def load_or_create_identity(directory: Path | None, now: int | None = None) -> NodeIdentity:
    """Load the identity in ``directory``, creating (or completing, or upgrading) it there.

    ``None`` makes a fresh identity in a private temporary directory removed at interpreter exit.
    Raises IdentityError for an unreadable or mismatched identity, or a key readable by others;
    IdentityWriteError if the directory cannot be written.
    """
    now = int(time.time()) if now is None else now
    if directory is None:
        directory = Path(tempfile.mkdtemp(prefix="ec-node-identity-"))
        atexit.register(shutil.rmtree, directory, True)
    directory = Path(directory)
    tls = directory / TLS_DIR
    try:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        tls.mkdir(mode=0o700, exist_ok=True)
    except OSError as exc:
        raise IdentityWriteError(f"cannot create identity directory {directory}: {exc.strerror or exc}") from None
    key_path = directory / NODE_KEY_FILE
    if key_path.exists():
        node_key = _load_node_key(key_path)
    else:
        node_key = Ed25519PrivateKey.generate()
        _write_private(key_path, _pkcs8(node_key))
        if any((directory / name).exists() for name in LEGACY_FILES):
            log.warning(
                "identity %s had the old layout (node id = certificate hash); it now has a node key and "
                "a new node id: give peers its new address",
                directory,
            )
    current = _load_cert(tls / CURRENT_FILE) if (tls / CURRENT_FILE).exists() else None
    nxt = _load_cert(tls / NEXT_FILE) if (tls / NEXT_FILE).exists() else None
    if current is None:
        current = nxt if nxt is not None and nxt.window.not_before <= now else None
        current = _mint(tls / CURRENT_FILE, now) if current is None else _renamed(current, tls / CURRENT_FILE)
        nxt = None if nxt is not None and nxt.pem_path == current.pem_path else nxt
    identity = NodeIdentity(directory, node_key, current, nxt or current)
    identity.maintain(now)
    _claim(directory, identity.node_id)
    return identity


#: Lock files held for the life of the process: one per identity directory this process uses.
_CLAIMS: dict[Path, int] = {}
LOCK_FILE = ".in-use"


def _claim(directory: Path, node_id: str) -> None:
    """Note that this process uses ``directory``; warn if another running process does too.

    Two roles sharing an identity folder get the same node id, and peers cannot tell them apart
    (and one may overwrite the other's files): worth a warning, not a refusal, since a deliberate
    restart overlap is harmless.
    """
    key = directory.resolve()
    if key in _CLAIMS:
        return
    try:
        fd = os.open(key / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError:
        return  # a read-only identity still works; it just cannot be watched
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "?"
        log.warning(
            "identity %s is in use by another running ec-node (pid %s): both have node id %s, so peers "
            "cannot tell them apart; give each role its own --identity",
            directory,
            holder,
            node_id,
        )
        os.close(fd)
        return
    os.ftruncate(fd, 0)
    os.pwrite(fd, str(os.getpid()).encode(), 0)
    _CLAIMS[key] = fd


def cert_fingerprint(cert_der: bytes) -> str:
    """Lowercase hex SHA-256 of a certificate's DER encoding."""
    return hashlib.sha256(cert_der).hexdigest()


def _mint(path: Path, start: int) -> TlsCert:
    """A fresh ECDSA P-256 certificate usable from ``start``, written with its key to ``path``."""
    key = ec.generate_private_key(ec.SECP256R1())
    not_before, not_after = validity_for(start)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ec-node")])
    sans: list[x509.GeneralName] = [
        x509.DNSName("localhost"),
        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
        x509.IPAddress(ipaddress.ip_address("::1")),
    ]
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(datetime.datetime.fromtimestamp(not_before, datetime.UTC))
        .not_valid_after(datetime.datetime.fromtimestamp(not_after, datetime.UTC))
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    _write_private(path, cert.public_bytes(serialization.Encoding.PEM) + _pkcs8(key))
    window = CertWindow(cert_fingerprint(cert.public_bytes(serialization.Encoding.DER)), not_before, not_after)
    return TlsCert(path, window)


def _load_cert(path: Path) -> TlsCert:
    data = _read_private(path)
    try:
        cert = x509.load_pem_x509_certificate(data)
    except ValueError:
        raise IdentityError(f"identity certificate {path} is not a PEM certificate") from None
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError):
        raise IdentityError(f"identity certificate {path} holds no unencrypted PEM private key") from None
    pub = serialization.PublicFormat.SubjectPublicKeyInfo
    if key.public_key().public_bytes(serialization.Encoding.DER, pub) != cert.public_key().public_bytes(
        serialization.Encoding.DER, pub
    ):
        raise IdentityError(f"identity certificate {path}: the key does not belong to the certificate")
    window = CertWindow(
        cert_fingerprint(cert.public_bytes(serialization.Encoding.DER)),
        int(cert.not_valid_before_utc.timestamp()),
        int(cert.not_valid_after_utc.timestamp()),
    )
    return TlsCert(path, window)


def _load_node_key(path: Path) -> Ed25519PrivateKey:
    data = _read_private(path)
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError):
        raise IdentityError(f"node key {path} is not an unencrypted PEM private key") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise IdentityError(f"node key {path} is not an Ed25519 key")
    return key


def _read_private(path: Path) -> bytes:
    try:
        st = path.stat()
        if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise IdentityError(
                f"identity file {path} is accessible by other users (mode {stat.S_IMODE(st.st_mode):04o}); "
                f"run: chmod 600 {path}"
            )
        if st.st_size > _MAX_PEM_BYTES:
            raise IdentityError(f"identity file {path} is larger than {_MAX_PEM_BYTES} bytes")
        return path.read_bytes()
    except OSError as exc:
        raise IdentityError(f"cannot read identity file {path}: {exc.strerror or exc}") from None


def _pkcs8(key: Ed25519PrivateKey | ec.EllipticCurvePrivateKey) -> bytes:
    pkcs8 = serialization.PrivateFormat.PKCS8
    return key.private_bytes(serialization.Encoding.PEM, pkcs8, serialization.NoEncryption())


def _write_private(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically, 0600 from the start (never briefly readable by others)."""
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o600)  # in case the umask is odd
        os.replace(tmp, path)
    except OSError as exc:
        raise IdentityWriteError(f"cannot write identity file {path}: {exc.strerror or exc}") from None


def _replace(src: Path, dst: Path) -> None:
    try:
        os.replace(src, dst)
    except OSError as exc:
        raise IdentityWriteError(f"cannot rotate identity certificate to {dst}: {exc.strerror or exc}") from None


def _renamed(cert: TlsCert, dst: Path) -> TlsCert:
    _replace(cert.pem_path, dst)
    return TlsCert(dst, cert.window)
