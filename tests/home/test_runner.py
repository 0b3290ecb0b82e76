"""`ec-node node --config` end to end: a real node process, the HDHomeRun emulator, MoQ over QUIC.

Everything is real: the emulator on 127.0.0.1 streaming synthetic MPEG-2/AC-3 at real time, the
node as a subprocess publishing (leader + objects) and watching (verifying subscriber) two tuner
channels, a third channel whose guide number the tuner does not have, a SIGHUP that adds a file
channel, and SIGINT. The test waits on the node's own JSON events, never on time.
"""

from __future__ import annotations

import json
import signal
import textwrap
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from ec_node.devkit.decode import decode
from ec_node.devkit.emulator import HdhrEmulator
from ec_node.errors import ExitCode
from ec_node.integrity.keys import generate_key_file

from support.procs import Node

pytestmark = pytest.mark.slow

EVENT_TIMEOUT_S = 90.0  # a hang guard only


@pytest.fixture
def emulator(media_mpeg2: Path) -> Iterator[HdhrEmulator]:
    with HdhrEmulator(media_mpeg2, tuners=3, channels=[("7.1", "WSYN-HD"), ("9.1", "WXYZ")]) as emu:
        yield emu


def _config(emu: HdhrEmulator, tmp: Path, key: Path, extra: str = "") -> str:
    return textwrap.dedent(
        f"""
        [node]
        state_dir = "{tmp / "state"}"
        http = "127.0.0.1:0"

        [tuner]
        device = "hdhr://127.0.0.1:{emu.http_port}"
        tuners = 3

        [defaults]
        signing_key = "{key}"

        [[channel]]
        guide_number = "7.1"
        roles = ["leader", "objects", "watch"]

        [[channel]]
        guide_number = "9.1"
        roles = ["leader", "objects", "watch"]

        [[channel]]
        guide_number = "5.1"    # not in the tuner's lineup: this channel fails and is retried
        roles = ["objects"]
        """
    ) + textwrap.dedent(extra)


def _until(node: Node, pred: Callable[[dict[str, Any]], bool], what: str) -> dict[str, Any]:
    """The next node event matching ``pred`` (every event is kept in node.lines)."""
    while True:
        try:
            line = node.next_line(timeout=EVENT_TIMEOUT_S)
        except Exception as e:
            raise AssertionError(f"no {what}: {e}; stderr:\n{node.stderr()[-4000:]}") from None
        if line.startswith("{"):
            ev = json.loads(line)
            if pred(ev):
                return ev


def _get(url: str) -> tuple[str, bytes]:
    with urllib.request.urlopen(url, timeout=10) as r:
        return r.headers.get("Content-Type", ""), r.read()


def _metric(text: str, name: str, channel: str) -> float:
    for line in text.splitlines():
        if line.startswith(f'{name}{{channel="{channel}"') and not line.startswith("#"):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"no {name} for {channel} in /metrics:\n{text}")


def test_node_runs_two_tuner_channels_survives_a_faulty_one_reloads_and_stops(
    emulator: HdhrEmulator, media_mpeg2: Path, tmp_path: Path
) -> None:
    key = tmp_path / "leader.key"
    signer = generate_key_file(key)
    cfg = tmp_path / "node.toml"
    cfg.write_text(_config(emulator, tmp_path, key))
    with Node(["node", "--config", str(cfg), "--json"], tmp_path, "node") as node:
        started = _until(node, lambda e: e.get("event") == "node_started", "node_started")
        base = started["http"]
        assert started["channels"] == ["7.1", "9.1", "5.1"] and started["tuners"] == 3

        # both tuner channels publish and write verified segments; the faulty one fails and waits to retry
        live: set[str] = set()
        failed: dict[str, Any] | None = None
        while live != {"7.1", "9.1"} or failed is None:
            ev = _until(node, lambda e: e.get("event") in ("live", "channel_stopped"), "both channels live")
            if ev["event"] == "live" and ev["role"] == "watch":
                live.add(ev["channel"])
            elif ev["event"] == "channel_stopped":
                assert ev["channel"] == "5.1", ev  # only the faulty channel ever stops
                assert ev["outcome"] == "failed" and "5.1" in ev["error"] and ev["retry_in_s"] > 0
                failed = ev

        ctype, body = _get(base + "/status")
        assert ctype.startswith("application/json")
        status = json.loads(body)
        for ch in ("7.1", "9.1"):
            c = status["channels"][ch]
            assert c["state"] == "live" and c["starts"] == 1 and c["tuner"] is not None
            assert c["publisher"]["chunks"] >= 1 and c["publisher"]["manifests"] >= 1
            assert c["publisher"]["signer_id"] == signer
            assert c["segments"] >= 1 and c["rejected"] == {} and c["peers"]["up"] >= 1
            assert c["latency_ms"] is not None
        bad = status["channels"]["5.1"]
        assert bad["state"] in ("retrying", "running", "starting") and "5.1" in bad["last_error"]
        assert status["node"]["rss_mb"] > 0 and status["node"]["tuners"] == 3

        ctype, body = _get(base + "/metrics")
        assert ctype.startswith("text/plain")
        metrics = body.decode()
        for ch in ("7.1", "9.1"):
            assert _metric(metrics, "ec_node_segments_total", ch) >= 1
            assert _metric(metrics, "ec_node_published_chunks_total", ch) >= 1
            assert _metric(metrics, "ec_node_channel_live", ch) == 1
        assert _metric(metrics, "ec_node_channel_live", "5.1") == 0
        assert "ec_node_resident_memory_bytes" in metrics

        # what the watchers wrote is verified HLS that decodes
        for ch in ("7.1", "9.1"):
            hls = tmp_path / "state" / ch / "hls"
            assert (hls / "index.m3u8").is_file() and (tmp_path / "state" / ch / "publisher.json").is_file()
            first = sorted(hls.glob("segment_*.ts"))[0]
            assert decode(first.read_bytes()).video_frames > 0

        # SIGHUP with a broken file: refused in one line, the running config kept
        cfg.write_text(_config(emulator, tmp_path, key, '[[channel]]\nname = "x"\nroles = ["relay"]\n'))
        node.proc.send_signal(signal.SIGHUP)
        refused = _until(node, lambda e: e.get("event") in ("reloaded", "reload_failed"), "reload_failed")
        assert refused["event"] == "reload_failed" and f"{cfg}: channel[4] (x).remotes: relay needs" in refused["error"]

        # SIGHUP with one more channel (a file): it starts; the others keep running untouched
        cfg.write_text(
            _config(
                emulator,
                tmp_path,
                key,
                f"""
                [[channel]]
                name = "file"
                input = "{media_mpeg2}"
                roles = ["leader", "objects", "watch"]
                """,
            )
        )
        node.proc.send_signal(signal.SIGHUP)
        reloaded = _until(node, lambda e: e.get("event") in ("reloaded", "reload_failed"), "reloaded")
        assert reloaded["event"] == "reloaded", reloaded
        assert reloaded["added"] == ["file"] and reloaded["changed"] == [] and reloaded["removed"] == []
        assert set(reloaded["kept"]) == {"7.1", "9.1", "5.1"}
        _until(node, lambda e: e.get("event") == "live" and e["channel"] == "file" and e["role"] == "watch", "file")
        # the unchanged channels go on writing segments in the same run
        _until(node, lambda e: e.get("event") == "segment" and e["channel"] == "7.1", "a 7.1 segment after the reload")
        status = json.loads(_get(base + "/status")[1])
        assert status["channels"]["7.1"]["starts"] == 1 and status["channels"]["9.1"]["starts"] == 1
        assert status["channels"]["file"]["segments"] >= 1
        restarts = [e for e in node.events() if e.get("event") == "channel_started" and e["channel"] in ("7.1", "9.1")]
        assert len(restarts) == 2

        # SIGINT stops everything: exit 0, every tuner released
        node.proc.send_signal(signal.SIGINT)
        assert node.wait() == ExitCode.OK, node.stderr()[-4000:]
        assert node.events()[-1]["event"] == "node_stopped"
        assert emulator.wait_tuners_free(timeout=30)
        assert "Traceback" not in node.stderr()


def test_a_bad_config_is_one_line_and_exit_2(tmp_path: Path) -> None:
    cfg = tmp_path / "node.toml"
    cfg.write_text('[[channel]]\nguide_number = "7.1"\nroles = ["leeder"]\n')
    with Node(["node", "--config", str(cfg)], tmp_path, "bad") as node:
        assert node.wait() == ExitCode.USAGE
        err = node.stderr().strip().splitlines()
        assert err == [f"ec-node: error: {cfg}: channel[1] (7.1).roles: unknown role 'leeder' "
                       "(expected leader, objects, relay, watch)"]  # fmt: skip
    with Node(["node", "--config", str(tmp_path / "missing.toml")], tmp_path, "missing") as node:
        assert node.wait() == ExitCode.USAGE
        assert "no such config file" in node.stderr() and "Traceback" not in node.stderr()


def test_a_missing_signing_key_is_a_config_error(tmp_path: Path) -> None:
    cfg = tmp_path / "node.toml"
    cfg.write_text(
        f'[[channel]]\ninput = "x.ts"\nroles = ["leader"]\nsigning_key = "{tmp_path / "nokey"}"\n'
        f'[node]\nstate_dir = "{tmp_path / "s"}"\n'
    )
    with Node(["node", "--config", str(cfg)], tmp_path, "nokey") as node:
        assert node.wait() == ExitCode.CONFIG
        assert "ec-node keygen -o" in node.stderr() and "Traceback" not in node.stderr()


def test_init_writes_a_config_from_the_emulator(emulator: HdhrEmulator, tmp_path: Path) -> None:
    out = tmp_path / "node.toml"
    with Node(
        ["node", "--init", "--device", f"hdhr://127.0.0.1:{emulator.http_port}", "-o", str(out)], tmp_path, "init"
    ) as node:
        assert node.wait() == ExitCode.OK, node.stderr()
    text = out.read_text()
    assert f'device = "hdhr://127.0.0.1:{emulator.http_port}"' in text and "tuners = 3" in text
    assert 'guide_number = "7.1"' in text and 'guide_number = "9.1"' in text
    with Node(["node", "--init", "--target", f"127.0.0.1:{emulator.discover_port}"], tmp_path, "init2") as node:
        assert node.wait() == ExitCode.OK, node.stderr()
        assert "".join(node.lines) == "".join(text.splitlines())
    with Node(["node", "--init", "--device", "hdhr://127.0.0.1:1", "-o", str(out)], tmp_path, "init3") as node:
        assert node.wait() == ExitCode.OUTPUT and "exists" in node.stderr()
