import os

import pytest

from ec_node.errors import ConfigError, UsageError
from ec_node.transport.relay_auth import (
    JWT_ENV,
    UrlPeerOptions,
    has_token,
    load_jwt,
    parse_fingerprint,
    redact,
    with_jwt,
)

FP = "ab" * 32


def test_fingerprints_are_64_hex_digits_colons_and_case_tolerated():
    assert parse_fingerprint(":".join(FP.upper()[i : i + 2] for i in range(0, 64, 2))) == FP
    for bad in ("", "ab" * 31, "zz" * 32, FP + "00"):
        with pytest.raises(UsageError):
            parse_fingerprint(bad)


def test_the_token_goes_in_the_query_and_never_shows():
    url = with_jwt("https://relay.example:4443/anon?x=1", "eyJ.secret.sig")
    assert url == "https://relay.example:4443/anon?x=1&jwt=eyJ.secret.sig"
    assert with_jwt(url, "other") == url  # a token already there is kept
    assert with_jwt("moql://h:1", None) == "moql://h:1"
    shown = redact(url)
    assert "secret" not in shown and shown == "https://relay.example:4443/anon?x=…&jwt=…"
    assert redact("moql://h:1/p") == "moql://h:1/p"
    assert has_token(url) and not has_token("moql://h:1/p")
    assert "eyJ" not in repr(UrlPeerOptions(jwt="eyJ.secret.sig"))


def test_the_token_comes_from_a_private_file_or_the_environment(tmp_path):
    assert load_jwt(None, {JWT_ENV: " tok \n"}) == "tok"
    assert load_jwt(None, {}) is None
    f = tmp_path / "jwt"
    f.write_text("eyJ.a.b\n")
    os.chmod(f, 0o600)
    assert load_jwt(f, {JWT_ENV: "ignored"}) == "eyJ.a.b"
    os.chmod(f, 0o644)
    with pytest.raises(ConfigError, match="readable by others"):
        load_jwt(f)
    os.chmod(f, 0o600)
    f.write_text("two tokens\n")
    with pytest.raises(ConfigError, match="does not hold one token"):
        load_jwt(f)
    with pytest.raises(ConfigError, match="cannot read"):
        load_jwt(tmp_path / "missing")


def test_redact_never_raises_on_a_url_that_does_not_split() -> None:
    """Fuzz finding: a startup object's relays entry "http://[" crashed re-encoding."""
    assert redact("http://[") == "http://["
    assert redact("http://[::1/x?jwt=secret") == "http://[::1/x?…"
