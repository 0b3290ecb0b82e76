"""`ec-node moq-publish` / `moq-subscribe` flag checks through the real CLI: one stderr line, the documented code."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from support.clirun import invoke, one_error_line


def test_a_missing_signing_key_is_a_config_error_and_no_key_is_made(tmp_path: Path) -> None:
    typo = tmp_path / "leadr.key"
    r = invoke(
        ["moq-publish", "--input", str(tmp_path / "unused.ts"), "--publish-manifests", "--signing-key", str(typo)]
    )
    line = one_error_line(r)
    assert r.exit_code == 6
    assert str(typo) in line and f"create it with: ec-node keygen -o {typo}" in line
    assert not typo.exists() and list(tmp_path.iterdir()) == []  # no new signing identity, nothing else either


PEER = json.dumps({"id": "ab" * 32, "addrs": ["127.0.0.1:9"]})  # nothing answers there


@pytest.mark.parametrize("value", ["", "   ", " padded", "tab\there"], ids=["empty", "blank", "padded", "control"])
@pytest.mark.parametrize(
    "command",
    [["moq-publish", "--input", "unused.ts"], ["moq-subscribe", "--remote", PEER, "--output-dir", "hls"]],
    ids=["publish", "subscribe"],
)
def test_an_unusable_broadcast_is_a_usage_error(
    command: list[str], value: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    r = invoke([*command, "--broadcast", value])
    assert r.exit_code == 2, r.output
    assert "--broadcast" in one_error_line(r)
    assert list(tmp_path.iterdir()) == []  # refused before anything was opened or written


def test_subscribe_malformed_signer_is_a_usage_error_before_the_broadcast_is_looked_up(tmp_path: Path) -> None:
    startup = tmp_path / "leader.json"  # no --broadcast: it would be read from this file, then the peer dialled
    startup.write_text(json.dumps({"endpoint_addr": json.loads(PEER), "broadcast": "b", "stream_id": "b",
                                   "tracks": ["chunks", "manifests"], "signer_id": None}))  # fmt: skip
    for flags in (["--require-manifest"], []):
        r = invoke(["moq-subscribe", "--remote", f"@{startup}", *flags, "--trust-signer", "0123abc",
                     "--output-dir", str(tmp_path / "hls")])  # fmt: skip
        assert r.exit_code == 2 and "signer id must be 64 hex digits" in one_error_line(r)
