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
    return SubscribeCore(SID, KEY, Verifier(SID, KEY, trusted_signers=trusted), opts)


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
