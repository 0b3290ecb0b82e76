"""`ec-node media synth` through the real CLI root (error mapping and exit codes included)."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from ec_node.cli import cli
from ec_node.ts.inspect import inspect_ts as probe_ts


def test_synth_writes_file_and_prints_summary(tmp_path: Path) -> None:
    out = tmp_path / "sub" / "clip.ts"
    args = ["media", "synth", "-o", str(out), "--size", "small", "--duration", "1", "--codec", "h264"]
    args += ["--channel-name", "KCLI", "--major", "12", "--minor", "4", "--tsid", "0x0abc", "--program", "5"]
    r = CliRunner().invoke(cli, args)
    assert r.exit_code == 0, r.output
    lines = r.stdout.strip().splitlines()
    assert len(lines) == 1
    summary = json.loads(lines[0])
    assert summary["path"] == str(out) and summary["codec"] == "h264"
    assert summary["bytes"] == out.stat().st_size and abs(summary["duration"] - 1.0) < 0.05
    p = probe_ts(out.read_bytes())
    ch = p.channels[0]
    assert (ch.short_name, ch.major, ch.minor, ch.channel_tsid, ch.program_number) == ("KCLI", 12, 4, 0xABC, 5)
    assert p.programs == {5: 0x30} and p.nulls == 0 == summary["null_packets"]


def test_synth_null_padding_and_open_gop(tmp_path: Path) -> None:
    out = tmp_path / "cbr.ts"
    r = CliRunner().invoke(
        cli, ["media", "synth", "-o", str(out), "--size", "small", "--duration", "1", "--null-padding", "--open-gop"]
    )
    assert r.exit_code == 0, r.output
    assert probe_ts(out.read_bytes()).nulls == json.loads(r.stdout)["null_packets"] > 0


def test_synth_unwritable_output_exit_7(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("x")
    r = CliRunner().invoke(cli, ["media", "synth", "-o", str(blocker / "x.ts"), "--size", "small", "--duration", "1"])
    assert r.exit_code == 7
    assert r.stderr.count("\n") == 1 and "cannot write" in r.stderr and "Traceback" not in r.output


def test_synth_bad_arguments_exit_2(tmp_path: Path) -> None:
    out = str(tmp_path / "x.ts")
    for extra in (["--size", "big"], ["--major", "5000"], ["--tsid", "zz"], ["--channel-name", "MUCH-TOO-LONG"]):
        r = CliRunner().invoke(cli, ["media", "synth", "-o", out, "--duration", "1", *extra])
        assert r.exit_code == 2, (extra, r.output)
    assert not Path(out).exists()
