"""`ec-node node --config` end to end: a real node process, the HDHomeRun emulator, MoQ over QUIC.

Everything is real: the emulator on 127.0.0.1 streaming synthetic MPEG-2/AC-3 at real time, the
node as a subprocess publishing (leader + objects) and watching (verifying subscriber) two tuner
channels, a third channel whose guide number the tuner does not have, a SIGHUP that adds a file
channel, and SIGINT. The test waits on the node's own JSON events, never on time.
"""

from __future__ import annotations

import contextlib
import json
import signal
import sys
import textwrap
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from ec_node.devkit.decode import decode
from ec_node.devkit.emulator import HdhrEmulator
from ec_node.devkit.plain_relay import make_token
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
    deadline = time.monotonic() + EVENT_TIMEOUT_S  # a hang guard, even while other events keep coming
    while True:
        try:
            if time.monotonic() > deadline:
                raise TimeoutError(f"not within {EVENT_TIMEOUT_S:g} s")
            line = node.next_line(timeout=max(0.1, deadline - time.monotonic()))
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


# -- four channels: two this node leads, two objects-only, one pushed to a relay --------------------

FOUR = ("7.1", "9.1", "11.1", "13.1")
RELAY_SECRET = b"r" * 32


def _secret_file(path: Path, text: str) -> Path:
    path.write_text(text)
    path.chmod(0o600)
    return path


def _publisher_config(emu: HdhrEmulator, state: Path, tuners: int, channels: str) -> str:
    head = f'[node]\nstate_dir = "{state}"\nhttp = "127.0.0.1:0"\n\n'
    head += f'[tuner]\ndevice = "hdhr://127.0.0.1:{emu.http_port}"\ntuners = {tuners}\n'
    return head + textwrap.dedent(channels)


def _channel(key: str, value: str, *lines: str) -> str:
    """One [[channel]] table: ``key`` (guide_number or name) and its other lines."""
    return f'\n[[channel]]\n{key} = "{value}"\n' + "".join(f"{line}\n" for line in lines)


def _tuned(gn: str, *lines: str) -> str:
    return _channel("guide_number", gn, *lines)


def _named(name: str, *lines: str) -> str:
    return _channel("name", name, *lines)


def _live(node: Node, channels: set[str], role: str, what: str) -> None:
    """Wait until each of ``channels`` has a live ``role`` (no channel may stop meanwhile)."""
    left = set(channels)
    while left:
        ev = _until(node, lambda e: e.get("event") in ("live", "channel_stopped"), what)
        assert ev["event"] == "live", ev
        if ev["role"] == role:
            left.discard(ev["channel"])


def _segments_from(node: Node, channels: set[str], what: str) -> None:
    """Wait until each of ``channels`` has written one more verified segment."""
    left = set(channels)
    while left:
        ev = _until(node, lambda e: e.get("event") == "segment" and e.get("channel") in left, what)
        left.discard(ev["channel"])


def _stopped(node: Node, channel: str) -> list[dict[str, Any]]:
    return [e for e in node.events() if e.get("event") == "channel_stopped" and e.get("channel") == channel]


def _only_join_rejections(node: Node, channel: str) -> None:
    """Nothing of ``channel`` was refused but history older than its first segment, at the join.

    A viewer joining with history may get an old chunk, then a later manifest before that chunk's own:
    it waits a reorder window for the older manifest, and if that does not come starts at the first chunk
    it can verify and drops the older one as ``stale`` (its place in the output has passed). That is the
    only refusal a healthy channel may show; never ``no_manifest``, which would be the leader's silence.
    """
    events = [e for e in node.events() if e.get("channel") == channel]
    first = min(e["chunk_index"] for e in events if e.get("event") == "segment")
    refused = [e for e in events if e.get("event") == "rejected"]
    assert all(e["reason"] == "stale" and e["chunk_index"] < first for e in refused), (channel, first, refused)


def _json(url: str) -> Any:
    return json.loads(_get(url)[1])


def test_four_channels_a_lost_signal_stays_in_its_channel_and_a_reload_adds_one(
    media_mpeg2: Path, tmp_path: Path
) -> None:
    """Node A (under test) runs 7.1 and 9.1 as leader + objects (7.1 also pushed into a standard relay,
    pinned, with a token) and 11.1 and 13.1 objects-only, whose manifests another node (B: leader-only
    channels, its own key) signs. A subscriber node (C: watch-only channels) verifies all four: 7.1
    through the relay, the others from A directly, 11.1 and 13.1 against B's manifests. The tuner then
    loses 9.1's signal: only 9.1 fails and is retried (status and metrics say so) while the other
    channels' viewers go on; with its signal back 9.1 is live again and so is its viewer. A SIGHUP then
    adds 15.1 (verified by a moq-subscribe) without restarting any other channel."""
    with contextlib.ExitStack() as stack:
        emu = stack.enter_context(
            HdhrEmulator(media_mpeg2, tuners=8, channels=[(gn, f"CH{gn}") for gn in (*FOUR, "15.1")])
        )
        key_a, key_b = tmp_path / "a.key", tmp_path / "b.key"
        signer_a, signer_b = generate_key_file(key_a), generate_key_file(key_b)
        relay_key = _secret_file(tmp_path / "relay.jwtkey", RELAY_SECRET.decode())
        put = _secret_file(tmp_path / "put.jwt", make_token(RELAY_SECRET, put=[""]))
        get = _secret_file(tmp_path / "get.jwt", make_token(RELAY_SECRET, get=[""]))
        relay = stack.enter_context(
            Node(
                [],
                tmp_path,
                "relay",
                argv=[
                    sys.executable,
                    "-m",
                    "ec_node.devkit.plain_relay",
                    "--accept",
                    "--listen",
                    "127.0.0.1:0",
                    "--jwt-key",
                    str(relay_key),
                ],
            )  # fmt: skip
        )
        ep = relay.startup()["endpoint_addr"]
        relay_url, pin = f"moql://{ep['addrs'][0]}/", ep["cert_sha256"][0]
        state_a, state_b, state_c = tmp_path / "a", tmp_path / "b", tmp_path / "c"

        def addr(state: Path, gn: str) -> str:
            return f"@{state / gn / 'publisher.json'}"

        # B: the leader of 11.1 and 13.1 (manifests only, its own key)
        cfg_b = tmp_path / "b.toml"
        leader_b = f'roles = ["leader"]\nsigning_key = "{key_b}"'
        cfg_b.write_text(_publisher_config(emu, state_b, 2, _tuned("11.1", leader_b) + _tuned("13.1", leader_b)))
        node_b = stack.enter_context(Node(["node", "--config", str(cfg_b), "--json"], tmp_path, "node-b"))
        # A: the node under test
        leads = f'roles = ["leader", "objects"]\nsigning_key = "{key_a}"'
        pinned = f'tls_fingerprint = "{pin}"'
        four = (
            _tuned("7.1", leads, f'push = ["{relay_url}"]', f'jwt_file = "{put}"', pinned)
            + _tuned("9.1", leads)
            + _tuned("11.1", 'roles = ["objects"]')
            + _tuned("13.1", 'roles = ["objects"]')
        )
        cfg_a = tmp_path / "a.toml"
        cfg_a.write_text(_publisher_config(emu, state_a, 5, four))
        node_a = stack.enter_context(Node(["node", "--config", str(cfg_a), "--json"], tmp_path, "node-a"))
        base = _until(node_a, lambda e: e.get("event") == "node_started", "A started")["http"]
        _live(node_b, {"11.1", "13.1"}, "publisher", "B's leaders live")
        _live(node_a, set(FOUR), "publisher", "A's publishers live")

        # C: one verifying viewer per channel
        watch = 'roles = ["watch"]'
        trust_a, trust_b = f'trust_signer = "{signer_a}"', f'trust_signer = "{signer_b}"'
        cfg_c = tmp_path / "c.toml"
        cfg_c.write_text(
            f'[node]\nstate_dir = "{state_c}"\nhttp = "127.0.0.1:0"\n'
            + _named("7.1", watch, f'remotes = ["{relay_url}"]', f'jwt_file = "{get}"', pinned, trust_a)
            + _named("9.1", watch, f'remotes = ["{addr(state_a, "9.1")}"]', trust_a)
            + "".join(
                _named(gn, watch, f'remotes = ["{addr(state_a, gn)}"]', f'remote_manifests = "{addr(state_b, gn)}"',
                       trust_b)
                for gn in ("11.1", "13.1")
            )
        )  # fmt: skip
        node_c = stack.enter_context(Node(["node", "--config", str(cfg_c), "--json"], tmp_path, "node-c"))
        base_c = _until(node_c, lambda e: e.get("event") == "node_started", "C started")["http"]
        _live(node_c, set(FOUR), "watch", "every viewer live")
        status_c = _json(base_c + "/status")
        for gn in FOUR:  # all four verified end to end: segments that decode, nothing rejected
            c = status_c["channels"][gn]
            assert c["state"] == "live" and c["segments"] >= 1, (gn, c)
            _only_join_rejections(node_c, gn)
            first = sorted((state_c / gn / "hls").glob("segment_*.ts"))[0]
            assert decode(first.read_bytes()).video_frames > 0, gn
        joined_rejections = {gn: status_c["channels"][gn]["rejected"] for gn in FOUR}
        links = status_c["channels"]["7.1"]["peers"]["links"]
        assert {(link["peer"], link["track"]) for link in links} == {(relay_url, "chunks"), (relay_url, "manifests")}

        # the tuner loses 9.1's signal: only 9.1 fails, and waits to be retried
        assert emu.take_off_air("9.1") == 1
        failed = _until(node_a, lambda e: e.get("event") == "channel_stopped", "9.1 failing")
        assert failed["channel"] == "9.1" and failed["outcome"] == "failed" and failed["retry_in_s"] > 0, failed
        assert "no signal on channel 9.1" in failed["error"] and "807" in failed["error"], failed
        status = _json(base + "/status")
        metrics = _get(base + "/metrics")[1].decode()
        assert status["channels"]["9.1"]["state"] != "live" and "807" in status["channels"]["9.1"]["last_error"]
        assert _metric(metrics, "ec_node_channel_live", "9.1") == 0
        for gn in ("7.1", "11.1", "13.1"):
            assert status["channels"][gn]["state"] == "live" and status["channels"][gn]["starts"] == 1, gn
            assert _metric(metrics, "ec_node_channel_live", gn) == 1
        # ... while the other channels' viewers go on writing verified segments
        _segments_from(node_c, {"7.1", "11.1", "13.1"}, "the other viewers' segments during the fault")

        # the signal is back: 9.1 runs again, and its viewer writes segments again
        emu.put_on_air("9.1")
        _until(node_a, lambda e: e.get("event") == "live" and e["channel"] == "9.1", "9.1 live again")
        _segments_from(node_c, {"9.1"}, "9.1's viewer back")
        status = _json(base + "/status")
        metrics = _get(base + "/metrics")[1].decode()
        restarts = status["channels"]["9.1"]["starts"]
        assert status["channels"]["9.1"]["state"] == "live" and restarts >= 2
        assert _metric(metrics, "ec_node_channel_starts_total", "9.1") == restarts
        for gn in FOUR:
            assert _metric(metrics, "ec_node_channel_live", gn) == 1
            assert _metric(metrics, "ec_node_published_chunks_total", gn) >= 1
        for gn in ("7.1", "11.1", "13.1"):
            assert _metric(metrics, "ec_node_channel_starts_total", gn) == 1 and _stopped(node_a, gn) == []
        assert status["channels"]["7.1"]["publisher"]["manifests"] >= 1
        assert status["channels"]["11.1"]["publisher"]["manifests"] == 0  # objects only

        # SIGHUP adds 15.1: it starts and is verified; no other channel is restarted
        cfg_a.write_text(_publisher_config(emu, state_a, 5, four + _tuned("15.1", leads)))
        node_a.proc.send_signal(signal.SIGHUP)
        reloaded = _until(node_a, lambda e: e.get("event") in ("reloaded", "reload_failed"), "reloaded")
        assert reloaded["event"] == "reloaded", reloaded
        assert reloaded["added"] == ["15.1"] and reloaded["changed"] == [] and reloaded["removed"] == []
        assert set(reloaded["kept"]) == set(FOUR)
        _until(node_a, lambda e: e.get("event") == "live" and e["channel"] == "15.1", "15.1 live")
        start = json.loads((state_a / "15.1" / "publisher.json").read_text())
        out = tmp_path / "hls-15.1"
        with Node(["moq-subscribe", "--remote", json.dumps(start["endpoint_addr"]), "--broadcast", start["broadcast"],
                   "--require-manifest", "--trust-signer", signer_a, "--max-invalid-chunks", "0",
                   "--stop-after", "2", "--output-dir", str(out), "--browser-rendition", "off", "--json"],
                  tmp_path, "sub-15.1") as sub:  # fmt: skip
            assert sub.wait() == ExitCode.OK, sub.stderr()[-4000:]
        segs = sorted(out.glob("segment_*.ts"))
        assert len(segs) == 2 and all(decode(s.read_bytes()).video_frames > 0 for s in segs)
        _segments_from(node_c, set(FOUR), "every viewer after the reload")
        status = _json(base + "/status")
        assert status["channels"]["15.1"]["state"] == "live" and status["channels"]["9.1"]["starts"] == restarts
        for gn in ("7.1", "11.1", "13.1"):
            assert status["channels"][gn]["starts"] == 1 and _stopped(node_a, gn) == [], gn
        status_c = _json(base_c + "/status")
        for gn in ("7.1", "11.1", "13.1"):  # the unfaulted channels' viewers never restarted
            c = status_c["channels"][gn]
            assert c["starts"] == 1 and _stopped(node_c, gn) == [], (gn, c)
            assert c["rejected"] == joined_rejections[gn], (gn, c)  # nothing refused after the join

        for node in (node_c, node_a, node_b):
            node.proc.send_signal(signal.SIGINT)
            assert node.wait() == ExitCode.OK, node.stderr()[-4000:]
            assert "Traceback" not in node.stderr()
        assert emu.wait_tuners_free(timeout=30)
