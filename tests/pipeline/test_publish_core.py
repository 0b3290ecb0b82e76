"""The leader's and the availability publisher's decisions, checked against a subscriber core."""

from __future__ import annotations

from dataclasses import replace

from ec_node.integrity.manifest import PREV_CHUNK_KEY, parse_manifest
from ec_node.node.events import GroupReceived, Track, TrackEnded
from ec_node.pipeline.publish_core import PublishCore

from support.corerun import KEY, SID, SIGNER, Run, chunks


def _leader_and_objects(seen: list, real: list) -> tuple[list[bytes], list[bytes]]:
    leader = PublishCore(SID, KEY, signer=SIGNER, publish_chunks=False)
    objects = PublishCore(SID, KEY, signer=None, publish_chunks=True)
    assert leader.tracks == ["manifests"] and objects.tracks == ["chunks"]
    man = [w.payload for c in seen for w in leader.on_chunk(c, 0)] + [w.payload for w in leader.finish(0)]
    obj = [w.payload for c in real for w in objects.on_chunk(c, 0)]
    return man, obj


def test_the_first_manifest_carries_no_link_and_later_ones_link_to_the_previous_chunk() -> None:
    cs = chunks()
    man, _ = _leader_and_objects(cs, cs)
    bodies = [parse_manifest(m).body for m in man]
    assert PREV_CHUNK_KEY not in bodies[0].metadata  # absent, never -1 (PROTOCOL.md section 8)
    for prev, body in zip(cs, bodies[1:], strict=False):
        assert body.metadata[PREV_CHUNK_KEY] == prev.index


def test_the_leader_never_claims_an_empty_window_it_saw_damaged() -> None:
    cs = chunks()
    damaged = cs[1].index
    seen = [replace(c, damaged=True) if c.index == damaged else c for c in cs]  # the leader's ingest hit junk
    man, obj = _leader_and_objects(seen, cs)
    bodies = [parse_manifest(m).body for m in man]
    assert not any(b.covers(damaged) for b in bodies)  # no "" slot, no manifest at all for it
    after = next(b for b in bodies if b.covers(cs[2].index))
    assert PREV_CHUNK_KEY not in after.metadata  # no signed link across what it did not see
    r = Run(settings={"max_invalid": 0, "manifest_timeout_s": 1.0})
    r.up()
    for o in obj:
        r.obj(o)
    for i, m in enumerate(man):
        r.feed(GroupReceived("m", Track.MANIFESTS, i, m))
    r.feed(TrackEnded("m", Track.MANIFESTS))
    r.feed(TrackEnded("a", Track.CHUNKS))
    r.advance(10.0)
    assert [s.chunk_index for s in r.segments()] == [c.index for c in cs if c.index != damaged]
    assert r.core.ledger.faults == 0  # the honest relay is not blamed for what the leader did not see
