"""Pure parsing of the HDHomeRun HTTP API with the field types real devices send."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ec_node.errors import ConfigError, UnreachableError, UsageError
from ec_node.hdhr import api

FLEX = (
    b'{"FriendlyName":"HDHomeRun FLEX 4K","ModelNumber":"HDFX-4K","FirmwareName":"hdhomerun_dvr_atsc3",'
    b'"FirmwareVersion":"20250623","DeviceID":"10AA5474","DeviceAuth":"3KFU8ZYZnKADs5SHUXWWuqLb",'
    b'"UpgradeAvailable":"20250815","BaseURL":"http://192.168.0.37","LineupURL":"http://192.168.0.37/lineup.json",'
    b'"TunerCount":4,"StorageID":"10AA5474-13D8-41AF-940C-1F9D2D5D9F8D"}'
)
CONNECT = (
    b'{"FriendlyName":"HDHomeRun CONNECT","ModelNumber":"HDHR4-2US","FirmwareName":"hdhomerun4_atsc",'
    b'"FirmwareVersion":"20150826","DeviceID":"10439EFD","DeviceAuth":"KOxavUdByRLBRKZRsV/ge8lS",'
    b'"BaseURL":"http://192.168.1.111:80","LineupURL":"http://192.168.1.111:80/lineup.json"}'
)
LINEUP = (
    b'[{"GuideNumber":"2.1","GuideName":"WGBH-HD","VideoCodec":"MPEG2","AudioCodec":"AC3","HD":1,'
    b'"SignalStrength":100,"SignalQuality":74,"URL":"http://192.168.0.37:5004/auto/v2.1"},'
    b'{"GuideNumber":"5.1","GuideName":"WCVB-HD","VideoCodec":"H264","AudioCodec":"AAC","HD":1,"Favorite":1,'
    b'"SignalStrength":95,"SignalQuality":80,"URL":"http://192.168.0.37:5004/auto/v5.1"},'
    b'{"GuideNumber":"44.3","GuideName":"Old","Tags":"favorite,drm","URL":"http://192.168.0.37:5004/auto/v44.3"}]'
)


def test_discover_json_current_and_old_firmware() -> None:
    flex = api.parse_discover_json(FLEX, "h")
    assert flex.device_id == "10AA5474" and flex.tuner_count == 4 and flex.base_url == "http://192.168.0.37"
    old = api.parse_discover_json(CONNECT, "h")
    assert old.tuner_count is None  # absent on old firmware
    assert old.base_url == "http://192.168.1.111:80"
    assert old.model_number == "HDHR4-2US"


def test_lineup_json_real_types() -> None:
    entries = api.parse_lineup_json(LINEUP, "h")
    assert [e.guide_number for e in entries] == ["2.1", "5.1", "44.3"]
    assert entries[0].hd and not entries[0].favorite
    assert entries[1].favorite and entries[1].video_codec == "H264"
    assert not entries[2].hd and entries[2].favorite and entries[2].drm and entries[2].video_codec is None
    assert entries[0].url.endswith(":5004/auto/v2.1")


@pytest.mark.parametrize("body", [b"<html>", b"[]", b'{"a":1}', b"\xff\xfe", b'"x"'])
def test_not_an_hdhomerun(body: bytes) -> None:
    with pytest.raises(UnreachableError, match="not an HDHomeRun"):
        api.parse_discover_json(body, "h")


@pytest.mark.parametrize(
    "host,expected",
    [
        ("192.168.1.5", ("192.168.1.5", 80)),
        ("192.168.1.5:8080", ("192.168.1.5", 8080)),
        ("http://hdhr.local:80/", ("hdhr.local", 80)),
        ("[::1]:5000", ("::1", 5000)),
    ],
)
def test_parse_host(host: str, expected: tuple[str, int]) -> None:
    assert api.parse_host(host) == expected


@pytest.mark.parametrize("host", ["", "a:b", "h:99999"])
def test_parse_host_bad(host: str) -> None:
    with pytest.raises(UsageError):
        api.parse_host(host)


@pytest.mark.parametrize(
    "status,header,verdict",
    [
        (200, None, api.StreamVerdict.OK),
        (404, None, api.StreamVerdict.CONFIG),
        (404, "801 Unknown Channel", api.StreamVerdict.CONFIG),
        (503, "805 All Tuners In Use", api.StreamVerdict.BUSY),
        (503, "804 Tuner In Use", api.StreamVerdict.BUSY),
        (503, None, api.StreamVerdict.BUSY),
        (503, "806 Tune Failed", api.StreamVerdict.NO_SIGNAL),
        (503, "807 No Video Data", api.StreamVerdict.NO_SIGNAL),
        (503, "811 Content Protection Required", api.StreamVerdict.CONFIG),
        (500, None, api.StreamVerdict.NOT_HDHR),
    ],
)
def test_stream_error_semantics(status: int, header: str | None, verdict: api.StreamVerdict) -> None:
    assert api.classify_stream_response(status, header)[0] is verdict


def test_duration_query_whole_seconds() -> None:
    assert api.duration_query(None) == ""
    assert api.duration_query(2) == "?duration=2"
    assert api.duration_query(2.1) == "?duration=3"
    with pytest.raises(UsageError):
        api.duration_query(0)


@given(st.text(max_size=60))
def test_error_header_parse_never_raises(value: str) -> None:
    code = api.parse_error_header(value)
    assert code is None or 0 <= code <= 9999


def test_not_found_is_config_error() -> None:
    assert isinstance(api.not_found_error("9.9", "h"), ConfigError)


def test_lineup_entry_to_json_keeps_device_fields() -> None:
    e = api.parse_lineup_json(LINEUP, "h")[0]
    assert json.loads(json.dumps(e.to_json()))["GuideNumber"] == "2.1"


def test_lineup_entries_whose_url_does_not_parse_are_skipped() -> None:
    """Review finding: a port out of range or a broken IPv6 host would raise later, when tuning."""
    body = json.dumps(
        [
            {"GuideNumber": "7.1", "GuideName": "A", "URL": "http://192.0.2.1:99999/auto/v7.1"},
            {"GuideNumber": "8.1", "GuideName": "B", "URL": "http://[::1/auto/v8.1"},
            {"GuideNumber": "9.1", "GuideName": "C", "URL": "http://192.0.2.1:5004/auto/v9.1"},
        ]
    ).encode()
    assert [e.guide_number for e in api.parse_lineup_json(body, "tuner")] == ["9.1"]
