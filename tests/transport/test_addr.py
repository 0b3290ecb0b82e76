"""EndpointAddr parsing: every accepted form, and one AddressError for anything malformed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ec_node.transport.addr import AddressError, EndpointAddr, parse_endpoint_addr, parse_host_port

ID = "ab" * 32


def test_json_object_form() -> None:
    addr = parse_endpoint_addr(json.dumps({"id": ID, "addrs": ["127.0.0.1:4443", "[::1]:4443", "node.lan:9"]}))
    assert addr == EndpointAddr(id=ID, addrs=("127.0.0.1:4443", "[::1]:4443", "node.lan:9"))


def test_id_is_normalised_to_lowercase_and_duplicates_dropped() -> None:
    addr = parse_endpoint_addr(json.dumps({"id": ID.upper(), "addrs": ["127.0.0.1:1", "127.0.0.1:1"]}))
    assert addr.id == ID
    assert addr.addrs == ("127.0.0.1:1",)


def test_iroh_serde_addrs_ip_kept_relay_skipped() -> None:
    text = json.dumps({"id": ID, "addrs": [{"Relay": "https://relay.example/"}, {"Ip": "10.0.0.2:7"}]})
    assert parse_endpoint_addr(text).addrs == ("10.0.0.2:7",)


def test_to_arg_round_trips() -> None:
    addr = EndpointAddr(id=ID, addrs=("127.0.0.1:5", "[::1]:6"))
    assert parse_endpoint_addr(addr.to_arg()) == addr
    assert addr.to_json() == {"id": ID, "addrs": ["127.0.0.1:5", "[::1]:6"]}
    url = parse_endpoint_addr("https://relay.example.com/ec")
    assert parse_endpoint_addr(url.to_arg()) == url


@pytest.mark.parametrize(
    "url",
    ["moql://127.0.0.1:4443", "moqt://[::1]:4443", "https://relay.example.com", "https://relay.example.com:8443/a/b"],
)
def test_url_forms(url: str) -> None:
    addr = parse_endpoint_addr(url)
    assert addr.url == url
    assert addr.id is None and addr.addrs == ()


def test_at_path_plain_json(tmp_path: Path) -> None:
    f = tmp_path / "peer.json"
    f.write_text(json.dumps({"id": ID, "addrs": ["127.0.0.1:1"]}))
    assert parse_endpoint_addr(f"@{f}") == EndpointAddr(id=ID, addrs=("127.0.0.1:1",))


def test_at_path_startup_object(tmp_path: Path) -> None:
    f = tmp_path / "startup.json"
    f.write_text(json.dumps({"event": "listening", "endpoint_addr": {"id": ID, "addrs": ["127.0.0.1:2"]}}))
    assert parse_endpoint_addr(f"@{f}").addrs == ("127.0.0.1:2",)


def test_at_path_startup_object_with_string_value(tmp_path: Path) -> None:
    f = tmp_path / "startup.json"
    inner = json.dumps({"id": ID, "addrs": ["127.0.0.1:3"]})
    f.write_text(json.dumps({"endpoint_addr": inner, "broadcast_name": "x"}))
    assert parse_endpoint_addr(f"@{f}").addrs == ("127.0.0.1:3",)


def test_at_path_json_lines_uses_first_line(tmp_path: Path) -> None:
    f = tmp_path / "stdout.jsonl"
    first = json.dumps({"endpoint_addr": {"id": ID, "addrs": ["127.0.0.1:4"]}})
    f.write_text("\n" + first + "\n" + json.dumps({"progress": 1}) + "\n")
    assert parse_endpoint_addr(f"@{f}").addrs == ("127.0.0.1:4",)


def _write(tmp_path: Path, content: bytes) -> str:
    f = tmp_path / "bad"
    f.write_bytes(content)
    return f"@{f}"


MALFORMED = [
    "",
    "   ",
    "127.0.0.1:4443",
    "{",
    "[]",
    '"x"',
    "{}",
    json.dumps({"addrs": ["127.0.0.1:1"]}),
    json.dumps({"id": ID}),
    json.dumps({"id": "zz" * 32, "addrs": ["127.0.0.1:1"]}),
    json.dumps({"id": ID[:-2], "addrs": ["127.0.0.1:1"]}),
    json.dumps({"id": 5, "addrs": ["127.0.0.1:1"]}),
    json.dumps({"id": ID, "addrs": []}),
    json.dumps({"id": ID, "addrs": "127.0.0.1:1"}),
    json.dumps({"id": ID, "addrs": [1]}),
    json.dumps({"id": ID, "addrs": ["127.0.0.1"]}),
    json.dumps({"id": ID, "addrs": ["127.0.0.1:0"]}),
    json.dumps({"id": ID, "addrs": ["127.0.0.1:65536"]}),
    json.dumps({"id": ID, "addrs": ["127.0.0.1:-1"]}),
    json.dumps({"id": ID, "addrs": ["::1:5"]}),
    json.dumps({"id": ID, "addrs": ["[::1]5"]}),
    json.dumps({"id": ID, "addrs": ["[nothex]:5"]}),
    json.dumps({"id": ID, "addrs": ["bad host:5"]}),
    json.dumps({"id": ID, "addrs": [":5"]}),
    json.dumps({"id": ID, "addrs": [{"Relay": "https://r.example"}]}),
    json.dumps({"id": ID, "addrs": ["127.0.0.1:1"] * 2 + [f"10.0.0.{i}:1" for i in range(70)]}),
    json.dumps({"endpoint_addr": 5}),
    json.dumps({"endpoint_addr": {"endpoint_addr": {"id": ID, "addrs": ["127.0.0.1:1"]}}}),
    "ftp://host:1",
    "moql://",
    "moql://host:notaport",
    "moql://host:0",
    "https://user:pw@host/",
    "https://bad_host!/",
    "@",
    "@/nonexistent/definitely/missing.json",
]


@pytest.mark.parametrize("text", MALFORMED)
def test_malformed_raises_usage_error(text: str) -> None:
    with pytest.raises(AddressError) as info:
        parse_endpoint_addr(text)
    assert str(info.value)  # one non-empty message


def test_malformed_files(tmp_path: Path) -> None:
    for content in (b"\xff\xfe", b"not json", b"x" * (65 * 1024), b'{"id": 1}'):
        with pytest.raises(AddressError):
            parse_endpoint_addr(_write(tmp_path, content))
    with pytest.raises(AddressError, match="cannot read"):
        parse_endpoint_addr(f"@{tmp_path}")  # a directory


def test_parse_host_port() -> None:
    assert parse_host_port("[::1]:80") == ("::1", 80)
    assert parse_host_port("example.com:443") == ("example.com", 443)


def _ok_or_address_error(text: str) -> None:
    try:
        addr = parse_endpoint_addr(text)
    except AddressError:
        return
    assert (addr.url is not None) != (addr.id is not None)
    if addr.id is not None:
        assert addr.addrs


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200))
def test_fuzz_text_never_crashes(text: str) -> None:
    _ok_or_address_error(text)


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(
    st.one_of(
        _json,
        st.fixed_dictionaries({"id": _json | st.just(ID), "addrs": _json | st.lists(st.text(max_size=25))}),
        st.fixed_dictionaries({"endpoint_addr": _json}),
    )
)
def test_fuzz_json_never_crashes(obj: object) -> None:
    _ok_or_address_error(json.dumps(obj))


@settings(max_examples=100, deadline=None)
@given(st.text(max_size=60))
def test_fuzz_urls_never_crash(rest: str) -> None:
    for scheme in ("moql://", "moqt://", "https://"):
        _ok_or_address_error(scheme + rest)


def test_an_integer_beyond_pythons_digit_limit_is_an_address_error(tmp_path: Path) -> None:
    text = '{"id":' + "1" * 4301 + ',"addrs":[]}'
    with pytest.raises(AddressError, match="invalid JSON"):
        parse_endpoint_addr(text)
    (tmp_path / "a.json").write_text(text)
    with pytest.raises(AddressError, match="does not hold EndpointAddr"):
        parse_endpoint_addr(f"@{tmp_path / 'a.json'}")
