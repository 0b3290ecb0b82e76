"""Split source without the network: a leader core and an availability core feed a subscriber core."""

from ec_node.errors import ExitCode
from ec_node.integrity.keys import derive_stream_key
from ec_node.integrity.signer import Signer
from ec_node.integrity.verifier import Verifier
from ec_node.pipeline.publish_core import PublishCore
from ec_node.pipeline.subscribe_core import SubscribeCore, SubscribeOptions
from ec_node.ts.chunker import chunk_stream

from support.tsbuild import stream

SID = "ec/stream/v1/source/file/name-test/profile-passthrough/variant-source"
KEY = derive_stream_key(SID, b"")


def _chunks():
    return list(chunk_stream([stream([i * 3003 for i in range(400)])]))


def _split(signer: Signer):
    leader = PublishCore(SID, KEY, signer=signer, publish_chunks=False)
    relay = PublishCore(SID, KEY, signer=None, publish_chunks=True)
    manifests, objects = [], []
    for c in _chunks():
        manifests += [w.payload for w in leader.on_chunk(c, 0)]
        objects += [w.payload for w in relay.on_chunk(c, 0)]
    manifests += [w.payload for w in leader.finish(0)]
    assert leader.tracks == ["manifests"] and relay.tracks == ["chunks"]
    return manifests, objects


def _sub(trusted=(), **kw):
    opts = SubscribeOptions(**kw)
    return SubscribeCore(SID, KEY, Verifier(SID, KEY, trusted_signers=trusted, max_pending_per_source=16), opts)


def test_objects_wait_for_manifests_then_all_are_written():
    signer = Signer.generate()
    manifests, objects = _split(signer)
    sub = _sub((signer.signer_id,), max_invalid=0)
    segs = []
    for o in objects:  # every object arrives before any manifest
        step = sub.on_object(o)
        assert step.segments == [] and step.exit is None
    for m in manifests:
        segs += sub.on_manifest(m).segments
    whole = [c for c in _chunks() if c.complete]  # the tail at end of input is never published
    assert len(whole) == len(_chunks()) - 1
    assert [s.chunk_index for s in segs] == [c.index for c in whole]
    assert [s.data for s in segs] == [c.data for c in whole]
    assert sub.on_objects_ended().exit is ExitCode.OK


def test_no_manifests_no_data():
    _, objects = _split(Signer.generate())
    sub = _sub(stop_after=2)
    for o in objects:
        assert sub.on_object(o).segments == []
    step = sub.on_manifests_gone()
    assert step.segments == [] and sub.written == 0
    assert sub.on_objects_ended().exit is ExitCode.ENDED_EARLY


def test_untrusted_signer_writes_nothing():
    manifests, objects = _split(Signer.generate())
    sub = _sub((Signer.generate().signer_id,), stop_after=2)
    out = []
    for m in manifests:
        step = sub.on_manifest(m)
        out += step.segments
        assert all(e["reason"] == "untrusted_signer" for e in step.events if e["event"] == "manifest_rejected")
    for o in objects:
        out += sub.on_object(o).segments
    assert out == []


def test_tampered_object_rejected_and_max_invalid_trips():
    signer = Signer.generate()
    manifests, objects = _split(signer)
    sub = _sub(max_invalid=0)
    for m in manifests:
        sub.on_manifest(m)
    bad = bytearray(objects[1])
    bad[-5] ^= 1
    step = sub.on_object(bytes(bad))
    assert step.segments == []
    assert [e["reason"] for e in step.events if e["event"] == "rejected"] == ["bad_aead"]
    assert step.exit is ExitCode.INTEGRITY


def test_stop_after():
    signer = Signer.generate()
    manifests, objects = _split(signer)
    sub = _sub(stop_after=2)
    for m in manifests:
        sub.on_manifest(m)
    written = []
    for o in objects:
        step = sub.on_object(o)
        written += step.segments
        if step.exit is not None:
            break
    assert step.exit is ExitCode.OK and len(written) == 2


def _seal_forgery(index: int, data: bytes):
    """What anyone can do without a network secret: seal arbitrary bytes as a valid-looking object."""
    from ec_node.integrity.aead import StreamCipher
    from ec_node.integrity.manifest import epoch_id_for
    from ec_node.integrity.objects import seal_object

    return seal_object(StreamCipher(SID, KEY), index, data, epoch_id=epoch_id_for(SID, index), chunk_duration_ms=2000)


def test_forgery_buffered_before_its_manifest_is_blamed_on_its_sender():
    signer = Signer.generate()
    manifests, objects = _split(signer)
    sub = _sub((signer.signer_id,), max_peer_rejections=0)
    first = PublishCore(SID, KEY, signer=None, publish_chunks=True)
    index = [c.index for c in _chunks() if c.complete][0]
    forged = _seal_forgery(index, b"\x47" + bytes(187))
    assert sub.on_object(forged.frame, "evil").events == []  # valid by itself: waits for its manifest
    step = sub.on_manifest(manifests[0], "leader")
    assert [(e["reason"], e["peer"]) for e in step.events if e["event"] == "rejected"] == [("hash_mismatch", "evil")]
    assert step.drop_peers == ["evil"] and sub.penalty("leader") == 0
    assert first.tracks == ["chunks"]


def test_flood_of_uncoverable_objects_cannot_starve_the_buffer():
    signer = Signer.generate()
    live = [c for c in chunk_stream([stream([500 * 180_000 + i * 3003 for i in range(400)])]) if c.complete]
    assert live[0].index >= 500
    leader = PublishCore(SID, KEY, signer=signer, publish_chunks=False)
    relay = PublishCore(SID, KEY, signer=None, publish_chunks=True)
    sub = _sub((signer.signer_id,))
    for i in range(40):  # validly sealed, far below the live stream: no manifest will ever cover them
        sub.on_object(_seal_forgery(i, bytes([0x47]) + bytes(187)).frame, "evil")
    assert sub.verifier.pending_count == 16  # one source gets at most half of the buffer
    written = []
    for c in live:  # each live object arrives just before its manifest
        for w in relay.on_chunk(c, 0):
            written += sub.on_object(w.payload, "honest").segments
        for w in leader.on_chunk(c, 0):
            written += sub.on_manifest(w.payload, "leader").segments
    assert [s.chunk_index for s in written] == [c.index for c in live]
    assert sub.penalty("honest") == 0 and sub.verifier.pending_count == 0


def test_leader_never_claims_an_empty_window_it_saw_damaged():
    from dataclasses import replace

    from ec_node.integrity.manifest import parse_manifest

    signer = Signer.generate()
    chunks = [c for c in _chunks() if c.complete]
    damaged = chunks[1].index
    leader = PublishCore(SID, KEY, signer=signer, publish_chunks=False)
    relay = PublishCore(SID, KEY, signer=None, publish_chunks=True)
    manifests, objects = [], []
    for c in chunks:
        seen = replace(c, damaged=True) if c.index == damaged else c  # the leader's ingest hit junk here
        manifests += [w.payload for w in leader.on_chunk(seen, 0)]
        objects += [w.payload for w in relay.on_chunk(c, 0)]
    bodies = [parse_manifest(m).body for m in manifests]
    assert not any(b.covers(damaged) for b in bodies)  # no "" slot, no manifest at all for it
    after = next(b for b in bodies if b.covers(chunks[2].index))
    assert "prev_chunk_index" not in after.metadata  # no signed link across what it did not see
    sub = _sub((signer.signer_id,), max_invalid=0)
    written = []
    for o in objects:
        written += sub.on_object(o, "relay").segments
    for m in manifests:
        written += sub.on_manifest(m, "leader").segments
    written += sub.on_manifests_gone().segments
    written += sub.on_objects_ended().segments
    assert [s.chunk_index for s in written] == [c.index for c in chunks if c.index != damaged]
    assert sub.rejected == 0 and sub.penalty("relay") == 0  # the honest relay is not blamed
