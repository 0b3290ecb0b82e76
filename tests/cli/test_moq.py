"""`ec-node moq-publish` / `moq-subscribe` flag checks through the real CLI: one stderr line, the documented code."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner, Result

from ec_node.cli import cli


def _invoke(args: list[str]) -> Result:
    return CliRunner().invoke(cli, args)


def _one_error_line(r: Result) -> str:
    lines = r.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("ec-node: error: "), r.stderr
    assert "Traceback" not in r.output
    return lines[0]


def test_a_missing_signing_key_is_a_config_error_and_no_key_is_made(tmp_path: Path) -> None:
    typo = tmp_path / "leadr.key"
    r = _invoke(
        ["moq-publish", "--input", str(tmp_path / "unused.ts"), "--publish-manifests", "--signing-key", str(typo)]
    )
    line = _one_error_line(r)
    assert r.exit_code == 6
    assert str(typo) in line and f"create it with: ec-node keygen -o {typo}" in line
    assert not typo.exists() and list(tmp_path.iterdir()) == []  # no new signing identity, nothing else either
