"""Node identity: persistence, key permissions, fingerprint = SHA-256 of the certificate DER."""

from __future__ import annotations

import asyncio
import hashlib
import os
import stat
from pathlib import Path

import moq
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from ec_node.transport.identity import CERT_FILE, KEY_FILE, IdentityError, IdentityWriteError, load_or_create_identity


def test_same_dir_same_fingerprint(tmp_path: Path) -> None:
    first = load_or_create_identity(tmp_path / "id")
    second = load_or_create_identity(tmp_path / "id")
    assert first == second
    assert len(first.fingerprint) == 64 and first.fingerprint == first.fingerprint.lower()


def test_key_file_is_0600(tmp_path: Path) -> None:
    ident = load_or_create_identity(tmp_path / "id")
    assert stat.S_IMODE(ident.key_pem_path.stat().st_mode) == 0o600
    assert ident.key_pem_path.name == KEY_FILE and ident.cert_pem_path.name == CERT_FILE


def test_fingerprint_is_sha256_of_der(tmp_path: Path) -> None:
    ident = load_or_create_identity(tmp_path)
    cert = x509.load_pem_x509_certificate(ident.cert_pem_path.read_bytes())
    assert ident.fingerprint == hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()


def test_fingerprint_matches_what_moq_server_reports(tmp_path: Path) -> None:
    ident = load_or_create_identity(tmp_path)

    async def main() -> list[str]:
        server = moq.Server("127.0.0.1:0", tls_cert=[str(ident.cert_pem_path)], tls_key=[str(ident.key_pem_path)])
        async with server:
            return server.cert_fingerprints()

    assert asyncio.run(main()) == [ident.fingerprint]


def test_none_gives_fresh_identities() -> None:
    a, b = load_or_create_identity(None), load_or_create_identity(None)
    assert a.fingerprint != b.fingerprint
    assert a.key_pem_path.exists()


def test_incomplete_dir_is_identity_error(tmp_path: Path) -> None:
    ident = load_or_create_identity(tmp_path)
    ident.key_pem_path.unlink()
    with pytest.raises(IdentityError, match="incomplete") as info:
        load_or_create_identity(tmp_path)
    assert info.type is IdentityError  # unusable, not unwritable: the CLI maps the two differently


def test_unwritable_dir_is_identity_write_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a directory")
    with pytest.raises(IdentityWriteError, match="cannot create identity directory"):
        load_or_create_identity(tmp_path / "file" / "id")


def test_key_readable_by_others_is_refused(tmp_path: Path) -> None:
    ident = load_or_create_identity(tmp_path)
    os.chmod(ident.key_pem_path, 0o644)
    with pytest.raises(IdentityError, match="chmod 600"):
        load_or_create_identity(tmp_path)


def test_key_of_another_identity_is_refused(tmp_path: Path) -> None:
    a = load_or_create_identity(tmp_path / "a")
    b = load_or_create_identity(tmp_path / "b")
    b.key_pem_path.write_bytes(a.key_pem_path.read_bytes())
    with pytest.raises(IdentityError, match="does not belong"):
        load_or_create_identity(tmp_path / "b")


def test_garbage_files_are_identity_errors(tmp_path: Path) -> None:
    ident = load_or_create_identity(tmp_path)
    ident.cert_pem_path.write_bytes(b"garbage")
    with pytest.raises(IdentityError, match="not a PEM certificate"):
        load_or_create_identity(tmp_path)
