"""The startup object: written and read in one place."""

from __future__ import annotations

import dataclasses
import io
import json
from pathlib import Path
from typing import Any

import pytest

from ec_node.errors import UsageError
from ec_node.pipeline.startup import StartupObject, broadcast_from_startup, listener_event_level, read_startup_file
from ec_node.transport.addr import EndpointAddr

ADDR = EndpointAddr(id="a" * 64, addrs=("127.0.0.1:1",))


def test_round_trip_through_the_addr_file_and_the_startup_line(tmp_path: Path) -> None:
    s = StartupObject(ADDR, "B", "S", ("chunks", "manifests"), None)
    out = io.StringIO()
    s.announce(out, tmp_path / "node.json")
    line = json.loads(out.getvalue())
    assert list(line) == ["endpoint_addr", "broadcast", "stream_id", "tracks", "signer_id"]
    assert json.loads((tmp_path / "node.json").read_text()) == line
    assert read_startup_file(tmp_path / "node.json") == s
    (tmp_path / "log.jsonl").write_text(out.getvalue() + '{"event": "published"}\n')  # a JSON-lines log
    assert read_startup_file(tmp_path / "log.jsonl") == s


def test_broadcast_defaults_from_a_startup_file(tmp_path: Path) -> None:
    f = tmp_path / "leader.json"
    f.write_text(json.dumps(StartupObject(ADDR, "B", "S", ("chunks",)).to_json()))
    assert broadcast_from_startup(f"@{f}") == "B"
    with pytest.raises(UsageError, match="--broadcast"):
        broadcast_from_startup(json.dumps(ADDR.to_json()))
    f.write_text(json.dumps(ADDR.to_json()))  # an address, not a startup object
    with pytest.raises(UsageError, match="--broadcast"):
        broadcast_from_startup(f"@{f}")


@pytest.mark.parametrize("bad", [[], {"broadcast": ""}, {"endpoint_addr": None, "broadcast": "B"}])
def test_not_a_startup_object(bad: object) -> None:
    with pytest.raises(UsageError):
        StartupObject.from_json(bad)


class _FakeListener:
    """Just what ``follow`` touches: the listener's current address and its event hook."""

    def __init__(self) -> None:
        self.endpoint_addr = dataclasses.replace(ADDR, cert_sha256=("b" * 64, "c" * 64))
        self.on_event: Any = None


def test_a_rotation_rewrites_the_addr_file_with_the_new_hashes(tmp_path: Path) -> None:
    listener = _FakeListener()
    s = StartupObject(listener.endpoint_addr, "B", "S", ("chunks",))
    s.announce(io.StringIO(), tmp_path / "node.json")
    seen: list[dict[str, Any]] = []
    s.follow(listener, tmp_path / "node.json", seen.append)  # type: ignore[arg-type]
    listener.on_event({"event": "subscriber_refused", "detail": "cap"})
    assert read_startup_file(tmp_path / "node.json").endpoint_addr.cert_sha256 == ("b" * 64, "c" * 64)
    listener.endpoint_addr = dataclasses.replace(ADDR, cert_sha256=("c" * 64, "d" * 64))
    listener.on_event({"event": "cert_rotated", "cert_sha256": ["c" * 64, "d" * 64]})
    assert read_startup_file(tmp_path / "node.json") == dataclasses.replace(s, endpoint_addr=listener.endpoint_addr)
    assert [e["event"] for e in seen] == ["subscriber_refused", "cert_rotated"]
    assert [listener_event_level(e) for e in seen] == ["warning", "info"]
