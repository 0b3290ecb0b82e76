"""`ec-node relay` flag checks through the real CLI: one stderr line, usage errors are 2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from ec_node.cli import cli

PEER = json.dumps({"id": "ab" * 32, "addrs": ["127.0.0.1:9"]})  # nothing answers there


@pytest.mark.parametrize("value", ["", "   ", " padded"], ids=["empty", "blank", "padded"])
def test_an_unusable_broadcast_is_a_usage_error(value: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    r = CliRunner().invoke(cli, ["relay", "--remote", PEER, "--broadcast", value, "--require-manifest"])
    assert r.exit_code == 2, r.output
    lines = r.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("ec-node: error: --broadcast"), r.stderr
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("signer", ["zz", "ab" * 31, "ab" * 33])
def test_a_malformed_trust_signer_is_a_usage_error(signer: str) -> None:
    r = CliRunner().invoke(cli, ["relay", "--remote", PEER, "--require-manifest", "--trust-signer", signer])
    assert r.exit_code == 2, r.output
    assert r.stderr.startswith("ec-node: error: signer id") and r.stderr.count("\n") == 1, r.stderr
