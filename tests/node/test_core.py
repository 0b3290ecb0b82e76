"""NodeCore on a fake clock: every rule of the subscriber and the relay, without a process or a socket."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ec_node.errors import ExitCode
from ec_node.integrity.aead import StreamCipher
from ec_node.integrity.manifest import epoch_id_for
from ec_node.integrity.signer import Signer
from ec_node.node.events import (
    ClosePeer,
    Exit,
    Fetch,
    FinishTrack,
    GroupReceived,
    LinkGone,
    LinkLost,
    LinkUp,
    ManifestRejected,
    Reconnect,
    Track,
    TrackEnded,
    UntrustedSigner,
    Waiting,
)
from ec_node.node.settings import Role
from ec_node.pipeline.publish_core import PublishCore

from support.corerun import CHUNKS_TRACK, KEY, MANIFESTS_TRACK, SID, SIGNER, Run, chunks, impostor, publish
from support.hostile_relay import ATTACKS, forge

PUB = publish()
WHOLE = chunks()


def _end_objects(r: Run, peers: tuple[str, ...] = ("a",)) -> None:
    for p in peers:
        r.feed(TrackEnded(p, Track.CHUNKS))
    r.advance(r.core.settings.end_grace_s)  # groups the end may have overtaken get their grace


# ------------------------------------------------------------------------------ subscriber


def test_objects_wait_for_manifests_then_all_are_written_in_order() -> None:
    r = Run(settings={"max_invalid": 0})
    r.up()
    for w in PUB.objects:  # every object arrives before any manifest
        assert r.segments() == [] and not r.of(Exit, r.obj(w.payload, seq=w.sequence))
    for m in PUB.manifests:
        r.man(m)
    assert [s.chunk_index for s in r.segments()] == [c.index for c in WHOLE]
    assert [s.data for s in r.segments()] == [c.data for c in WHOLE]
    _end_objects(r)
    assert r.of(Exit) == [Exit(ExitCode.OK, "stream ended")]


def test_no_manifests_no_data() -> None:
    r = Run(settings={"stop_after": 2})
    r.up()
    for w in PUB.objects:
        r.obj(w.payload, seq=w.sequence)
    r.feed(TrackEnded("m", Track.MANIFESTS))
    _end_objects(r)
    assert r.of(Fetch) and r.of(Fetch)[-1].track is Track.MANIFESTS  # asked once for what the end overtook
    r.advance(r.core.settings.end_grace_s)  # nothing came
    assert r.segments() == []
    assert {e["reason"] for e in r.events("rejected")} == {"no_manifest"}  # circumstance, not a lie
    assert not r.core.ledger.charges
    # no manifest ever named these indices: nobody's loss (anyone can seal objects), just no data
    assert r.of(Exit)[0].code is ExitCode.ENDED_EARLY and r.core.status().missing == 0


def test_untrusted_signer_writes_nothing() -> None:
    r = Run(trusted=(Signer.generate().signer_id,))
    r.up()
    for m in PUB.manifests:
        r.man(m)
    for w in PUB.objects:
        r.obj(w.payload, seq=w.sequence)
    assert r.segments() == []
    assert {e["reason"] for e in r.events("manifest_rejected")} == {"untrusted_signer"}


def _live(r: Run, until_exit: bool = True, step_s: float = 2.0) -> float | None:
    """Feed the stream as a live leader and publisher would (a manifest and an object every chunk, the links
    never silent); the fake time of the exit, if one came."""
    for m, o in zip(PUB.manifests, PUB.objects, strict=False):
        r.man(m)
        r.obj(o.payload, seq=o.sequence)
        r.advance(step_s)
        if r.of(Exit) and until_exit:
            return r.t
    return r.t if r.of(Exit) else None


def test_an_untrusted_signer_is_named_once_and_the_subscriber_exits_within_the_manifest_timeout() -> None:
    stranger = Signer.generate().signer_id
    r = Run(trusted=(stranger,), settings={"manifest_timeout_s": 10.0, "max_peer_rejections": None})
    assert len(PUB.manifests) * 2.0 > 10.0 + 4.0  # the leader would go on long after the timeout
    r.up()
    at = _live(r)
    assert at is not None and at <= 10.0 + 2.0  # (one feeding step of slack: the deadline fires inside it)
    (done,) = r.of(Exit)
    assert done.code is ExitCode.MANIFEST_TIMEOUT
    assert done.reason.startswith("no usable manifest for 10 s: manifest signed by " + SIGNER.signer_id)
    assert f"which is not a --trust-signer; trusted: {stranger}" in done.reason
    (said,) = r.events("untrusted_signer")  # once, however many manifests it signed
    assert said == {"event": "untrusted_signer", "signers": [SIGNER.signer_id], "trusted": [stranger], "peer": "m"}
    assert (
        r.of(UntrustedSigner)[0].text()
        == f"manifest signed by {SIGNER.signer_id}, which is not a --trust-signer; trusted: {stranger}"
    )
    assert len(r.events("manifest_rejected")) > 1  # each refusal still shows in --json
    assert r.segments() == [] and r.core.verifier.pending_count == 0


def test_an_untrusted_signer_is_the_only_manifest_rejection_said_once_on_stderr() -> None:
    untrusted = ManifestRejected("untrusted_signer", "signed only by untrusted x", "m")
    assert untrusted.log_level() == "info"  # the UntrustedSigner line says it, in words, once
    assert ManifestRejected("bad_signature", "no signature verifies", "m").log_level() == "warning"


def test_a_leader_sending_only_unusable_manifests_times_out_like_a_lost_one() -> None:
    r = Run(settings={"manifest_timeout_s": 6.0})
    r.up()
    for _ in range(10):  # the link is alive, every manifest is junk
        r.feed(GroupReceived("m", Track.MANIFESTS, 0, b"\x00junk"))
        r.advance(1.0)
    (done,) = r.of(Exit)
    assert done.code is ExitCode.MANIFEST_TIMEOUT and "every manifest since was refused (malformed" in done.reason


def test_a_refused_manifest_among_usable_ones_ends_nothing() -> None:
    r = Run(settings={"manifest_timeout_s": 3.0})
    r.up()
    for m, o in zip(PUB.manifests, PUB.objects, strict=False):
        r.feed(GroupReceived("m", Track.MANIFESTS, 0, b"\x00junk"))  # refused
        r.man(m)  # usable: the leader is here
        r.obj(o.payload, seq=o.sequence)
        r.advance(2.0)
    assert not r.of(Exit) and len(r.segments()) == len(PUB.objects)


def test_a_verifying_relay_with_an_untrusted_signer_drops_its_buffer_each_timeout_and_keeps_serving() -> None:
    r = Run(role=Role.RELAY, trusted=(Signer.generate().signer_id,), settings={"manifest_timeout_s": 4.0})
    r.up()
    assert _live(r, until_exit=False) is None  # a relay never exits for this
    assert r.served() == {} and len(r.events("untrusted_signer")) == 1
    assert r.core.verifier.pending_count <= 2  # what came since the last timeout, not everything


def test_a_tampered_object_is_rejected_and_max_invalid_trips() -> None:
    r = Run(settings={"max_invalid": 0})
    r.up()
    for m in PUB.manifests:
        r.man(m)
    bad = bytearray(PUB.objects[1].payload)
    bad[-5] ^= 1
    out = r.obj(bytes(bad))
    assert [e["reason"] for e in r.events("rejected")] == ["bad_aead"]
    assert r.of(Exit, out)[0].code is ExitCode.INTEGRITY and r.segments() == []


def test_stop_after() -> None:
    r = Run(settings={"stop_after": 2})
    r.up()
    for m in PUB.manifests:
        r.man(m)
    for w in PUB.objects:
        r.obj(w.payload, seq=w.sequence)
    assert len(r.segments()) == 2 and r.of(Exit) == [Exit(ExitCode.OK, "--stop-after 2 reached")]


def test_a_forgery_buffered_before_its_manifest_counts_against_the_path_it_came_by() -> None:
    """Refuted by the manifest, not by anything the sender could see itself: an upstream fault of
    that path (never the manifests peer's), which is reported but drops nobody."""
    r = Run(objects_peers=("evil", "a"), settings={"max_peer_rejections": 0})
    r.up()
    idx = WHOLE[0].index
    assert r.events("rejected") == [] and r.obj(impostor(idx), "evil") == []  # valid alone: waits
    r.man(PUB.manifests[0])
    assert [(e["reason"], e["peer"], e["peer_fault"], e["upstream_fault"]) for e in r.events("rejected")] == [
        ("object_mismatch", "evil", False, True)
    ]
    assert ClosePeer("evil") not in r.outs and r.events("peer_dropped") == []
    assert r.core.ledger.upstream == {"evil": 1} and not r.core.ledger.charges
    assert r.core.status().upstream_faults == {"evil": 1}


@pytest.mark.parametrize("role", [Role.SUBSCRIBER, Role.RELAY])
def test_a_late_forged_duplicate_is_judged_by_both_roles(role: Role) -> None:
    r = Run(role=role, objects_peers=("honest", "liar"))
    r.up()
    for m in PUB.manifests:
        r.man(m)
    o = PUB.objects[1]
    r.obj(o.payload, "honest", o.sequence)
    r.obj(impostor(o.sequence), "liar", o.sequence)  # after the genuine copy was accepted
    r.obj(o.payload, "liar", o.sequence)  # a true duplicate is no lie
    assert [(e["reason"], e["peer"]) for e in r.events("rejected")] == [("hash_mismatch", "liar")]
    assert r.core.ledger.upstream == {"liar": 1} and not r.core.ledger.charges


def test_a_hole_is_fetched_then_given_up_on_with_a_gap() -> None:
    r = Run(objects_peers=("a", "b"))
    r.up()
    for m in PUB.manifests:
        r.man(m)
    o = PUB.objects
    r.obj(o[0].payload, "a", o[0].sequence)
    r.obj(o[2].payload, "a", o[2].sequence)  # o[1] missing: o[2] waits
    assert [s.chunk_index for s in r.segments()] == [o[0].sequence]
    fetches = r.of(Fetch, r.advance(0.5))  # a quarter of a chunk: ask every live objects peer
    assert fetches == [Fetch("a", Track.CHUNKS, (o[1].sequence,)), Fetch("b", Track.CHUNKS, (o[1].sequence,))]
    assert r.of(Fetch, r.advance(1.0)) == []  # once per hole
    out = r.advance(3.0)  # two chunk durations after the hole opened: give up
    assert r.events("gap") == [
        {"event": "gap", "chunks": f"{o[1].sequence}..{o[1].sequence}", "reason": "not received"}
    ]
    assert [s.chunk_index for s in r.of(type(r.segments()[0]), out)] == [o[2].sequence]
    r.obj(o[1].payload, "b", o[1].sequence)  # too late: never written out of order
    assert [s.chunk_index for s in r.segments()] == [o[0].sequence, o[2].sequence]
    r.feed(TrackEnded("b", Track.CHUNKS))
    _end_objects(r)
    r.advance(r.core.settings.end_grace_s)  # the listed tail (never sent here) was fetched once
    (done,) = r.of(Exit)
    missing = 1 + len(o) - 3  # the hole, and the tail the manifests list
    assert done.code is ExitCode.INCOMPLETE and f"{missing} chunk(s) missing" in done.reason  # a loss is no success
    assert r.core.status().missing == missing


def test_chunks_a_manifest_lists_that_never_came_are_missing_at_the_end() -> None:
    r = Run()
    r.up()
    for m in PUB.manifests:
        r.man(m)
    for w in PUB.objects[:2]:
        r.obj(w.payload, seq=w.sequence)
    _end_objects(r)  # the tail the manifests vouch for is fetched once ...
    r.advance(r.core.settings.end_grace_s)  # ... and never arrives
    (done,) = r.of(Exit)
    tail = len(PUB.objects) - 2
    assert done.code is ExitCode.INCOMPLETE and r.core.status().missing == tail
    assert r.events("gap")[-1]["reason"] == "listed by a manifest, never received"


def test_a_peer_that_lied_about_an_index_is_not_asked_for_it_again() -> None:
    r = Run(objects_peers=("liar", "honest"))
    r.up()
    for m in PUB.manifests:
        r.man(m)
    o = PUB.objects
    r.obj(o[0].payload, "honest", o[0].sequence)
    r.obj(impostor(o[1].sequence), "liar", o[1].sequence)
    r.obj(o[2].payload, "honest", o[2].sequence)
    assert r.of(Fetch, r.advance(0.5)) == [Fetch("honest", Track.CHUNKS, (o[1].sequence,))]


def test_a_backfilled_copy_fills_the_hole_before_the_deadline() -> None:
    r = Run()
    r.up()
    for m in PUB.manifests:
        r.man(m)
    o = PUB.objects
    r.obj(o[0].payload, seq=o[0].sequence)
    r.obj(o[2].payload, seq=o[2].sequence)
    r.advance(0.5)
    r.feed(GroupReceived("a", Track.CHUNKS, o[1].sequence, o[1].payload, backfilled=True))
    assert [s.chunk_index for s in r.segments()] == [w.sequence for w in o[:3]] and r.events("gap") == []


def test_a_hole_at_the_end_of_the_track_is_fetched_from_the_peer_that_ended_it() -> None:
    r = Run(manifests_peer=None, settings={"require_manifest": False})
    r.up()
    o = PUB.objects
    r.obj(o[0].payload, seq=o[0].sequence)
    r.obj(o[2].payload, seq=o[2].sequence)  # o[1] is still in flight when the track ends
    r.feed(TrackEnded("a", Track.CHUNKS))
    assert not r.of(Exit)  # it waits for the hole
    assert r.of(Fetch, r.advance(0.5)) == [Fetch("a", Track.CHUNKS, (o[1].sequence,))]
    r.feed(GroupReceived("a", Track.CHUNKS, o[1].sequence, o[1].payload, backfilled=True))
    r.advance(0.1)
    assert [s.chunk_index for s in r.segments()] == [w.sequence for w in o[:3]]
    assert r.of(Exit) == [Exit(ExitCode.OK, "stream ended")]


def test_signed_link_across_a_jump_needs_no_wait() -> None:
    cs = WHOLE[:3]
    jumped = [*cs, *[replace(c, index=c.index + 1000) for c in WHOLE[3:6]]]
    p = publish(cs=jumped)
    r = Run()
    r.up()
    for m in p.manifests:
        r.man(m)
    for w in p.objects:
        r.obj(w.payload, seq=w.sequence)
    assert [s.chunk_index for s in r.segments()] == [c.index for c in jumped]
    assert r.events("gap") == [] and r.core.held == 0  # nothing waits for the indices jumped over


def test_a_silent_link_is_stalled_then_reconnected_then_given_up_on() -> None:
    r = Run(objects_peers=("a",), manifests_peer=None)
    r.up()
    r.obj(PUB.objects[0].payload, seq=PUB.objects[0].sequence)
    out = r.advance(4.0)  # two chunk durations of silence
    assert r.events("peer_stalled")[0]["peer"] == "a" and not r.of(Reconnect, out)
    out = r.advance(12.0)  # three stall periods more: do not wait for QUIC's idle timeout
    assert r.of(Reconnect, out) == [Reconnect("a", Track.CHUNKS)]
    r.feed(LinkLost("a", Track.CHUNKS, "connect refused"))
    out = r.advance(30.0)  # lost for --reconnect-for: gone
    assert ClosePeer("a", Track.CHUNKS) in out and r.events("peer_gone")[0]["detail"].startswith("unreachable for")
    # it was up once, so the run ends with what it wrote
    assert r.of(Exit)[0].code is ExitCode.OK


def test_an_objects_peer_never_reached_is_exit_4() -> None:
    r = Run(manifests_peer=None)
    r.feed(LinkLost("a", Track.CHUNKS, "no answer"))
    r.advance(30.0)
    assert r.of(Exit)[0].code is ExitCode.UNREACHABLE and "objects peer a" in r.of(Exit)[0].reason


def test_a_manifests_peer_that_does_not_serve_manifests_is_exit_4_at_once() -> None:
    r = Run()
    r.up()
    r.feed(LinkGone("m", Track.MANIFESTS, "does not serve it"))
    assert r.of(Exit)[0].code is ExitCode.UNREACHABLE and "manifests peer m" in r.of(Exit)[0].reason


@pytest.mark.parametrize("role", [Role.SUBSCRIBER, Role.RELAY])
def test_leader_loss(role: Role) -> None:
    r = Run(role=role, settings={"manifest_timeout_s": 10.0})
    r.up()
    r.man(PUB.manifests[0])
    r.obj(PUB.objects[0].payload, seq=PUB.objects[0].sequence)
    r.feed(LinkLost("m", Track.MANIFESTS, "reset"))
    r.obj(PUB.objects[1].payload, seq=PUB.objects[1].sequence)  # waits for a manifest that never comes
    assert r.core.verifier.pending_count == 1
    out = r.advance(9.9)
    assert not r.of(Exit, out)
    out = r.advance(0.2)
    assert r.core.verifier.pending_count == 0
    if role is Role.SUBSCRIBER:
        assert r.of(Exit, out)[0].code is ExitCode.MANIFEST_TIMEOUT
    else:
        assert not r.of(Exit)  # a relay keeps serving; its subscribers time out themselves


def test_the_leader_coming_back_cancels_the_timeout() -> None:
    r = Run(settings={"manifest_timeout_s": 10.0})
    r.up()
    r.feed(LinkLost("m", Track.MANIFESTS, "reset"))
    r.advance(9.0)
    r.feed(LinkUp("m", Track.MANIFESTS))
    r.man(PUB.manifests[0])
    r.advance(5.5)  # (a manifests link silent for three chunk durations would count as away again)
    assert not [e for e in r.of(Exit) if e.code is ExitCode.MANIFEST_TIMEOUT]


def test_a_penalized_peers_copy_waits_and_an_honest_copy_wins() -> None:
    r = Run(objects_peers=("liar", "honest"))
    r.up()
    for m in PUB.manifests:
        r.man(m)
    o = PUB.objects
    r.obj(forge("truncated", o[0].payload, o[0].payload), "liar", o[0].sequence)  # its own lie: penalized
    r.obj(o[0].payload, "honest", o[0].sequence)
    r.obj(o[1].payload, "liar", o[1].sequence)  # genuine, but from a liar: deferred
    assert [s.chunk_index for s in r.segments()] == [o[0].sequence]
    r.obj(o[1].payload, "honest", o[1].sequence)
    assert [s.chunk_index for s in r.segments()] == [o[0].sequence, o[1].sequence]
    r.obj(o[2].payload, "liar", o[2].sequence)
    r.advance(0.5)  # nobody else had it: the liar's genuine copy is used after its wait
    assert [s.chunk_index for s in r.segments()] == [w.sequence for w in o[:3]]
    assert r.core.ledger.charges == {"liar": 1}


def test_objects_done_with_manifests_owed_waits_then_ends() -> None:
    r = Run(settings={"manifest_timeout_s": 5.0})
    r.up()
    r.man(PUB.manifests[0])
    for w in PUB.objects[:3]:
        r.obj(w.payload, seq=w.sequence)
    _end_objects(r)
    assert r.of(Waiting) and not r.of(Exit)  # it says what it waits for
    r.advance(5.0)
    assert r.of(Exit)[0] == Exit(ExitCode.OK, "stream ended")  # the leader never named those indices
    assert len(r.segments()) == 1 and {e["reason"] for e in r.events("rejected")} == {"no_manifest"}


def test_unverified_mode_writes_self_consistent_objects_once() -> None:
    r = Run(manifests_peer=None, objects_peers=("a", "b"), settings={"require_manifest": False})
    r.up()
    bad = bytearray(PUB.objects[0].payload)
    bad[-3] ^= 1
    r.obj(bytes(bad), "b", 0)
    for w in PUB.objects:
        r.obj(w.payload, "a", w.sequence)
        r.obj(w.payload, "b", w.sequence)
    assert [s.data for s in r.segments()] == [c.data for c in WHOLE]
    assert [e["reason"] for e in r.events("rejected")] == ["bad_aead"]


def test_a_flood_of_uncoverable_objects_cannot_starve_the_buffer() -> None:
    from ec_node.ts.chunker import chunk_stream

    from support.tsbuild import stream

    live = [c for c in chunk_stream([stream([500 * 180_000 + i * 3003 for i in range(400)])]) if c.complete]
    assert live[0].index >= 500
    p = publish(cs=live)
    r = Run(objects_peers=("evil", "honest"))
    r.up()
    for i in range(40):  # validly sealed, far below the live stream: no manifest will ever cover them
        r.obj(impostor(i), "evil", i)
    assert r.core.verifier.pending_count == 16  # one source holds at most half of the buffer
    for o, m in zip(p.objects, p.manifests, strict=True):  # each live object arrives just before its manifest
        r.obj(o.payload, "honest", o.sequence)
        r.man(m)
    assert [s.chunk_index for s in r.segments()] == [c.index for c in live]
    assert r.core.ledger.charges["honest"] == 0 and r.core.verifier.pending_count == 0


# ------------------------------------------------------------------------------ relay


def test_relay_serves_objects_after_their_manifests_unchanged() -> None:
    r = Run(role=Role.RELAY)
    r.up()
    for w in PUB.objects:
        assert r.obj(w.payload, seq=w.sequence) == []
    for m in PUB.manifests:
        r.man(m)
    assert r.served() == PUB.genuine
    assert r.served(MANIFESTS_TRACK) == {m.sequence: m.payload for m in PUB.manifests}
    order = [(g.track, g.sequence) for g in r.outs if hasattr(g, "track") and hasattr(g, "payload")]
    for m in PUB.manifests:  # each manifest goes out before the object it vouches for
        assert order.index((MANIFESTS_TRACK, m.sequence)) < order.index((CHUNKS_TRACK, m.sequence))
    assert r.core.served_by == {"a": len(PUB.objects)}


def test_relay_serves_each_index_once_whoever_sends_it() -> None:
    r = Run(role=Role.RELAY, objects_peers=("a", "b"))
    r.up()
    for m in PUB.manifests:
        r.man(m)
        r.man(m)  # replayed: not re-served
    for w in PUB.objects:
        r.obj(w.payload, "a", w.sequence)
        r.obj(w.payload, "b", w.sequence)
    assert r.served() == PUB.genuine and not r.core.ledger.charges


@pytest.mark.parametrize("liar_first", [True, False])
def test_forgeries_never_propagate_and_the_liar_is_charged_then_dropped(liar_first: bool) -> None:
    r = Run(role=Role.RELAY, objects_peers=("liar", "honest"), settings={"max_peer_rejections": 1})
    r.up()
    for m in PUB.manifests:
        r.man(m)
    first = PUB.objects[0].payload
    for k, attack in enumerate(ATTACKS):
        o = PUB.objects[1 + k]
        arrivals = [(forge(attack, o.payload, first), "liar"), (o.payload, "honest")]
        for frame, peer in arrivals if liar_first else arrivals[::-1]:
            r.obj(frame, peer, o.sequence)
    r.advance(1.0)  # the liar's later copies waited their turn; judged now, as lies about accepted indices
    # charged for what it could see itself (truncated, foreign stream: the 2nd drops it, limit 1); the
    # re-sealed forgeries count against its path; the last came after the drop
    assert r.core.ledger.charges["liar"] == 2 and r.core.ledger.upstream["liar"] == 2
    assert r.of(ClosePeer) == [ClosePeer("liar")] and r.core.ledger.charges["honest"] == 0
    assert r.served() == {o.sequence: o.payload for o in PUB.objects[1 : 1 + len(ATTACKS)]}
    assert r.obj(PUB.objects[0].payload, "liar", 0) == []  # a dropped peer is ignored from then on


def test_a_plain_relay_passes_on_what_decodes_for_this_stream_manifests_too() -> None:
    r = Run(role=Role.RELAY, objects_peers=("x", "y"), settings={"require_manifest": False})
    r.up()
    first = PUB.objects[0].payload
    forged = {
        PUB.objects[1 + k].sequence: forge(a, PUB.objects[1 + k].payload, first) for k, a in enumerate(ATTACKS[:4])
    }
    for seq, frame in forged.items():
        r.obj(frame, "x", seq)
        r.advance(0.5)  # after its first lie, x's copies wait their turn (nobody else has them yet)
    for w in PUB.objects:
        r.obj(w.payload, "y", w.sequence)
    r.feed(GroupReceived("m", Track.MANIFESTS, 0, b"{not json"))
    for m in PUB.manifests:
        r.man(m)
    served = r.served()
    assert set(served) == set(PUB.genuine)
    for seq, frame in forged.items():  # without manifests it cannot tell a bit flip or a replay
        attack = ATTACKS[list(forged).index(seq)]
        assert served[seq] == (frame if attack in ("bit_flip", "replayed") else PUB.genuine[seq]), attack
    assert r.core.ledger.charges == {"x": 2}  # truncated (malformed), foreign_stream (wrong_stream)
    assert r.served(MANIFESTS_TRACK) == {m.sequence: m.payload for m in PUB.manifests}


def test_relay_finishes_its_tracks_at_the_end_and_keeps_serving() -> None:
    r = Run(role=Role.RELAY)
    r.up()
    for m in PUB.manifests:
        r.man(m)
    for w in PUB.objects:
        r.obj(w.payload, seq=w.sequence)
    _end_objects(r)
    assert r.of(FinishTrack) == [FinishTrack(Track.CHUNKS), FinishTrack(Track.MANIFESTS)]
    assert not r.of(Exit) and r.core.finished
    r.advance(120.0)
    assert not r.of(Exit)


def test_relay_with_every_upstream_gone_is_exit_4() -> None:
    r = Run(role=Role.RELAY, objects_peers=("a", "b"))
    r.up()
    r.feed(LinkGone("a", Track.CHUNKS, "does not serve it"))
    r.feed(LinkLost("b", Track.CHUNKS, "reset"))
    r.advance(30.0)
    assert r.of(Exit)[0].code is ExitCode.UNREACHABLE and "every objects upstream" in r.of(Exit)[0].reason


def test_a_verifying_relay_without_manifests_is_exit_4_a_plain_one_carries_on() -> None:
    r = Run(role=Role.RELAY)
    r.up()
    r.feed(LinkGone("m", Track.MANIFESTS, "does not serve it"))
    assert r.of(Exit)[0].code is ExitCode.UNREACHABLE and "manifests upstream m" in r.of(Exit)[0].reason
    p = Run(role=Role.RELAY, settings={"require_manifest": False})
    p.up()
    p.feed(LinkGone("m", Track.MANIFESTS, "does not serve it"))
    assert not p.of(Exit) and p.of(FinishTrack) == [FinishTrack(Track.MANIFESTS)]


def test_a_keyless_relay_cannot_tell_other_ciphertext_so_blames_nobody() -> None:
    r = Run(role=Role.RELAY, objects_peers=("a", "b"), keyless=True)
    r.up()
    for m in PUB.manifests:
        r.man(m)
    o = PUB.objects[1]
    r.obj(o.payload, "a", o.sequence)
    flipped = bytearray(o.payload)
    flipped[-2] ^= 1  # same metadata, other ciphertext
    r.obj(bytes(flipped), "b", o.sequence)
    assert r.served() == {o.sequence: o.payload} and not r.core.ledger.charges


_ARRIVAL = st.lists(st.tuples(st.sampled_from(["obj", "forged", "man"]), st.integers(0, len(PUB.objects) - 1)),
                    max_size=80)  # fmt: skip


@settings(max_examples=60, deadline=None)
@given(_ARRIVAL)
def test_whatever_the_arrival_order_only_genuine_objects_go_out_once(arrivals: list[tuple[str, int]]) -> None:
    r = Run(role=Role.RELAY, objects_peers=("honest", "liar"))
    r.up()
    for kind, i in arrivals:
        if kind == "obj":
            r.obj(PUB.objects[i].payload, "honest", PUB.objects[i].sequence)
        elif kind == "forged":
            r.obj(impostor(PUB.objects[i].sequence), "liar", PUB.objects[i].sequence)
        else:
            r.man(PUB.manifests[i])
    for seq, payload in r.served().items():
        assert payload == PUB.genuine[seq]
    assert r.core.ledger.charges["honest"] == 0 and r.core.served_by["liar"] == 0


def test_the_harness_uses_the_published_stream() -> None:
    assert PublishCore(SID, KEY, signer=SIGNER, publish_chunks=True).tracks == [CHUNKS_TRACK, MANIFESTS_TRACK]
    assert [w.sequence for w in PUB.objects] == [c.index for c in WHOLE]


def test_manifests_the_end_of_their_track_overtook_are_fetched_once() -> None:
    """MoQ carries each group on its own stream: a track's end can arrive before its last groups."""
    r = Run()
    r.up()
    p = PUB
    r.man(p.manifests[0])
    r.feed(TrackEnded("m", Track.MANIFESTS))  # the other manifests were still in flight: lost with the track
    for w in p.objects:
        r.obj(w.payload, seq=w.sequence)
    fetched = r.of(Fetch, r.advance(r.core.settings.end_grace_s))
    assert fetched == [Fetch("m", Track.MANIFESTS, tuple(m.sequence for m in p.manifests[1:]))]
    for m in p.manifests[1:]:
        r.feed(GroupReceived("m", Track.MANIFESTS, m.sequence, m.payload, backfilled=True))
    r.feed(TrackEnded("a", Track.CHUNKS))
    r.advance(r.core.settings.end_grace_s)
    assert [s.chunk_index for s in r.segments()] == [w.sequence for w in p.objects]
    assert r.events("rejected") == [] and r.of(Exit) == [Exit(ExitCode.OK, "stream ended")]
    assert r.of(Fetch, r.advance(10)) == []  # once only


def test_chunks_the_end_of_their_track_overtook_are_fetched_once_when_manifests_list_them() -> None:
    r = Run()
    r.up()
    p = PUB
    for m in p.manifests:
        r.man(m)
    for w in p.objects[:-2]:
        r.obj(w.payload, seq=w.sequence)
    r.feed(TrackEnded("a", Track.CHUNKS))  # the last two groups were still in flight
    fetched = r.of(Fetch, r.advance(r.core.settings.end_grace_s))
    assert fetched == [Fetch("a", Track.CHUNKS, tuple(w.sequence for w in p.objects[-2:]))]
    assert not r.of(Exit)
    for w in p.objects[-2:]:
        r.feed(GroupReceived("a", Track.CHUNKS, w.sequence, w.payload, backfilled=True))
    r.advance(r.core.settings.end_grace_s)
    assert [s.chunk_index for s in r.segments()] == [w.sequence for w in p.objects]
    assert r.of(Exit) == [Exit(ExitCode.OK, "stream ended")]


def test_objects_for_indices_no_manifest_named_do_not_make_a_clean_run_incomplete() -> None:
    """Without a network secret anyone can seal objects: some for indices beyond the leader's last
    manifest are dropped unvouched at the end, and are nobody's loss (review finding)."""
    from ec_node.integrity.objects import seal_object

    from support.corerun import KEY, SID

    r = Run()
    r.up()
    for m in PUB.manifests:
        r.man(m)
    for w in PUB.objects:
        r.obj(w.payload, seq=w.sequence)
    cipher = StreamCipher(SID, KEY)
    beyond = max(w.sequence for w in PUB.objects) + 10
    for i in range(beyond, beyond + 5):
        fake = seal_object(cipher, i, b"phantom", epoch_id=epoch_id_for(SID, i), chunk_duration_ms=2000)
        r.obj(fake.frame, "a", i)
    r.feed(TrackEnded("m", Track.MANIFESTS))
    _end_objects(r)
    r.advance(60.0)
    assert len(r.segments()) == len(PUB.objects)
    assert r.of(Exit)[0].code is ExitCode.OK and r.core.status().missing == 0


def test_a_huge_group_sequence_from_a_peer_neither_hides_the_tail_nor_costs_memory() -> None:
    """Review finding: group sequences are the peer's word; only indices that passed the checks count."""
    r = Run()
    r.up()
    for m in PUB.manifests:
        r.man(m)
    r.obj(PUB.objects[0].payload, seq=PUB.objects[0].sequence)
    r.obj(b"junk", "a", 10**18)  # undecodable, at an absurd group number
    assert r.core._max_chunk_seen == PUB.objects[0].sequence
    assert len(r.core._owed_manifests()) <= 64
    assert r.core._listed_tail()  # the chunks the manifests list above what came are still owed


def _join_with_the_later_manifest_first() -> Run:
    """A joiner that got objects 0 and 1, then only the manifest for 1."""
    r = Run(settings={"max_invalid": 0})
    r.up()
    r.obj(PUB.objects[0].payload, seq=PUB.objects[0].sequence)
    r.obj(PUB.objects[1].payload, seq=PUB.objects[1].sequence)
    r.man(PUB.manifests[1])
    return r


def test_a_join_whose_later_manifest_comes_first_still_starts_at_the_earliest_chunk() -> None:
    # a late joiner gets objects 0 and 1, then the leader's manifest for 1 just before the one for 0 (two
    # peers, two paths): the output must start at 0, not write 1 and drop 0 as if no manifest came
    r = _join_with_the_later_manifest_first()
    assert r.segments() == []  # held: an earlier object waits for its manifest
    r.advance(r.core.settings.chunk_s / 2)
    r.man(PUB.manifests[0])
    assert [s.chunk_index for s in r.segments()] == [WHOLE[0].index, WHOLE[1].index]
    assert r.events("rejected") == []


def test_a_join_start_hold_is_bounded_and_a_late_object_is_stale_not_unvouched() -> None:
    r = _join_with_the_later_manifest_first()
    r.advance(r.core.settings.reorder_s)  # the manifest for 0 never comes in time
    assert [s.chunk_index for s in r.segments()] == [WHOLE[1].index]
    assert [e["reason"] for e in r.events("rejected")] == ["stale"]  # its place in the output has passed
    assert not r.core.ledger.charges
