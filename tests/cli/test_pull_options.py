"""The pull flags `moq-subscribe` and `relay` share, through the real CLI: contradictions are usage errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from ec_node.cli import cli
from ec_node.integrity.signer import Signer

PEER = json.dumps({"id": "ab" * 32, "addrs": ["127.0.0.1:9"]})  # nothing answers there
SIGNER = Signer.generate().signer_id
QUICK = ["--connect-timeout", "0.2", "--reconnect-for", "0.2"]


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # whatever a command might write lands in the test's own folder


def _invoke(args: list[str]) -> Result:
    return CliRunner().invoke(cli, args)


@pytest.mark.parametrize(
    "command",
    [
        ["moq-subscribe", "--output-dir", "hls"],
        ["moq-subscribe", "--subscribe-manifests", "--output-dir", "hls"],  # manifests alone verify nothing
        ["relay"],
    ],
    ids=["subscribe", "subscribe-manifests-only", "relay"],
)
def test_trust_signer_without_require_manifest_is_a_usage_error(command: list[str]) -> None:
    r = _invoke([*command, "--remote", PEER, "--broadcast", "b", "--trust-signer", SIGNER])
    assert r.exit_code == 2, r.output
    lines = r.stderr.splitlines()
    assert len(lines) == 1, r.stderr  # one line: no warning before it, no traceback
    assert lines[0].startswith("ec-node: error: --trust-signer needs --require-manifest")


@pytest.mark.parametrize("command", [["moq-subscribe", "--output-dir", "hls"], ["relay"]], ids=["subscribe", "relay"])
def test_trust_signer_with_require_manifest_gets_past_the_flag_checks(command: list[str]) -> None:
    r = _invoke(
        [*command, "--remote", PEER, "--broadcast", "b", "--require-manifest", "--trust-signer", SIGNER, *QUICK]
    )
    assert r.exit_code == 4, r.output  # it went on to dial the peer, which does not answer
    assert "--trust-signer" not in r.stderr
