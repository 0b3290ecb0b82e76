"""`ec-node keygen` through the real CLI: -o makes a key (and its folders), --show prints a key's signer id."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from ec_node.integrity.keys import load_signing_key, signer_id_of

from support.clirun import invoke, one_error_line


def test_keygen_makes_missing_folders_0700(tmp_path: Path) -> None:
    p = tmp_path / "fresh-home" / ".ec-node" / "leader.key"  # neither folder exists yet
    r = invoke(["keygen", "-o", str(p)])
    assert r.exit_code == 0, r.output
    sid = r.stdout.strip()
    assert signer_id_of(load_signing_key(p)) == sid
    assert stat.S_IMODE(p.stat().st_mode) == 0o600
    assert stat.S_IMODE(p.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE(p.parent.parent.stat().st_mode) == 0o700


def test_keygen_show_prints_the_signer_id_and_changes_nothing(tmp_path: Path) -> None:
    p = tmp_path / "leader.key"
    sid = invoke(["keygen", "-o", str(p)]).stdout.strip()
    pem = p.read_bytes()
    r = invoke(["keygen", "--show", str(p)])
    assert r.exit_code == 0, r.output
    assert r.stdout == sid + "\n"  # the id alone: nothing of the secret
    assert "PRIVATE" not in r.output and pem.decode() not in r.output
    assert p.read_bytes() == pem and stat.S_IMODE(p.stat().st_mode) == 0o600


def test_keygen_show_of_a_missing_file_is_a_config_error_and_creates_nothing(tmp_path: Path) -> None:
    p = tmp_path / "typo.key"
    r = invoke(["keygen", "--show", str(p)])
    assert r.exit_code == 6 and "not found" in one_error_line(r)
    assert not p.exists()


@pytest.mark.parametrize(
    "args",
    [["keygen"], ["keygen", "--show", "a.key", "-o", "b.key"], ["keygen", "--show", "a.key", "--force"]],
    ids=["neither", "show-and-output", "show-and-force"],
)
def test_keygen_needs_exactly_one_of_output_and_show(args: list[str]) -> None:
    r = invoke(args)
    assert r.exit_code == 2 and "--show" in one_error_line(r)


def test_keygen_into_a_file_where_a_folder_must_be_is_an_output_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    r = invoke(["keygen", "-o", str(tmp_path / "file" / "k.pem")])
    assert r.exit_code == 7 and "key file" in one_error_line(r)
