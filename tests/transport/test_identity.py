"""Node identity on disk: a stable Ed25519 node id, browser-grade certificates, rotation, permissions."""

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
from cryptography.hazmat.primitives.asymmetric import ec

from ec_node.transport.certs import DAY_S, decode_statement, rotate_at
from ec_node.transport.identity import (
    CURRENT_FILE,
    NEXT_FILE,
    NODE_KEY_FILE,
    TLS_DIR,
    IdentityError,
    IdentityWriteError,
    load_or_create_identity,
)

NOW = 1_800_000_000


def test_same_dir_same_node_id_and_certificates(tmp_path: Path) -> None:
    first = load_or_create_identity(tmp_path / "id", now=NOW)
    second = load_or_create_identity(tmp_path / "id", now=NOW + 60)
    assert first.node_id == second.node_id
    assert first.cert_sha256 == second.cert_sha256
    assert len(first.node_id) == 64 and first.node_id == first.node_id.lower()


def test_every_file_is_private(tmp_path: Path) -> None:
    ident = load_or_create_identity(tmp_path / "id", now=NOW)
    files = [
        tmp_path / "id" / NODE_KEY_FILE,
        tmp_path / "id" / TLS_DIR / CURRENT_FILE,
        tmp_path / "id" / TLS_DIR / NEXT_FILE,
    ]
    assert [stat.S_IMODE(f.stat().st_mode) for f in files] == [0o600] * 3
    assert stat.S_IMODE((tmp_path / "id").stat().st_mode) == 0o700
    assert ident.current.pem_path == files[1]


def test_certificate_is_one_browsers_accept_pinned(tmp_path: Path) -> None:
    """Chromium: ECDSA, validity <= 14 days; SANs let CA-file clients dial 127.0.0.1 too."""
    ident = load_or_create_identity(tmp_path, now=NOW)
    cert = x509.load_pem_x509_certificate(ident.current.pem_path.read_bytes())
    assert isinstance(cert.public_key(), ec.EllipticCurvePublicKey)
    life = cert.not_valid_after_utc - cert.not_valid_before_utc
    assert life.total_seconds() <= 14 * DAY_S
    assert cert.not_valid_before_utc.timestamp() <= NOW < cert.not_valid_after_utc.timestamp()
    assert ident.current.sha256 == hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert {str(ip) for ip in sans.get_values_for_type(x509.IPAddress)} == {"127.0.0.1", "::1"}


def test_fingerprint_matches_what_moq_reports(tmp_path: Path) -> None:
    ident = load_or_create_identity(tmp_path)
    pem = str(ident.current.pem_path)

    async def main() -> list[str]:
        server = moq.Server("127.0.0.1:0", tls_cert=[pem], tls_key=[pem])
        async with server:
            return server.cert_fingerprints()

    assert asyncio.run(main()) == [ident.current.sha256]


def test_statement_is_signed_by_the_node_and_lists_current_then_next(tmp_path: Path) -> None:
    ident = load_or_create_identity(tmp_path, now=NOW)
    statement = decode_statement(ident.statement().encode(), ident.node_id)
    assert tuple(c.sha256 for c in statement.certs) == ident.cert_sha256
    assert statement.pins(NOW) == ident.cert_sha256


def test_rotation_keeps_the_node_id_and_promotes_the_next_certificate(tmp_path: Path) -> None:
    ident = load_or_create_identity(tmp_path, now=NOW)
    before = ident.cert_sha256
    assert ident.maintain(NOW + DAY_S) is False  # not due yet
    due = rotate_at(ident.current.window)
    assert ident.maintain(due) is True
    assert ident.current.sha256 == before[1]  # the next one, which peers were already given
    assert ident.next.sha256 not in before
    reloaded = load_or_create_identity(tmp_path, now=due + 1)
    assert (reloaded.node_id, reloaded.cert_sha256) == (ident.node_id, ident.cert_sha256)


def test_an_identity_loaded_long_after_its_certificates_expired_gets_fresh_ones(tmp_path: Path) -> None:
    first = load_or_create_identity(tmp_path, now=NOW)
    later = NOW + 100 * DAY_S
    again = load_or_create_identity(tmp_path, now=later)
    assert again.node_id == first.node_id
    assert again.current.window.not_before <= later < again.current.window.not_after
    assert not set(again.cert_sha256) & set(first.cert_sha256)


def test_a_crash_between_rotation_steps_is_completed_on_load(tmp_path: Path) -> None:
    ident = load_or_create_identity(tmp_path, now=NOW)
    nxt = ident.next.sha256
    (tmp_path / TLS_DIR / CURRENT_FILE).unlink()  # as if killed after the rename's unlink
    (tmp_path / TLS_DIR / NEXT_FILE).rename(tmp_path / TLS_DIR / CURRENT_FILE)
    again = load_or_create_identity(tmp_path, now=rotate_at(ident.current.window))
    assert again.current.sha256 == nxt and again.next.sha256 != nxt


def test_fresh_identities_differ(tmp_path: Path) -> None:
    a, b = load_or_create_identity(None), load_or_create_identity(None)
    assert a.node_id != b.node_id
    assert a.current.pem_path.exists()


def test_old_layout_is_upgraded_with_a_new_node_id(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / "cert.pem").write_text("old certificate")
    (tmp_path / "key.pem").write_text("old key")
    ident = load_or_create_identity(tmp_path, now=NOW)
    assert (tmp_path / NODE_KEY_FILE).exists() and ident.current.pem_path.exists()
    assert "new node id" in caplog.text


def test_unwritable_dir_is_identity_write_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a directory")
    with pytest.raises(IdentityWriteError, match="cannot create identity directory"):
        load_or_create_identity(tmp_path / "file" / "id")


@pytest.mark.parametrize("name", [NODE_KEY_FILE, f"{TLS_DIR}/{CURRENT_FILE}"])
def test_a_file_readable_by_others_is_refused(tmp_path: Path, name: str) -> None:
    load_or_create_identity(tmp_path)
    os.chmod(tmp_path / name, 0o644)
    with pytest.raises(IdentityError, match="chmod 600") as info:
        load_or_create_identity(tmp_path)
    assert info.type is IdentityError  # unusable, not unwritable: the CLI maps the two differently


def test_mismatched_key_is_refused(tmp_path: Path) -> None:
    a = load_or_create_identity(tmp_path / "a")
    b = load_or_create_identity(tmp_path / "b")
    cert_a = a.current.pem_path.read_bytes().split(b"-----BEGIN PRIVATE KEY-----")[0]
    key_b = b"-----BEGIN PRIVATE KEY-----" + b.current.pem_path.read_bytes().split(b"-----BEGIN PRIVATE KEY-----")[1]
    a.current.pem_path.write_bytes(cert_a + key_b)
    with pytest.raises(IdentityError, match="does not belong"):
        load_or_create_identity(tmp_path / "a")


def test_garbage_files_are_refused(tmp_path: Path) -> None:
    ident = load_or_create_identity(tmp_path)
    ident.current.pem_path.write_bytes(b"garbage")
    with pytest.raises(IdentityError, match="not a PEM certificate"):
        load_or_create_identity(tmp_path)
    (tmp_path / NODE_KEY_FILE).write_bytes(b"garbage")
    with pytest.raises(IdentityError, match="node key"):
        load_or_create_identity(tmp_path)


def test_two_running_processes_on_one_identity_folder_are_warned_about(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Same folder, same node id: peers could not tell the two roles apart."""
    import subprocess
    import sys

    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys; from pathlib import Path; "
         "from ec_node.transport.identity import load_or_create_identity as f; "
         "f(Path(sys.argv[1])); print('ready', flush=True); sys.stdin.read()", str(tmp_path)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "ready"
        ident = load_or_create_identity(tmp_path)
        assert f"in use by another running ec-node (pid {holder.pid})" in caplog.text
        assert ident.node_id in caplog.text
    finally:
        holder.communicate("", timeout=30)
