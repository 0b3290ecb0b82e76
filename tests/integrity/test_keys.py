from __future__ import annotations

import os
import stat
from pathlib import Path

import blake3
import pytest
from click.testing import CliRunner

from ec_node.cli import cli
from ec_node.integrity.errors import InvalidValueError, KeyFileError, KeyFileWriteError
from ec_node.integrity.keys import (
    derive_stream_key,
    generate_key_file,
    key_file_signer_id,
    load_signing_key,
    parse_network_secret,
    parse_signer_id,
    signer_id_of,
)
from ec_node.integrity.signer import Signer


def test_stream_key_matches_definition() -> None:
    sid = "la-nbc"
    secret = b"\x01\x02"
    expected = blake3.blake3(secret + b"\x00" + sid.encode(), derive_key_context="every.channel stream key v1").digest()
    assert derive_stream_key(sid, secret) == expected
    ctx = "every.channel stream key v1"
    assert derive_stream_key(sid) == blake3.blake3(b"\x00la-nbc", derive_key_context=ctx).digest()
    assert derive_stream_key(sid) != derive_stream_key(sid, secret) != derive_stream_key("la-abc", secret)


def test_network_secret_parsing() -> None:
    assert parse_network_secret(None) == b""
    assert parse_network_secret("") == b""
    assert parse_network_secret("00FFaa") == b"\x00\xff\xaa"
    for bad in ("abc", "zz", "0" * 2050):
        with pytest.raises(InvalidValueError, match="--network-secret"):
            parse_network_secret(bad)


def test_signer_id_parsing(tmp_path: Path) -> None:
    s = Signer.generate()
    assert parse_signer_id(s.signer_id.upper()) == s.signer_id
    for bad in ("", "ab", "g" * 64):
        with pytest.raises(InvalidValueError, match="signer id"):
            parse_signer_id(bad)


def test_key_file_mode_and_roundtrip(tmp_path: Path) -> None:
    p = tmp_path / "k.pem"
    old = os.umask(0)
    try:
        sid = generate_key_file(p)
    finally:
        os.umask(old)
    assert stat.S_IMODE(p.stat().st_mode) == 0o600
    assert signer_id_of(load_signing_key(p)) == sid
    with pytest.raises(KeyFileWriteError, match="exists"):
        generate_key_file(p)
    assert signer_id_of(load_signing_key(p)) == sid  # untouched
    sid2 = generate_key_file(p, force=True)
    assert sid2 != sid and signer_id_of(load_signing_key(p)) == sid2
    assert stat.S_IMODE(p.stat().st_mode) == 0o600
    assert [x.name for x in tmp_path.iterdir()] == ["k.pem"]  # no temp file left


def test_load_errors(tmp_path: Path) -> None:
    with pytest.raises(KeyFileError, match="not found"):
        load_signing_key(tmp_path / "missing.pem")
    bad = tmp_path / "bad.pem"
    bad.write_text("hello")
    with pytest.raises(KeyFileError):
        load_signing_key(bad)
    with pytest.raises(KeyFileError):
        load_signing_key(tmp_path)  # a directory
    (tmp_path / "plain").write_text("")
    with pytest.raises(KeyFileWriteError, match="cannot create key file"):
        generate_key_file(tmp_path / "plain" / "k.pem")  # a file where a folder must be


def test_missing_parent_folders_are_made_private(tmp_path: Path) -> None:
    (tmp_path / "home").mkdir(mode=0o755)
    os.chmod(tmp_path / "home", 0o755)
    p = tmp_path / "home" / ".ec-node" / "keys" / "leader.key"
    old = os.umask(0o022)
    try:
        sid = generate_key_file(p)
    finally:
        os.umask(old)
    assert signer_id_of(load_signing_key(p)) == sid and stat.S_IMODE(p.stat().st_mode) == 0o600
    for d in (p.parent, p.parent.parent):
        assert stat.S_IMODE(d.stat().st_mode) == 0o700, d
    assert stat.S_IMODE((tmp_path / "home").stat().st_mode) == 0o755  # an existing folder is left alone


def test_key_file_signer_id_reads_without_changing(tmp_path: Path) -> None:
    p = tmp_path / "k.pem"
    sid = generate_key_file(p)
    before = p.read_bytes(), p.stat().st_mtime_ns
    assert key_file_signer_id(p) == sid
    assert (p.read_bytes(), p.stat().st_mtime_ns) == before
    with pytest.raises(KeyFileError, match="not found"):
        key_file_signer_id(tmp_path / "missing.pem")
    assert not (tmp_path / "missing.pem").exists()


def test_signer_loads_a_key_file_and_never_creates_one(tmp_path: Path) -> None:
    p = tmp_path / "signer.pem"
    sid = generate_key_file(p)
    assert Signer.load(p).signer_id == Signer.load(p).signer_id == sid
    missing = tmp_path / "typo.pem"
    with pytest.raises(KeyFileError, match=r"not found; create it with: ec-node keygen -o .*typo\.pem"):
        Signer.load(missing)
    assert not missing.exists()


def test_keygen_cli(tmp_path: Path) -> None:
    p = tmp_path / "node.key"
    runner = CliRunner()
    r = runner.invoke(cli, ["keygen", "-o", str(p)])
    assert r.exit_code == 0, r.output
    sid = r.output.strip()
    assert len(sid) == 64 and signer_id_of(load_signing_key(p)) == sid
    assert stat.S_IMODE(p.stat().st_mode) == 0o600
    r2 = runner.invoke(cli, ["keygen", "-o", str(p)])
    assert r2.exit_code == 7 and "exists" in r2.output and "Traceback" not in r2.output
    assert signer_id_of(load_signing_key(p)) == sid
    r3 = runner.invoke(cli, ["keygen", "-o", str(p), "--force"])
    assert r3.exit_code == 0 and r3.output.strip() != sid
    r4 = runner.invoke(cli, ["keygen"])
    assert r4.exit_code == 2
