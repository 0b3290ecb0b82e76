"""`ec-node hdhr ...` and `ec-node hdhr-emulator`: output, exit codes, one-line errors."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from ec_node.cli import cli
from ec_node.devkit.emulator import HdhrEmulator
from ec_node.ts.packets import PACKET_SIZE


@pytest.fixture
def emu(hdhr_media: Path) -> Iterator[HdhrEmulator]:
    with HdhrEmulator(hdhr_media, serve_speed=0) as e:
        yield e


def run(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args))


def one_error_line(r: Result) -> str:
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ec-node: error: "), r.stderr
    assert "Traceback" not in r.stderr
    assert r.exception is None or isinstance(r.exception, SystemExit)
    return lines[0]


def test_capture_writes_ts_and_prints_summary(emu: HdhrEmulator, tmp_path: Path) -> None:
    out = tmp_path / "cap.ts"
    r = run("hdhr", "capture", f"127.0.0.1:{emu.http_port}", "7.1", "--duration", "2", "-o", str(out))
    assert r.exit_code == 0, r.stderr
    summary = json.loads(r.stdout.strip())
    assert summary["bytes"] == out.stat().st_size > 0
    assert out.stat().st_size % PACKET_SIZE == 0
    assert summary["resource"] == "tuner0" and summary["device_id"] == "1FA4E002"
    assert out.read_bytes()[0] == 0x47
    assert list(tmp_path.iterdir()) == [out]  # no temp file left


def test_lineup_and_discover_commands(emu: HdhrEmulator) -> None:
    r = run("hdhr", "lineup", f"127.0.0.1:{emu.http_port}")
    assert r.exit_code == 0, r.stderr
    entries = [json.loads(line) for line in r.stdout.splitlines()]
    assert entries[0]["GuideNumber"] == "7.1" and entries[0]["HD"] == 1
    r = run("hdhr", "discover", "--target", "127.0.0.1", "--port", str(emu.discover_port), "--timeout", "1")
    assert r.exit_code == 0, r.stderr
    dev = json.loads(r.stdout)
    assert dev["DeviceID"] == "1FA4E002" and dev["DeviceIDValid"] is True and dev["BaseURL"] == emu.base_url


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_capture_unreachable_exit_4(tmp_path: Path) -> None:
    out = tmp_path / "x.ts"
    r = run("hdhr", "capture", f"127.0.0.1:{closed_port()}", "7.1", "--duration", "1", "-o", str(out))
    assert r.exit_code == 4
    assert "unreachable" in one_error_line(r)
    assert not out.exists()


def test_capture_not_hdhomerun_exit_4(emu: HdhrEmulator, tmp_path: Path) -> None:
    r = run("hdhr", "lineup", f"127.0.0.1:{emu.stream_port}")
    assert r.exit_code == 4 and "not an HDHomeRun" in one_error_line(r)


def test_capture_unknown_channel_exit_6(emu: HdhrEmulator, tmp_path: Path) -> None:
    out = tmp_path / "x.ts"
    r = run("hdhr", "capture", f"127.0.0.1:{emu.http_port}", "9.9", "--duration", "1", "-o", str(out))
    assert r.exit_code == 6 and "unknown channel" in one_error_line(r)
    assert list(tmp_path.iterdir()) == []


def test_capture_all_busy_exit_5(hdhr_media: Path, tmp_path: Path) -> None:
    with HdhrEmulator(hdhr_media, serve_speed=0, busy_for_s=600) as e:
        r = run(
            "hdhr", "capture", f"127.0.0.1:{e.http_port}", "7.1", "--duration", "1", "-o", str(tmp_path / "x.ts"),
            "--busy-retries", "1", "--backoff", "0.01",
        )  # fmt: skip
    assert r.exit_code == 5 and "805" in one_error_line(r)
    assert list(tmp_path.iterdir()) == []


def test_capture_no_signal_exit_6(hdhr_media: Path, tmp_path: Path) -> None:
    with HdhrEmulator(hdhr_media, serve_speed=0, tune_error=807) as e:
        r = run("hdhr", "capture", f"127.0.0.1:{e.http_port}", "7.1", "--duration", "1", "-o", str(tmp_path / "x.ts"))
    assert r.exit_code == 6 and "no signal" in one_error_line(r)


def test_capture_unwritable_output_exit_7(emu: HdhrEmulator, tmp_path: Path) -> None:
    out = tmp_path / "missing-dir" / "x.ts"
    r = run("hdhr", "capture", f"127.0.0.1:{emu.http_port}", "7.1", "--duration", "1", "-o", str(out))
    assert r.exit_code == 7 and "cannot write output" in one_error_line(r)
    assert emu.tuners_in_use() == 0  # failed before a tuner was taken


@pytest.mark.parametrize(
    "args",
    [
        ["hdhr", "capture", "h", "7.1", "-o", "x.ts"],  # no --duration
        ["hdhr", "capture", "h", "7.1", "--duration", "0", "-o", "x.ts"],
        ["hdhr", "capture", "h", "7.1", "--duration", "abc", "-o", "x.ts"],
        ["hdhr", "capture", "h:notaport", "7.1", "--duration", "1", "-o", "x.ts"],
        ["hdhr-emulator"],  # no --media
        ["hdhr-emulator", "--media", "x.ts", "--device-id", "12345678"],
        ["hdhr-emulator", "--media", "x.ts", "--channel", "seven"],
    ],
)
def test_usage_errors_exit_2(args: list[str], tmp_path: Path, hdhr_media: Path) -> None:
    args = [str(hdhr_media) if a == "x.ts" and args[0] == "hdhr-emulator" else a for a in args]
    r = run(*args)
    assert r.exit_code == 2, (r.stdout, r.stderr)
    assert "Traceback" not in r.stderr


def test_emulator_bad_media_exit_3(tmp_path: Path) -> None:
    bad = tmp_path / "bad.ts"
    bad.write_bytes(b"\x00" * 5000)
    r = run("hdhr-emulator", "--media", str(bad))
    assert r.exit_code == 3 and "transport stream" in one_error_line(r)


def test_emulator_process_serves_and_exits_0_on_sigterm(hdhr_media: Path, tmp_path: Path) -> None:
    exe = Path(sys.executable).with_name("ec-node")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-c", "from ec_node.cli import main; main()"]
    proc = subprocess.Popen(
        [*cmd, "hdhr-emulator", "--media", str(hdhr_media), "--serve-speed", "0", "--tuners", "1",
         "--channel", "7.1=WSYN-HD"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        ready = json.loads(proc.stdout.readline())
        assert ready["event"] == "ready" and ready["tuners"] == 1
        out = tmp_path / "cap.ts"
        r = run("hdhr", "capture", f"127.0.0.1:{ready['http_port']}", "7.1", "--duration", "1", "-o", str(out))
        assert r.exit_code == 0, r.stderr
        assert out.stat().st_size % PACKET_SIZE == 0 and out.stat().st_size > 0
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
