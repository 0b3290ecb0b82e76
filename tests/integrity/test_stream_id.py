from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ec_node.integrity.errors import IntegrityError, InvalidValueError, StreamIdError
from ec_node.integrity.stream_id import (
    BroadcastIdentity,
    SourceHint,
    derive_stream_id,
    is_valid_stream_id,
    validate_stream_id,
)

HDHR = SourceHint(kind="hdhr", device_id="1234ABCD", channel="7.1")


def test_atsc_broadcast_with_callsign() -> None:
    ident = BroadcastIdentity(transport_stream_id=0x0801, program_numbers=(0, 3), has_psip=True, short_name="WSYN-HD")
    assert (
        derive_stream_id(ident, HDHR)
        == "ec/stream/v1/broadcast/atsc/tsid-2049/program-3/callsign-wsyn-hd/profile-passthrough/variant-source"
    )


def test_two_nodes_same_broadcast_converge_whatever_the_source() -> None:
    ident = BroadcastIdentity(0x0801, (3,), True, "WSYN-HD")
    a = derive_stream_id(ident, HDHR)
    b = derive_stream_id(ident, SourceHint(kind="file", locator="/tmp/capture.ts"))
    c = derive_stream_id(ident, SourceHint(kind="hdhr", device_id="FFFF0000", channel="32"))
    assert a == b == c


def test_mpegts_without_psip_has_no_callsign() -> None:
    ident = BroadcastIdentity(1, (1,), False, "IGNORED")
    assert derive_stream_id(ident, HDHR, profile="p", variant="v") == (
        "ec/stream/v1/broadcast/mpegts/tsid-1/program-1/profile-p/variant-v"
    )


def test_callsign_sanitized() -> None:
    ident = BroadcastIdentity(5, (2,), True, " Ké TV_2!")
    assert "/callsign-ke-tv-2/" in derive_stream_id(ident, HDHR)
    unusable = BroadcastIdentity(5, (2,), True, "!!!")
    assert "callsign" not in derive_stream_id(unusable, HDHR)


@pytest.mark.parametrize(
    "ident",
    [
        None,
        BroadcastIdentity(None, (3,), True, "X"),  # no tsid
        BroadcastIdentity(5, (3, 4), True, "X"),  # ambiguous PAT
        BroadcastIdentity(5, (0,), True, "X"),  # only the NIT entry
        BroadcastIdentity(5, (), False, None),
    ],
)
def test_no_promotion_falls_back_to_source(ident: BroadcastIdentity | None) -> None:
    assert derive_stream_id(ident, HDHR) == (
        "ec/stream/v1/source/hdhr/device-1234abcd/channel-7.1/profile-passthrough/variant-source"
    )


def test_file_url_stdin_forms() -> None:
    f = derive_stream_id(None, SourceHint(kind="file", locator="/data/My Capture.ts"))
    assert f == "ec/stream/v1/source/file/name-my-capture.ts/profile-passthrough/variant-source"
    u1 = derive_stream_id(None, SourceHint(kind="url", locator="http://10.0.0.5:5004/auto/v7.1"))
    u2 = derive_stream_id(None, SourceHint(kind="url", locator="http://10.0.0.5:5004/auto/v9.1"))
    assert u1.startswith("ec/stream/v1/source/url/host-10.0.0.5/ref-") and u1 != u2
    stdin = derive_stream_id(None, SourceHint(kind="stdin"))
    assert stdin == "ec/stream/v1/source/stdin/profile-passthrough/variant-source"


def test_explicit_wins_and_is_validated() -> None:
    ident = BroadcastIdentity(0x0801, (3,), True, "WSYN-HD")
    assert derive_stream_id(ident, HDHR, explicit="la-nbc") == "la-nbc"
    with pytest.raises(InvalidValueError):  # the caller's value: a usage error, not the source's fault
        derive_stream_id(ident, HDHR, explicit="bad\x00id")


@pytest.mark.parametrize("bad", ["", " x", "x ", "a\nb", "a\x7fb", "x" * 257, "a\u200bb", "\ud800"])
def test_validate_rejects(bad: str) -> None:
    with pytest.raises(InvalidValueError):
        validate_stream_id(bad)
    assert not is_valid_stream_id(bad)


def test_missing_source_details_are_stream_id_errors() -> None:
    with pytest.raises(StreamIdError):
        derive_stream_id(None, SourceHint(kind="hdhr", device_id="X"))
    with pytest.raises(StreamIdError):
        derive_stream_id(None, SourceHint(kind="file"))
    with pytest.raises(StreamIdError):
        derive_stream_id(None, HDHR, profile="!!!")


def test_a_derived_id_too_long_is_the_sources_fault_not_the_callers() -> None:
    with pytest.raises(StreamIdError, match="longer than 256"):
        derive_stream_id(None, SourceHint(kind="file", locator="/x/" + "a" * 250 + ".ts"))


def test_the_layer_raises_only_its_own_exceptions() -> None:
    assert issubclass(InvalidValueError, IntegrityError) and issubclass(StreamIdError, IntegrityError)
    assert not any(c.__module__ == "ec_node.errors" for c in InvalidValueError.__mro__ + StreamIdError.__mro__)


@given(st.text(max_size=40), st.text(max_size=20), st.text(max_size=20))
def test_derived_ids_are_always_valid_or_stream_id_error(name: str, dev: str, ch: str) -> None:
    for src in (SourceHint(kind="file", locator=name or "x"), SourceHint(kind="hdhr", device_id=dev, channel=ch)):
        try:
            sid = derive_stream_id(BroadcastIdentity(7, (1,), True, name), src)
            sid2 = derive_stream_id(None, src)
        except StreamIdError:
            continue
        assert validate_stream_id(sid) == sid and validate_stream_id(sid2) == sid2
        assert sid.isascii() and sid2.isascii()


@pytest.mark.parametrize(
    "name,call",
    [
        ("KÉ - TV", "ke---tv"),  # runs outside [a-z0-9-] become one '-'; a '-' already there is kept
        ("A--B", "a--b"),  # runs of '-' are not collapsed
        ("A 中 B", "a-b"),  # non-ASCII after NFKD is deleted, not replaced: one run of two spaces
        ("AB中CD", "abcd"),
        ("\U0001d416\U0001d417", "wx"),  # NFKD folds mathematical bold letters to ASCII
        ("\u212a-9", "k-9"),  # KELVIN SIGN: NFKD gives 'K', then lowercase
        ("ﬁ", "fi"),  # compatibility ligature
        ("-7.1-", "7-1"),  # '.' is not kept in a callsign; ends trimmed
    ],
)
def test_callsign_fold_order(name: str, call: str) -> None:
    """PROTOCOL §2: NFKD, delete non-ASCII, lowercase ASCII, runs outside [a-z0-9-] to '-', trim."""
    sid = derive_stream_id(BroadcastIdentity(1, (1,), True, name), HDHR)
    assert f"/callsign-{call}/" in sid


def test_tsid_zero_is_promoted() -> None:
    sid = derive_stream_id(BroadcastIdentity(0, (1,), False, None), HDHR)
    assert sid == "ec/stream/v1/broadcast/mpegts/tsid-0/program-1/profile-passthrough/variant-source"


def test_file_keeps_extension_url_drops_port_but_hashes_it() -> None:
    f = derive_stream_id(None, SourceHint(kind="file", locator="/media/My Recording (1).TS"))
    assert f == "ec/stream/v1/source/file/name-my-recording-1-.ts/profile-passthrough/variant-source"
    a = derive_stream_id(None, SourceHint(kind="url", locator="http://User@Tuner.Local:5004/x"))
    b = derive_stream_id(None, SourceHint(kind="url", locator="http://tuner.local:80/x"))
    assert "/host-tuner.local/" in a and "/host-tuner.local/" in b and a != b
    v6 = derive_stream_id(None, SourceHint(kind="url", locator="http://[::1]:5004/x"))
    assert "/host-1/" in v6
    assert "/host-unknown/" in derive_stream_id(None, SourceHint(kind="url", locator="http:///x"))


def _head_id(reads: list[bytes]) -> str:
    from ec_node.pipeline.identify import identity_of
    from ec_node.ts.inspect import probe_head

    head = probe_head(iter(reads), 2000, "test")
    return derive_stream_id(identity_of(head.info), SourceHint(kind="stdin"))


def _psi(tsid: int) -> list[bytes]:
    import struct

    from ec_node.ts.section import build_section, packetize_section

    pat = build_section(0x00, tsid, struct.pack(">HH", 1, 0xE100), private_indicator=False)
    pmt = build_section(0x02, 1, struct.pack(">HHBHH", 0xE101, 0xF000, 0x1B, 0xE101, 0xF000), private_indicator=False)
    return [*packetize_section(0, pat, 0), *packetize_section(0x100, pmt, 0)]


def _tvct(name: bytes) -> list[bytes]:
    from ec_node.ts.psip import PSIP_BASE_PID, VirtualChannel, build_tvct
    from ec_node.ts.section import build_section, packetize_section

    good = build_tvct([VirtualChannel("XXXXXXX", 2, 1, 1, 7)], tsid=7)
    body = good[8:-4]
    body = body[:2] + name + body[16:]  # protocol_version, num_channels, then the 14-byte short_name
    return packetize_section(PSIP_BASE_PID, build_section(0xC8, 7, body), 0)


def test_short_name_with_a_lone_surrogate_makes_the_tvct_unusable() -> None:
    ok = _head_id([*_psi(7), *_tvct("WXYZ".encode("utf-16-be").ljust(14, b"\0"))])
    assert "/atsc/tsid-7/program-1/callsign-wxyz/" in ok
    lone = _head_id([*_psi(7), *_tvct(b"\xd8\x00" + "XYZ".encode("utf-16-be").ljust(12, b"\0"))])
    assert "/mpegts/tsid-7/program-1/profile-" in lone


def test_psip_is_waited_for_4_mib_after_the_pmt() -> None:
    null = bytes([0x47, 0x1F, 0xFF, 0x10]) + b"\xff" * 184
    filler = null * (4 * 1024 * 1024 // 188 + 1)  # one read of just over 4 MiB
    tvct = _tvct("WXYZ".encode("utf-16-be").ljust(14, b"\0"))
    assert "/atsc/" in _head_id([*_psi(7), null * 1000, *tvct])
    assert "/mpegts/" in _head_id([*_psi(7), filler, *tvct])  # the probe stopped before the TVCT came
