"""Pushing into a standard relay (moq-relay style): `moq-publish --relay URL`, then `moq-subscribe --remote URL`.

The relay is the `moq` module's own origin fan-out in accept mode (publishers dial in and announce),
checking moq-relay JWTs; everything runs as real processes over QUIC on 127.0.0.1.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from ec_node.devkit.plain_relay import make_token
from ec_node.errors import ExitCode
from ec_node.pipeline.hls import segment_name

from support.procs import Node

pytestmark = pytest.mark.slow
SECRET = b"k" * 32


def _relay(cwd: Path) -> tuple[Node, str, str]:
    key = cwd / "relay.jwtkey"
    key.write_bytes(SECRET)
    os.chmod(key, 0o600)
    n = Node([], cwd, "relay", argv=[sys.executable, "-m", "ec_node.devkit.plain_relay", "--accept",
                                     "--listen", "127.0.0.1:0", "--jwt-key", str(key)])  # fmt: skip
    ep = n.startup()["endpoint_addr"]
    return n, f"moql://{ep['addrs'][0]}/", ep["cert_sha256"][0]


def _token(cwd: Path, name: str, secret: bytes = SECRET, **claims: object) -> Path:
    f = cwd / name
    f.write_text(make_token(secret, **claims) + "\n")  # type: ignore[arg-type]
    os.chmod(f, 0o600)
    return f


@pytest.mark.parametrize("serving", [[], ["--no-listen"]], ids=["listening", "no-listen"])
def test_a_publisher_pushes_into_a_relay_and_a_subscriber_verifies_through_it(media_mpeg2, tmp_path, serving):
    relay, url, relay_id = _relay(tmp_path)
    with relay:
        pub_token = _token(tmp_path, "pub.jwt", put=[""])
        sub_token = _token(tmp_path, "sub.jwt", get=[""])
        pin = ["--tls-fingerprint", relay_id]
        with Node(["moq-publish", "--input", str(media_mpeg2), "--realtime", "--publish-manifests", *serving,
                   "--relay", url, *pin, "--jwt-file", str(pub_token), "--linger-ms", "600000"],
                  tmp_path, "pub") as pub:  # fmt: skip
            start = pub.startup()
            assert start["relays"] == [url]
            assert (start["endpoint_addr"] is None) == bool(serving)  # --no-listen: reachable only via relays
            out = tmp_path / "hls"
            with Node(["moq-subscribe", "--remote", url, *pin, "--jwt-file", str(sub_token), "--broadcast",
                       start["broadcast"], "--require-manifest", "--trust-signer", start["signer_id"],
                       "--max-invalid-chunks", "0", "--stop-after", "3", "--output-dir", str(out),
                       "--browser-rendition", "off", "--json"], tmp_path, "sub") as sub:  # fmt: skip
                assert sub.wait() == 0, sub.stderr()
                events = sub.events()
    segs = [e for e in events if e.get("event") == "segment"]
    assert len(segs) == 3 and all((out / segment_name(e["chunk_index"])).exists() for e in segs)
    for text in (pub.stderr(), sub.stderr(), json.dumps(events)):
        assert "eyJ" not in text  # the tokens never show


def test_a_wrong_token_fails_at_once_with_one_line(media_mpeg2, tmp_path):
    relay, url, relay_id = _relay(tmp_path)
    with relay:
        bad = _token(tmp_path, "bad.jwt", secret=b"x" * 32, put=[""])
        with Node(["moq-publish", "--input", str(media_mpeg2), "--relay", url, "--tls-fingerprint", relay_id,
                   "--jwt-file", str(bad)], tmp_path, "pub") as pub:  # fmt: skip
            assert pub.wait() == ExitCode.CONFIG
    err = pub.stderr().strip().splitlines()
    assert err[-1].startswith("ec-node: error: relay moql://") and "unauthorized" in err[-1], err
    assert "Traceback" not in pub.stderr() and "eyJ" not in pub.stderr()


def test_no_listen_without_a_relay_and_a_bad_advertise_are_usage_errors(media_mpeg2, tmp_path):
    for args, why in (
        (["--no-listen"], "--no-listen needs at least one --relay"),
        (["--advertise", "nohost"], "--advertise"),
    ):
        with Node(["moq-publish", "--input", str(media_mpeg2), *args], tmp_path, "pub") as pub:
            assert pub.wait() == ExitCode.USAGE
        assert why in pub.stderr() and "Traceback" not in pub.stderr()


def test_advertise_replaces_the_addresses_peers_are_given(media_mpeg2, tmp_path):
    with Node(["moq-publish", "--input", str(media_mpeg2), "--listen", "127.0.0.1:0", "--advertise",
               "192.0.2.7:4443", "--advertise", "[2001:db8::7]:4443", "--linger-ms", "600000"],
              tmp_path, "pub") as pub:  # fmt: skip
        assert pub.startup()["endpoint_addr"]["addrs"] == ["192.0.2.7:4443", "[2001:db8::7]:4443"]
