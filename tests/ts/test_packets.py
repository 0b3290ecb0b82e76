from hypothesis import given, settings
from hypothesis import strategies as st

from ec_node.ts.packets import PACKET_SIZE, PacketFramer, read_pcr

from support.tsbuild import stream


def _frame_all(data: bytes, sizes: list[int]) -> tuple[bytes, PacketFramer]:
    f = PacketFramer()
    out = bytearray()
    i = 0
    k = 0
    while i < len(data):
        n = sizes[k % len(sizes)]
        k += 1
        for run in f.feed(data[i : i + n]):
            out += run.data
        i += n
    for run in f.flush():
        out += run.data
    return bytes(out), f


@settings(max_examples=50, deadline=None)
@given(st.lists(st.integers(1, 5000), min_size=1, max_size=20))
def test_any_read_sizes_give_the_same_packets(sizes):
    data = stream(list(range(0, 3003 * 40, 3003)))
    out, f = _frame_all(data, sizes)
    assert out == data
    assert f.total_resyncs == 0


@settings(max_examples=50, deadline=None)
@given(
    st.integers(3, 40 * 3 * 3),
    st.binary(min_size=1, max_size=400).filter(lambda b: b"\x47" not in b),
    st.lists(st.integers(1, 3000), min_size=1, max_size=8),
)
def test_junk_is_skipped_and_counted(at_packet, junk, sizes):
    data = stream(list(range(0, 3003 * 40, 3003)))
    pos = min(at_packet, len(data) // PACKET_SIZE - 1) * PACKET_SIZE
    dirty = data[:pos] + junk + data[pos:]
    out, f = _frame_all(dirty, sizes)
    assert out == data  # junk between packets costs nothing but a resync
    assert f.total_resyncs == 1
    assert f.total_skipped == len(junk)


def test_leading_partial_packet_is_dropped_without_resync():
    data = stream([0, 3003, 6006])
    out, f = _frame_all(data[100:], [1000])
    assert out == data[PACKET_SIZE:]
    assert f.total_resyncs == 0


def test_non_ts_yields_nothing():
    out, f = _frame_all(bytes(range(256)) * 100, [777])
    assert out == b""


def test_pcr_parse():
    pkt = bytearray(b"\x47\x01\x01\x20" + b"\xff" * 184)
    pkt[4] = 7
    pkt[5] = 0x10
    base, ext = 0x1_2345_6789, 123
    pkt[6:12] = bytes(
        [
            base >> 25 & 0xFF,
            base >> 17 & 0xFF,
            base >> 9 & 0xFF,
            base >> 1 & 0xFF,
            (base & 1) << 7 | 0x7E | ext >> 8,
            ext & 0xFF,
        ]
    )
    assert read_pcr(bytes(pkt)) == base * 300 + ext
    pkt[5] = 0
    assert read_pcr(bytes(pkt)) is None
