"""The home node's status, learnt from pipeline events: /status JSON, /metrics text, the live table."""

from __future__ import annotations

import json
from typing import Any

from prometheus_client import REGISTRY
from rich.console import Console

from ec_node.home.config import ChannelSpec
from ec_node.home.plan import Outcome, Plan
from ec_node.home.status import Board, EventSink

PUB = ChannelSpec(name="7.1", roles=("leader", "objects", "watch"), source="hdhr://h:80/7.1", guide_number="7.1")
FAR = ChannelSpec(name="far", roles=("relay",), source=None, remotes=("@p.json",))
STARTUP = {"endpoint_addr": {"id": "ab" * 32, "addrs": ["127.0.0.1:4443"]}, "broadcast": "b", "stream_id": "s",
           "tracks": ["chunks", "manifests"], "signer_id": "cd" * 32}  # fmt: skip


def board() -> tuple[Board, Plan]:
    plan = Plan([PUB, FAR], tuners=2)
    plan.step(0.0)
    return Board(plan, device="h:80", started=0.0), plan


def test_event_sink_parses_json_lines_however_they_are_written() -> None:
    got: list[dict[str, Any]] = []
    sink = EventSink(got.append, "t")
    sink.write('{"event": "a"}\n{"ev')
    assert got == [{"event": "a"}]
    sink.write('ent": "b"}\nnot json\n\n')
    sink.flush()
    assert got == [{"event": "a"}, {"event": "b"}]


def test_status_counts_per_channel_and_across_restarts() -> None:
    b, plan = board()
    ch = b.channel("7.1", PUB.roles)
    assert ch.apply("publisher", STARTUP) is None
    assert ch.apply("publisher", {"event": "published", "chunks": 1, "objects": 1, "manifests": 1, "damaged": 0}) == (
        "publisher"
    )  # the first time it is live
    ch.apply("publisher", {"event": "published", "chunks": 3, "objects": 3, "manifests": 3, "damaged": 1})
    ch.apply("watch", {"event": "subscribed", "objects_peers": ["p1"], "manifests_peer": "p1"})
    ch.apply("watch", {"event": "peer_connected", "peer": "p1", "track": "chunks"})
    assert ch.apply("watch", {"event": "segment", "chunk_index": 5, "latency_ms": 12.5}) == "watch"
    ch.apply("watch", {"event": "rejected", "reason": "bad_aead"})
    ch.apply("watch", {"event": "rejected", "reason": "bad_aead"})
    ch.apply("watch", {"event": "untrusted_signer", "signers": ["ee" * 32]})
    s = b.status(now=10.0)
    c = s["channels"]["7.1"]
    assert c["state"] == "live" and c["tuner"] == 0 and c["broadcast"] == "b"
    assert c["publisher"]["chunks"] == 3 and c["publisher"]["damaged"] == 1 and c["publisher"]["signer_id"] == "cd" * 32
    assert c["segments"] == 1 and c["rejected"] == {"bad_aead": 2} and c["latency_ms"] == 12.5
    assert c["peers"]["up"] == 1 and c["peers"]["known"] == 2 and c["untrusted_signer"] == "ee" * 32
    assert s["channels"]["far"]["state"] == "starting" and s["channels"]["far"]["publisher"] is None
    assert s["node"]["tuners"] == 2 and s["node"]["tuners_in_use"] == 1 and s["node"]["uptime_s"] == 10.0
    json.dumps(s)  # it is JSON

    # a restart: totals go on, the run's peers start over
    plan.exited("7.1", Outcome.FAILED, 20.0, "cut")
    ch.new_run()
    ch.apply("publisher", {"event": "published", "chunks": 2, "objects": 2, "manifests": 2, "damaged": 0})
    c = b.status(now=21.0)["channels"]["7.1"]
    assert c["publisher"]["chunks"] == 5 and c["peers"]["known"] == 0
    assert c["state"] == "retrying" and c["last_error"] == "cut" and c["retry_in_s"] == 1.0


def test_metrics_are_prometheus_text_from_a_registry_of_its_own() -> None:
    b, _ = board()
    ch = b.channel("7.1", PUB.roles)
    ch.apply("watch", {"event": "segment", "chunk_index": 1, "latency_ms": 3})
    ch.apply("watch", {"event": "rejected", "reason": "hash_mismatch"})
    ch.apply("relay", {"event": "status", "served": 7})
    text = b.metrics().decode()
    assert 'ec_node_segments_total{channel="7.1"} 1.0' in text
    assert 'ec_node_rejected_total{channel="7.1",reason="hash_mismatch"} 1.0' in text
    assert 'ec_node_channel_running{channel="far"} 1.0' in text
    assert 'ec_node_segment_latency_ms{channel="7.1"} 3.0' in text
    assert "# TYPE ec_node_published_chunks_total counter" in text and "ec_node_tuners_in_use 1.0" in text
    assert REGISTRY.get_sample_value("ec_node_tuners_in_use") is None  # never the global registry


def test_plain_lines_and_the_live_table() -> None:
    b, _ = board()
    b.channel("7.1", PUB.roles).apply("watch", {"event": "segment", "chunk_index": 1, "latency_ms": 40})
    lines = list(b.lines())
    assert lines[0].startswith("channel 7.1: live, tuner 0, 0 chunks published, 1 segments, 0 rejected")
    assert "latency 40 ms" in lines[0] and lines[1].startswith("channel far: starting")
    console = Console(record=True, width=160, color_system=None)
    console.print(b.table())
    out = console.export_text()
    row = next(line for line in out.splitlines() if line.strip().startswith("7.1"))
    assert row.split()[:4] == ["7.1", "LOW", "live", "0"] and row.split()[-1] == "40"
    assert "tuners 1/2" in out
