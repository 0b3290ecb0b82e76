"""`ec-node channels` and the `--broadcast` default of `moq-subscribe` and `relay`.

The stream-id parser is pure; the rest are real `ec-node` processes over QUIC on 127.0.0.1: a leader
(manifests only), an objects-only publisher, and the moq module's own relay in accept mode carrying two
broadcasts. Every process is awaited on its own output and stopped by its context manager.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from ec_node.cli import cli
from ec_node.errors import ExitCode
from ec_node.integrity.keys import generate_key_file
from ec_node.pipeline.channels import ChannelInfo, parse_stream_id

from support.procs import Node, addr_arg

NOBODY = json.dumps({"id": "a" * 64, "addrs": ["127.0.0.1:9"]})

# --- pure ------------------------------------------------------------------------------------------


def test_broadcast_form_stream_id_parses_to_tsid_program_and_call_sign() -> None:
    ident = parse_stream_id(
        "ec/stream/v1/broadcast/atsc/tsid-2049/program-3/callsign-wsyn-hd/profile-passthrough/variant-source"
    )
    assert ident is not None
    assert (ident.form, ident.kind, ident.tsid, ident.program, ident.callsign) == ("broadcast", "atsc", 2049, 3,
                                                                                   "wsyn-hd")  # fmt: skip
    assert ident.to_json() == {"form": "broadcast", "kind": "atsc", "tsid": 2049, "program": 3, "callsign": "wsyn-hd",
                               "profile": "passthrough", "variant": "source"}  # fmt: skip
    assert ident.describe() == "tsid 2049, program 3, call sign wsyn-hd (atsc)"


def test_source_forms_relay_prefixes_and_explicit_ids() -> None:
    hd = parse_stream_id("ec/stream/v1/source/hdhr/device-1234abcd/channel-7.1/profile-passthrough/variant-source")
    assert hd is not None and hd.segments["channel"] == "7.1" and hd.tsid is None
    assert hd.describe() == "hdhr source: device 1234abcd, channel 7.1"
    prefixed = parse_stream_id("anon/ec/stream/v1/broadcast/mpegts/tsid-1/program-1/profile-p/variant-v")
    assert prefixed is not None and (prefixed.tsid, prefixed.program, prefixed.callsign) == (1, 1, None)
    for explicit in ("la-nbc", "ec/stream/v1/broadcast/atsc/tsid-x/program-3", "ec/stream/v1/other/x"):
        assert parse_stream_id(explicit) is None


def test_info_line_labels_the_signer_as_an_untrusted_claim() -> None:
    info = ChannelInfo("b", {"chunks": "silent", "manifests": "served"}, signers=("ab" * 32,), probe_s=2)
    assert info.roles == ["manifests"]
    assert info.line() == (f"b | no ec-node stream id | roles: manifests (chunks: no group within 2 s) | "
                           f"signer (untrusted claim): {'ab' * 32}")  # fmt: skip


# --- the command's own failures ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        ([], "--remote"),
        (["--remote", "not an address"], "endpoint address"),
        (["--remote", NOBODY, "--timeout", "0"], "--timeout"),
        (["--remote", NOBODY, "--bogus"], "--bogus"),
    ],
)
def test_bad_flags_are_one_line_and_exit_2(args: list[str], needle: str) -> None:
    r = CliRunner().invoke(cli, ["channels", *args])
    assert r.exit_code == ExitCode.USAGE, r.output
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ec-node: error: ") and needle in lines[0], r.stderr


def test_unreachable_peer_exits_4_with_one_error_line(tmp_path: Path) -> None:
    with Node(["channels", "--remote", NOBODY, "--connect-timeout", "1"], tmp_path, "channels") as n:
        assert n.wait() == ExitCode.UNREACHABLE
        err = n.stderr()
    errors = [ln for ln in err.splitlines() if ln.startswith("ec-node: error: ")]
    assert len(errors) == 1 and "cannot connect to peer" in errors[0], err
    assert "connecting to" in err and "Traceback" not in err  # it said what it waited for
    assert n.lines == []


# --- real processes ----------------------------------------------------------------------------------


def _publisher(media: Path, cwd: Path, name: str, *extra: str) -> Node:
    return Node(["moq-publish", "--input", str(media), "--linger-ms", "600000", "--json", *extra], cwd, name)


def _until_published(node: Node, counter: str) -> None:
    """Read the publisher's events until it has published a group of ``counter`` (objects | manifests)."""
    while True:
        ev = json.loads(node.next_line())
        if ev.get("event") == "published" and ev[counter] >= 1:
            return


def _channels(cwd: Path, name: str, *args: str) -> tuple[list[str], str]:
    with Node(["channels", *args], cwd, name) as n:
        assert n.wait() == 0, n.stderr()
        return n.lines, n.stderr()


def _identity_of(stream_id: str) -> dict[str, Any]:
    m = re.fullmatch(r"ec/stream/v1/broadcast/atsc/tsid-(\d+)/program-(\d+)/callsign-([a-z0-9-]+)/.*", stream_id)
    assert m, stream_id
    return {"tsid": int(m[1]), "program": int(m[2]), "callsign": m[3]}


@pytest.mark.slow
def test_channels_shows_a_leaders_manifests_and_signer_and_a_publishers_chunks(media_mpeg2, tmp_path):
    leader_file = tmp_path / "leader.json"
    generate_key_file(tmp_path / "leader.key")  # what `ec-node keygen -o` does; a publisher never makes a key
    with (
        _publisher(media_mpeg2, tmp_path, "leader", "--publish-manifests", "--publish-chunks=false",
                   "--signing-key", str(tmp_path / "leader.key"), "--addr-file", str(leader_file)) as a,
        _publisher(media_mpeg2, tmp_path, "objects") as b,
    ):  # fmt: skip
        sa, sb = a.startup(), b.startup()
        _until_published(a, "manifests")
        _until_published(b, "objects")
        want = _identity_of(sa["stream_id"])

        lines, err = _channels(tmp_path, "channels-leader", "--remote", f"@{leader_file}")
        assert "collecting the broadcasts" in err and "reading one group" in err
        assert len(lines) == 1
        line = lines[0]
        assert line.startswith(sa["broadcast"] + " | ")
        assert f"tsid {want['tsid']}, program {want['program']}, call sign {want['callsign']} (atsc)" in line
        assert "| roles: manifests |" in line
        assert line.endswith(f"| signer (untrusted claim): {sa['signer_id']}")

        lines, _ = _channels(tmp_path, "channels-objects", "--remote", addr_arg(sb), "--json")
        assert len(lines) == 1
        info = json.loads(lines[0])
    assert set(info) == {"broadcast", "stream_id", "identity", "roles", "tracks", "signer_id_untrusted",
                         "signer_ids_untrusted", "channel_number", "channel_name", "notes"}  # fmt: skip
    assert info["broadcast"] == info["stream_id"] == sb["broadcast"]
    assert info["identity"] == {"form": "broadcast", "kind": "atsc", **want, "profile": "passthrough",
                                "variant": "source"}  # fmt: skip
    assert info["roles"] == ["chunks"] and info["tracks"] == {"chunks": "served", "manifests": "absent"}
    assert info["signer_id_untrusted"] is None and info["signer_ids_untrusted"] == []
    assert info["channel_number"] is None and info["channel_name"] is None and info["notes"] == []


def _segments(events: list[dict[str, Any]]) -> int:
    end = events[-1]
    assert end["event"] == "end" and end["exit_code"] == 0, events[-3:]
    return int(end["segments"])


@pytest.mark.slow
def test_subscriber_and_relay_need_no_broadcast_with_a_single_broadcast_peer(media_mpeg2, tmp_path):
    pub_file = tmp_path / "pub.json"
    with _publisher(media_mpeg2, tmp_path, "pub", "--addr-file", str(pub_file)) as p:
        sp = p.startup()
        one = sp["broadcast"]
        for name, remote in (("sub-announced", addr_arg(sp)), ("sub-file", f"@{pub_file}")):
            out = tmp_path / name
            with Node(["moq-subscribe", "--remote", remote, "--stop-after", "2", "--output-dir", str(out),
                       "--browser-rendition", "off", "--json"], tmp_path, name) as s:  # fmt: skip
                assert s.wait() == 0, s.stderr()
                events, err = s.events(), s.stderr()
            assert _segments(events) == 2 and len(list(out.glob("segment_*.ts"))) == 2
            subscribed = next(e for e in events if e.get("event") == "subscribed")
            assert subscribed["broadcast"] == subscribed["stream_id"] == one
            if remote.startswith("@"):
                assert f"no --broadcast: using {one!r} from @" in err, err  # the startup object; no announcements
                assert "collecting the broadcasts" not in err
            else:
                assert f"no --broadcast: using {one}, the one broadcast" in err, err
        with Node(["relay", "--remote", addr_arg(sp)], tmp_path, "relay") as r:
            assert r.startup()["broadcast"] == one


def _plain_relay(cwd: Path) -> tuple[Node, str, str]:
    n = Node([], cwd, "plain-relay", argv=[sys.executable, "-m", "ec_node.devkit.plain_relay", "--accept",
                                           "--listen", "127.0.0.1:0"])  # fmt: skip
    ep = n.startup()["endpoint_addr"]
    return n, f"moql://{ep['addrs'][0]}/", ep["cert_sha256"][0]


@pytest.mark.slow
def test_a_relay_with_none_then_several_broadcasts(media_mpeg2, tmp_path):
    relay, url, relay_id = _plain_relay(tmp_path)
    pin = ["--tls-fingerprint", relay_id]
    with relay:
        lines, err = _channels(tmp_path, "channels-empty", "--remote", url, *pin, "--timeout", "1")
        assert lines == [f"no broadcasts announced by {url} within 1 s"], err
        # --realtime: live tracks (the moq origin fan-out cannot relay a track already finished upstream)
        push = ["--realtime", "--relay", url, *pin]
        with (
            _publisher(media_mpeg2, tmp_path, "pub-a", "--broadcast", "alpha", *push) as a,
            _publisher(media_mpeg2, tmp_path, "pub-b", "--broadcast", "beta", *push) as b,
        ):
            sa, _ = a.startup(), b.startup()  # printed once the relay took the push
            _until_published(a, "objects")
            _until_published(b, "objects")
            # (a live track yields a group each chunk, 2 s: --timeout 5 is a bound, the probe ends at the first)
            lines, _ = _channels(tmp_path, "channels-relay", "--remote", url, *pin, "--json", "--timeout", "5")
            infos = {i["broadcast"]: i for i in map(json.loads, lines)}
            assert set(infos) == {"alpha", "beta"}
            for info in infos.values():  # the names say nothing; the objects' headers name the stream
                assert info["stream_id"] == sa["stream_id"] and info["identity"]["form"] == "broadcast"
                assert info["roles"] == ["chunks"]
            with Node(["moq-subscribe", "--remote", url, *pin, "--output-dir", str(tmp_path / "x")],
                      tmp_path, "sub-several") as s:  # fmt: skip
                assert s.wait() == ExitCode.USAGE
                err_lines = [ln for ln in s.stderr().splitlines() if ln.startswith("ec-node: error: ")]
    assert len(err_lines) == 1 and err_lines[0].endswith("; pass --broadcast"), err_lines
    assert re.fullmatch(r"ec-node: error: several broadcasts: (alpha, beta|beta, alpha); pass --broadcast",
                        err_lines[0])  # fmt: skip


def test_non_ascii_digits_in_an_announced_name_are_no_number() -> None:
    """Fuzz finding: "²" passes str.isdigit() but not int(); a peer's name must never crash the listing."""
    for name in ("ec/stream/v1/broadcast/atsc/tsid-²/program-3", "ec/stream/v1/source/7/program-3²"):
        ident = parse_stream_id(name)  # (the fuzzer's crash: int("3²") inside these two calls)
        assert ident is None or ident.tsid is None
        info = ChannelInfo(name, {"chunks": "served"}, stream_id=name, identity=ident)
        assert json.dumps(info.to_json())  # channels --json too
