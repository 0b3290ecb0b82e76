"""The certificate schedule (fake clock) and the signed statement's strict decoder."""

from __future__ import annotations

import json

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ec_node.integrity._json import canonical_json
from ec_node.integrity.keys import signer_id_of
from ec_node.transport.certs import (
    CERT_VALIDITY_S,
    CLOCK_SKEW_S,
    DAY_S,
    MAX_CHECK_INTERVAL_S,
    MAX_STATEMENT_BYTES,
    CertStatementError,
    CertWindow,
    decode_statement,
    is_statement_broadcast,
    needs_rotation,
    next_start,
    rotate_at,
    seconds_until_check,
    sign_statement,
    usable_next,
    validity_for,
)

NOW = 1_800_000_000
KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
NODE = signer_id_of(KEY)


def window(start: int, sha: str = "aa" * 32) -> CertWindow:
    return CertWindow(sha, *validity_for(start))


def test_validity_is_thirteen_days_starting_an_hour_back() -> None:
    assert validity_for(NOW) == (NOW - CLOCK_SKEW_S, NOW - CLOCK_SKEW_S + CERT_VALIDITY_S)
    assert CERT_VALIDITY_S <= 14 * DAY_S  # Chromium's limit for hash-pinned certificates


def test_schedule_rotates_three_days_before_expiry_and_next_starts_a_day_earlier() -> None:
    cur = window(NOW)
    assert rotate_at(cur) == cur.not_after - 3 * DAY_S
    assert next_start(cur) == rotate_at(cur) - DAY_S
    assert not needs_rotation(rotate_at(cur) - 1, cur)
    assert needs_rotation(rotate_at(cur), cur)
    assert needs_rotation(cur.not_before - 1, cur)  # clock stepped back before it: not presentable


def test_next_must_outlive_current_and_be_valid_by_rotation_time() -> None:
    cur = window(NOW)
    assert usable_next(NOW, cur, window(next_start(cur), "bb" * 32))
    assert not usable_next(NOW, cur, None)
    assert not usable_next(NOW, cur, cur)  # the current one is no successor
    assert not usable_next(NOW, cur, window(rotate_at(cur) + DAY_S, "bb" * 32))  # not valid in time


def test_check_interval_is_bounded_by_an_hour_and_the_rotation_time() -> None:
    cur = window(NOW)
    assert seconds_until_check(NOW, cur) == MAX_CHECK_INTERVAL_S
    assert seconds_until_check(rotate_at(cur) - 10, cur) == 10
    assert seconds_until_check(rotate_at(cur) + 10, cur) == 1


def test_statement_round_trip_and_pins_drop_expired() -> None:
    cur, nxt = window(NOW, "aa" * 32), window(next_start(window(NOW)), "bb" * 32)
    st = sign_statement(KEY, NODE, (cur, nxt))
    back = decode_statement(st.encode(), NODE)
    assert back == st
    assert back.pins(NOW) == ("aa" * 32, "bb" * 32)
    assert back.pins(cur.not_after) == ("bb" * 32,)


def test_statement_vector() -> None:
    """Test vector for PROTOCOL.md §11.2 (fixed key, fixed windows)."""
    st = sign_statement(KEY, NODE, (CertWindow("aa" * 32, 1_799_996_400, 1_801_119_600),))
    assert NODE == "03a107bff3ce10be1d70dd18e74bc09967e4d6309ba50d5f1ddc8664125531b8"
    assert st.encode().decode() == (
        '{"body":{"certs":[{"not_after":1801119600,"not_before":1799996400,"sha256":"'
        + "aa" * 32
        + '"}],"node_id":"'
        + NODE
        + '","v":1},"sig":"'
        + st.signature.hex()
        + '"}'
    )
    assert st.signature.hex() == (
        "39d976b7adf48dcfbacc827e7e4ba6fd519b2cbb1fa98a553022f483bdebeb89"
        "35840777395a5d52aff4a3e76ce7c7c42581aff4ad2d0453a3c4d925fa57080f"
    )


def _tamper(mutate: object) -> bytes:
    st = sign_statement(KEY, NODE, (window(NOW),))
    outer = json.loads(st.encode())
    assert callable(mutate)
    mutate(outer)
    return canonical_json(outer)


@pytest.mark.parametrize(
    ("mutate", "match"),
    [
        (lambda o: o["body"]["certs"][0].update(sha256="bb" * 32), "not signed by node"),
        (lambda o: o["body"].update(node_id="cc" * 32), "names node"),
        (lambda o: o["body"].update(v=2), "version 1"),
        (lambda o: o["body"].update(extra=1), "version 1"),
        (lambda o: o.update(sig="00"), "128 hex"),
        (lambda o: o["body"].update(certs=[]), "1 to 4"),
        (lambda o: o["body"]["certs"][0].update(not_after=o["body"]["certs"][0]["not_before"] + 15 * DAY_S), "14 days"),
        (lambda o: o["body"]["certs"][0].update(sha256="AA" * 32), "lowercase hex"),
        (lambda o: o["body"]["certs"][0].update(not_before=True), "Unix seconds"),
    ],
)
def test_statement_decoder_refuses(mutate: object, match: str) -> None:
    with pytest.raises(CertStatementError, match=match):
        decode_statement(_tamper(mutate), NODE)


def test_statement_decoder_bounds_and_form() -> None:
    with pytest.raises(CertStatementError, match="larger than"):
        decode_statement(b"{" * (MAX_STATEMENT_BYTES + 1), NODE)
    good = sign_statement(KEY, NODE, (window(NOW),)).encode()
    with pytest.raises(CertStatementError, match="canonical"):
        decode_statement(good.replace(b":", b": ", 1), NODE)
    with pytest.raises(CertStatementError, match="not valid JSON"):
        decode_statement(b"\xff", NODE)


def test_statement_broadcast_is_recognised_under_a_relay_path() -> None:
    assert is_statement_broadcast("ec-node/identity/" + NODE)
    assert is_statement_broadcast("anon/ec-node/identity/" + NODE)
    assert not is_statement_broadcast("atsc-7-1-abc")
    assert not is_statement_broadcast("x-ec-node/identity/" + NODE)
