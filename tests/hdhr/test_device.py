import json

from hypothesis import given
from hypothesis import strategies as st

from ec_node.hdhr.api import parse_discover_json, parse_lineup_json
from ec_node.hdhr.device import Channel, DeviceIdentity, device_id_from, discover_json, lineup_json, m3u_playlist
from ec_node.hdhr.discovery import validate_device_id


@given(st.binary(max_size=64))
def test_device_ids_pass_libhdhomeruns_checksum(seed):
    assert validate_device_id(device_id_from(seed))
    assert device_id_from(seed) == device_id_from(seed)


def test_documents_parse_as_a_real_devices_do():
    dev = DeviceIdentity(device_id_from(b"x"), "every.channel WSYN-HD", "HDHR5-4US", "hdhomerun5_atsc", "1", "a", 4)
    info = parse_discover_json(json.dumps(discover_json(dev, "http://127.0.0.1:9")).encode(), "test")
    assert info.device_id == f"{dev.device_id:08X}" and info.lineup_url == "http://127.0.0.1:9/lineup.json"
    ch = Channel("7.1", "WSYN-HD", "http://127.0.0.1:9/auto/v7.1", "MPEG2", "AC3")
    body = lineup_json([ch])
    assert body[0]["HD"] == 1 and isinstance(body[0]["GuideNumber"], str)
    (entry,) = parse_lineup_json(json.dumps(body).encode(), "test")
    assert (entry.guide_number, entry.guide_name, entry.url) == ("7.1", "WSYN-HD", ch.url)


def test_m3u_names_each_channel_with_tvg_attributes():
    text = m3u_playlist([Channel("7.1", 'W"SYN', "http://h/auto/v7.1")])
    lines = text.splitlines()
    assert lines[0] == "#EXTM3U"
    assert lines[1].startswith('#EXTINF:-1 tvg-id="7.1" tvg-chno="7.1" tvg-name="W\'SYN"')
    assert lines[2] == "http://h/auto/v7.1"
