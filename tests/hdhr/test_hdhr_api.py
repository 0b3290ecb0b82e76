"""Pure parsing of the HDHomeRun HTTP API with the field types real devices send."""

from __future__ import annotations

import json
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ec_node.errors import ConfigError, UnreachableError, UsageError
from ec_node.hdhr import api
from ec_node.hdhr.psip import ProbedChannel, probe_channels
from ec_node.ts.psip import (
    TID_CVCT,
    TID_TVCT,
    ServiceLocation,
    ServiceLocationElement,
    VirtualChannel,
    build_section,
    build_tvct,
    packetize_section,
    section_body,
)

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


# --- lineup from PSIP -------------------------------------------------------------------


def _section(table_id: int, ext: int, body: bytes) -> bytes:
    return build_section(table_id, ext, body, private_indicator=False)


def _packets(pid: int, section: bytes) -> bytes:
    return b"".join(packetize_section(pid, section, 0))


def _vct(channels: list[tuple[str, int, int, int]], table_id: int = TID_TVCT) -> bytes:
    sld = ServiceLocation(0x31, (ServiceLocationElement(0x02, 0x31),))
    tvct = build_tvct(
        [VirtualChannel(n, major, minor, prog, 0x0801, service_location=sld) for n, major, minor, prog in channels]
    )
    return tvct if table_id == TID_TVCT else build_section(table_id, 0x0801, section_body(tvct))


def test_probe_channels_from_tvct_and_pmt() -> None:
    pat = _section(0x00, 0x0801, struct.pack(">HHHH", 3, 0xE030, 4, 0xE040))
    pmt3 = _section(
        0x02,
        3,
        struct.pack(">HH", 0xE031, 0xF000) + bytes([0x02, 0xE0, 0x31, 0xF0, 0x00, 0x81, 0xE0, 0x34, 0xF0, 0x00]),
    )
    pmt4 = _section(
        0x02,
        4,
        struct.pack(">HH", 0xE041, 0xF000) + bytes([0x1B, 0xE0, 0x41, 0xF0, 0x00, 0x0F, 0xE0, 0x44, 0xF0, 0x00]),
    )
    # 7 channels' worth of TVCT spans two packets, exercising section reassembly
    names = [("WSYN-HD", 7, 1, 3), ("WSYN-SD", 7, 2, 4)] + [(f"X{i}", 9, i, 10 + i) for i in range(5)]
    ts = _packets(0, pat) + _packets(0x30, pmt3) + _packets(0x40, pmt4) + _packets(0x1FFB, _vct(names))
    assert len(_packets(0x1FFB, _vct(names))) > 188
    chans = probe_channels(ts)
    assert [(c.program_number, c.guide_number, c.guide_name, c.video_codec, c.audio_codec) for c in chans] == [
        (3, "7.1", "WSYN-HD", "MPEG2", "AC3"),
        (4, "7.2", "WSYN-SD", "H264", "AAC"),
    ]


def test_probe_channels_reads_cable_vct_and_dvb_style_ac3() -> None:
    pat = _section(0x00, 0x0801, struct.pack(">HH", 5, 0xE050))
    # MPEG-2 video, then AC-3 as private PES (0x06) with an AC-3 descriptor (0x6A), as ffmpeg's system_b mode writes
    es = bytes([0x02, 0xE0, 0x51, 0xF0, 0x00, 0x06, 0xE0, 0x54, 0xF0, 0x03, 0x6A, 0x01, 0x00])
    pmt = _section(0x02, 5, struct.pack(">HH", 0xE051, 0xF000) + es)
    ts = _packets(0, pat) + _packets(0x50, pmt) + _packets(0x1FFB, _vct([("CABLE", 102, 1, 5)], TID_CVCT))
    assert probe_channels(ts) == [ProbedChannel(5, "102.1", "CABLE", "MPEG2", "AC3")]


def test_probe_channels_ignores_bad_crc() -> None:
    pat = bytearray(_section(0x00, 1, struct.pack(">HH", 1, 0xE030)))
    pat[-1] ^= 0xFF
    assert probe_channels(_packets(0, bytes(pat))) == []


@given(st.binary(max_size=3000))
def test_probe_channels_never_raises_on_junk(data: bytes) -> None:
    assert isinstance(probe_channels(b"\x47" + data), list)


def test_lineup_entry_to_json_keeps_device_fields() -> None:
    e = api.parse_lineup_json(LINEUP, "h")[0]
    assert json.loads(json.dumps(e.to_json()))["GuideNumber"] == "2.1"
