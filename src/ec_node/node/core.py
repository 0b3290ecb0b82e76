"""The node core: every decision a subscriber or a relay makes, as one sans-I/O state machine.

Feed it what the links observed (:mod:`ec_node.node.events` inputs) with the current time, and
call :meth:`NodeCore.on_timer` at :meth:`NodeCore.next_deadline`; it answers with outputs to apply
in order. It never reads a clock, a socket or a file, so every rule (acceptance, duplicates, peer
charges and drops, deferral of penalized peers, stalls, reconnects, giving up on peers, the
reorder hole and its backfill, leader loss, how and when the run ends) is tested with a fake clock.

The :class:`~ec_node.integrity.verifier.Verifier` decides what is acceptable (and is the one judge
of duplicates); the :class:`~ec_node.node.ledger.PeerLedger` who is to blame; the
:class:`~ec_node.node.reorder.Reorder` stage the order; :class:`~ec_node.node.links.Link` liveness.
Where a subscriber and a relay differ, :class:`~ec_node.node.settings.NodeSettings` names it.
"""

from __future__ import annotations

import logging
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from ec_node.errors import ExitCode
from ec_node.integrity.errors import PEER_FAULTS, IntegrityRejection, RejectReason
from ec_node.integrity.frames import DEFAULT_LIMITS, Limits
from ec_node.integrity.manifest import parse_manifest, prev_chunk_index
from ec_node.integrity.verifier import AcceptedObject, DroppedObject, SlotState, Verdict, Verifier
from ec_node.node.events import (
    UNKNOWN_PEER,
    ClosePeer,
    Exit,
    Fetch,
    FinishTrack,
    Gap,
    GroupReceived,
    GroupTooLarge,
    Input,
    LinkGone,
    LinkLost,
    LinkState,
    LinkUp,
    ManifestAccepted,
    ManifestRejected,
    ObjectRejected,
    Output,
    PeerDropped,
    Reconnect,
    ServeGroup,
    Status,
    Track,
    TrackEnded,
    UntrustedSigner,
    Waiting,
    WriteSegment,
)
from ec_node.node.ledger import PeerLedger
from ec_node.node.links import Ending, Link, LinkPhase
from ec_node.node.reorder import Reorder
from ec_node.node.settings import NodeSettings, Role

log = logging.getLogger(__name__)

#: ``measure(data, nominal_ms)``: a chunk's real duration from its own timestamps (None if unknown).
Measure = Callable[[bytes, int], "int | None"]

#: Links a hole may be fetched from: live ones, and ended ones (the peer still has the groups; a track's
#: last groups can arrive after its end, on their own streams, or not at all).
_FETCHABLE = (LinkPhase.UP, LinkPhase.STALLED, LinkPhase.ENDED)
_SEEN_WINDOW = 4096  # manifest sequences remembered to re-serve each at most once
VERIFIER_RETAINED_SLOTS = 8192  # manifest slots a node remembers (bounded memory)


def make_verifier(
    settings: NodeSettings,
    stream_id: str,
    stream_key: bytes | None,
    *,
    trusted_signers: Iterable[str] = (),
    limits: Limits = DEFAULT_LIMITS,
    min_signers: int = 1,
) -> Verifier:
    """The verifier a node of this role uses (``stream_key`` None: keyless, metadata only)."""
    return Verifier(
        stream_id,
        stream_key,
        trusted_signers=trusted_signers,
        limits=limits,
        max_retained_slots=VERIFIER_RETAINED_SLOTS,
        max_pending_per_source=16,  # half of the 32-object buffer: no sender can fill it alone
        require_manifest=settings.require_manifest,
        keep_plaintext=settings.role is Role.SUBSCRIBER,  # a relay checks plaintext but serves ciphertext
        min_signers=min_signers,
    )


@dataclass(frozen=True)
class _Held:
    data: bytes | None  # the plaintext (subscriber) or None (relay: already served)
    received_at: float


class NodeCore:
    """One stream's subscriber or relay, without I/O."""

    def __init__(
        self,
        settings: NodeSettings,
        verifier: Verifier,
        *,
        objects_peers: Sequence[str],
        manifests_peer: str | None,
        now: float,
        measure: Measure | None = None,
    ) -> None:
        if not objects_peers:
            raise ValueError("at least one objects peer is needed")
        self.settings = s = settings
        self.verifier = verifier
        self.ledger = PeerLedger(s.max_peer_rejections)
        self.links: dict[tuple[str, Track], Link] = {}
        for p in objects_peers:
            self.links[(p, Track.CHUNKS)] = Link(p, Track.CHUNKS, s.stall_s(False), since=now)
        self.manifests_peer = manifests_peer
        if manifests_peer is not None:
            self.links[(manifests_peer, Track.MANIFESTS)] = Link(
                manifests_peer, Track.MANIFESTS, s.stall_s(True), since=now
            )
        self._measure = measure
        self._reorder: Reorder[_Held] = Reorder(s.max_held)
        self.written = 0
        self.served = 0
        self.manifests = 0
        self.missing = 0  # chunk indices given up on (gaps), never vouched for, or listed but never received
        self._last_released = -1  # highest index the reorder buffer handed out
        self._unvouched: set[int] = set()  # indices whose objects were given up for want of a manifest
        self.served_by: Counter[str] = Counter()
        self.done: Exit | None = None
        self.finished = False  # relay: tracks finished after the upstream ended
        self._arrived: OrderedDict[int, float] = OrderedDict()  # chunk index -> first arrival, until used
        self._deferred: list[tuple[float, GroupReceived]] = []  # (due, group); it arrived penalty_s before due
        self._manifests_done = manifests_peer is None
        # When the manifests peer went away -- or, while it is up, since when it has sent nothing usable: a
        # rejected manifest does not count as arrived, so a leader whose every manifest is refused (another
        # signer than --trust-signer) times out like one that is gone, instead of filling the buffer forever.
        self._leader_gone_since: float | None = None
        self._start_hold_since: float | None = None  # the first release waits for objects pending below it
        self._usable_manifest_at = now  # the last usable manifest (or the start, or the last timeout)
        self._manifest_trouble: str | None = None  # why the manifests since then were unusable, for the exit line
        self._untrusted_said: set[tuple[str, ...]] = set()  # signer sets already named (each said once)
        self._objects_done_at: float | None = None
        self._manifests_ending: Ending | None = None  # the manifests track ended: over once its grace passes
        self._max_chunk_seen = -1  # highest chunk index received that decoded and was accepted or buffered
        self._max_manifest_seen = -1  # highest manifest group sequence received
        self._max_listed = -1  # highest chunk index a usable manifest covers
        # highest index any manifest from the leader covers, usable or refused: unvouched objects
        # above it are nobody's loss (anyone can seal objects for indices no leader ever named)
        self._max_claimed = -1
        self._objects_ending: Ending | None = None  # every objects track ended: the end waits for late groups
        self._fetched_hole: tuple[int, int] | None = None
        self._served_manifests: OrderedDict[int, None] = OrderedDict()
        self._lied_at: OrderedDict[int, set[str]] = OrderedDict()  # chunk index -> peers that served a lie there
        self._epoch_chunks = 1  # learned from accepted manifests
        self._waiting_said: str | None = None
        self._next_status = now + s.status_every_s

    # ------------------------------------------------------------------ the interface

    def handle(self, event: Input, now: float) -> list[Output]:
        """Apply one input observed at ``now``; return what to do, in order."""
        out: list[Output] = []
        if self.done is not None:
            return out
        link = self.links.get((event.peer, event.track))
        fetched_after_end = isinstance(event, GroupReceived) and event.backfilled and link is not None \
            and link.phase is LinkPhase.ENDED  # fmt: skip
        if link is None or (link.phase.final and not fetched_after_end):
            return out  # not a link of ours, or one we are finished with
        if isinstance(event, GroupReceived):
            if not fetched_after_end:
                self._activity(link, now, out)
            if event.track is Track.CHUNKS:
                self._object_arrived(event, now, out)
            else:
                self._manifest(event.payload, event.peer, event.sequence, now, out)
        elif isinstance(event, GroupTooLarge):
            if event.track is Track.CHUNKS:
                detail = "group over the size limit, refused"
                self._reject(event.sequence, RejectReason.TOO_LARGE, detail, event.peer, out)
            else:
                detail = "manifest over the size limit, refused"
                out.append(ManifestRejected("too_large", detail, event.peer))
                self._manifest_unusable(f"every manifest since was refused (too_large: {detail})", now)
        elif isinstance(event, LinkUp):
            resumed = link.phase is LinkPhase.STALLED
            link.enter(LinkPhase.UP, now)
            if event.track is Track.MANIFESTS:
                self._leader_gone_since = None
            out.append(LinkState("connected", link.peer, link.track, "resumed" if resumed else ""))
        elif isinstance(event, LinkLost):
            link.enter(LinkPhase.LOST, now)
            out.append(LinkState("lost", link.peer, link.track, event.detail))
            self._leader_away(link, now)
        elif isinstance(event, LinkGone):
            self._gone(link, event.detail, now, out)
        elif isinstance(event, TrackEnded):
            link.enter(LinkPhase.ENDED, now)
            out.append(LinkState("ended", link.peer, link.track))
            if event.track is Track.MANIFESTS and self._manifests_ending is None:
                self._manifests_ending = Ending.at(now, self.settings.end_grace_s)
        self._settle(now, out)
        return out

    def on_timer(self, now: float) -> list[Output]:
        """Time passed: stalls, reconnects, deferred copies, the hole, leader loss, the end, status."""
        out: list[Output] = []
        if self.done is not None:
            return out
        due = [d for d in self._deferred if d[0] <= now]
        self._deferred = [d for d in self._deferred if d[0] > now]
        for at, group in due:
            if not self.ledger.is_dropped(group.peer):
                self._object(group.payload, group.peer, at - self.settings.penalty_s, now, out, group.sequence)
        for link in self.links.values():
            self._link_timers(link, now, out)
        ending = self._manifests_ending
        if ending is not None and ending.until is not None and not ending.waiting(now):
            self._manifests_ended(ending, now, out)
        if now >= self._next_status:
            self._next_status = now + self.settings.status_every_s
            out.append(self.status())
        self._settle(now, out)
        return out

    def next_deadline(self) -> float | None:
        """The earliest time :meth:`on_timer` has something to do (None: only inputs can change anything)."""
        if self.done is not None:
            return None
        s = self.settings
        times: list[float] = [self._next_status]
        times += [d[0] for d in self._deferred]
        for link in self.links.values():
            for t in (
                link.stall_deadline(),
                link.reconnect_deadline(s.silent_stalls),
                link.give_up_deadline(s.reconnect_for_s),
            ):
                if t is not None:
                    times.append(t)
        if self._start_hold_since is not None and self._reorder.next is None:
            times.append(self._start_hold_since + s.reorder_s)
        hole_at = self._reorder.hole_since
        if hole_at is not None:
            times.append(hole_at + s.reorder_s)
            if self._reorder.hole() != self._fetched_hole:
                times.append(hole_at + s.backfill_s)
        if self._leader_gone_since is not None:
            times.append(self._leader_gone_since + s.manifest_timeout_s)
        for ending in (self._manifests_ending, self._objects_ending):
            if ending is not None and ending.until is not None:
                times.append(ending.until)
        if self._objects_done_at is not None and not self.finished:
            # (while a hole is still being fetched the end waits for that first: see _check_end)
            end_at = self._objects_done_at + s.manifest_timeout_s
            times.append(end_at if hole_at is None else max(end_at, hole_at + s.reorder_s))
        return min(times)

    def status(self) -> Status:
        """The counters as a report (also what the end of a run shows)."""
        v = self.verifier
        peers = {k[0]: lk.phase.value for k, lk in self.links.items() if k[1] is Track.CHUNKS}
        return Status(
            segments=self.written,
            served=self.served,
            rejected=self.ledger.faults,
            dropped=self.ledger.circumstance,
            manifests=self.manifests,
            pending=v.pending_count,
            pending_bytes=v.pending_bytes,
            rejected_by_reason=dict(self.ledger.by_reason),
            peers=peers,
            missing=self.missing,
            peers_dropped=sorted(self.ledger.dropped),
            upstream_faults=dict(self.ledger.upstream),
        )

    @property
    def held(self) -> int:
        """Accepted chunks waiting for an earlier index."""
        return len(self._reorder)

    # ------------------------------------------------------------------ objects

    def _object_arrived(self, group: GroupReceived, now: float, out: list[Output]) -> None:
        if self.ledger.is_dropped(group.peer):
            return
        s = self.settings
        if self.ledger.penalized(group.peer) and not group.backfilled:
            # a peer that lied before waits its turn: an honest copy that arrives meanwhile wins
            if len(self._deferred) >= s.max_deferred:
                self._deferred.pop(0)  # bounded: a flooding liar loses its oldest
            self._deferred.append((now + s.penalty_s, group))
            return
        self._object(group.payload, group.peer, now, now, out, group.sequence)

    def _object(self, payload: bytes, peer: str, arrived: float, now: float, out: list[Output], sequence: int) -> None:
        d = self.verifier.add_object(payload, source=peer)
        if d.verdict is Verdict.REJECTED and d.chunk_index is None and d.reason in PEER_FAULTS:
            self._note_lie(sequence, peer)  # undecodable: the group it came as is the index it lied about
        if d.chunk_index is not None and d.verdict in (Verdict.PENDING, Verdict.ACCEPTED):
            # (not the group's sequence: a peer can send any number there; this index passed the checks)
            self._max_chunk_seen = max(self._max_chunk_seen, d.chunk_index)
            self._arrived.setdefault(d.chunk_index, arrived)
            while len(self._arrived) > 4 * self.verifier.max_pending_objects + self.settings.max_held:
                self._arrived.popitem(last=False)  # bounded: figures only
        if d.verdict is Verdict.REJECTED:
            assert d.reason is not None
            self._reject(d.chunk_index, d.reason, d.detail, peer, out)
        self._dropped(d.dropped, out)
        self._accepted(d.released, now, out)

    def _note_lie(self, index: int, peer: str) -> None:
        """``peer`` served a lie at ``index``: never ask it for that index again (a hole's backfill)."""
        self._lied_at.setdefault(index, set()).add(peer)
        while len(self._lied_at) > _SEEN_WINDOW:
            self._lied_at.popitem(last=False)

    def _accepted(self, released: Iterable[AcceptedObject], now: float, out: list[Output]) -> None:
        s = self.settings
        for a in released:
            i = a.chunk_index
            arrived = self._arrived.pop(i, now)
            if s.role is Role.RELAY:
                out.append(ServeGroup(Track.CHUNKS, i, a.frame))
                self.served += 1
                self.served_by[a.source or UNKNOWN_PEER] += 1
                self._reorder.add(i, _Held(None, arrived), now)
            elif s.stop_after is None or self.written < s.stop_after:
                self._reorder.add(i, _Held(a.plaintext, arrived), now)

    def _dropped(self, dropped: Iterable[DroppedObject], out: list[Output]) -> None:
        """Buffered objects the verifier gave up on: each is charged to the peer that sent it."""
        for x in dropped:
            if x.reason is RejectReason.NO_MANIFEST and len(self._unvouched) < _SEEN_WINDOW:
                self._unvouched.add(x.chunk_index)
            self._reject(x.chunk_index, x.reason, x.detail, x.source or UNKNOWN_PEER, out)

    def _reject(self, index: int | None, reason: RejectReason, detail: str, peer: str, out: list[Output]) -> None:
        peer = peer or UNKNOWN_PEER
        c = self.ledger.charge(peer, reason)
        out.append(ObjectRejected(index, reason.value, detail, peer, c.fault, c.upstream))
        if (c.fault or c.upstream) and index is not None:
            self._note_lie(index, peer)  # whoever lied, this peer's copy of that index is false
        if c.drop:
            limit = self.ledger.max_rejections
            assert limit is not None
            out.append(PeerDropped(peer, c.rejections, reason.value, limit))
            out.append(ClosePeer(peer))
            for link in self.links.values():
                if link.peer == peer and not link.phase.final:
                    link.phase = LinkPhase.DROPPED
            self._deferred = [d for d in self._deferred if d[1].peer != peer]

    # ------------------------------------------------------------------ manifests

    def _manifest(self, payload: bytes, peer: str, sequence: int, now: float, out: list[Output]) -> None:
        s = self.settings
        self._max_manifest_seen = max(self._max_manifest_seen, sequence)
        if s.role is Role.RELAY and not s.require_manifest:
            self._pass_manifest(payload, peer, sequence, now, out)
            return
        d = self.verifier.add_manifest(payload)
        if d.manifest is not None:
            self._max_claimed = max(self._max_claimed, d.manifest.body.end_index - 1)
        if d.verdict is Verdict.REJECTED:
            assert d.reason is not None
            out.append(ManifestRejected(d.reason.value, d.detail, peer))
            if d.reason is RejectReason.UNTRUSTED_SIGNER and d.manifest is not None:
                self._untrusted(tuple(d.manifest.valid_signers()), peer, now, out)
            else:
                self._manifest_unusable(f"every manifest since was refused ({d.reason.value}: {d.detail})", now)
            return
        self._manifest_usable(now)  # accepted, or a copy of one that was (a fetched duplicate)
        if d.verdict is not Verdict.ACCEPTED or d.manifest is None:
            return
        body = d.manifest.body
        self._max_listed = max(self._max_listed, body.chunk_start_index + body.total_chunks - 1)
        self.manifests += 1
        self._epoch_chunks = max(1, body.total_chunks)
        out.append(ManifestAccepted(d.epoch, peer, d.manifest.manifest_id, d.pinned_signer))
        if s.role is Role.RELAY:
            self._serve_manifest(sequence, payload, out)  # before the objects it releases
        self._dropped(d.dropped, out)
        self._accepted(d.released, now, out)
        # objects far below what the leader now vouches for will never be covered: free their room
        self._dropped(self.verifier.drop_pending(body.chunk_start_index - 8 * body.total_chunks), out)

    def _pass_manifest(self, payload: bytes, peer: str, sequence: int, now: float, out: list[Output]) -> None:
        """A relay that does not verify passes manifests on if they parse and name this stream."""
        try:
            m = parse_manifest(payload, self.verifier.limits)
        except IntegrityRejection as e:
            out.append(ManifestRejected(e.reason.value, e.detail, peer))
            self._manifest_unusable(f"every manifest since was refused ({e.reason.value}: {e.detail})", now)
            return
        if m.body.stream_id != self.verifier.stream_id:
            detail = f"manifest is for {m.body.stream_id!r}"
            out.append(ManifestRejected(RejectReason.WRONG_STREAM.value, detail, peer))
            self._manifest_unusable(f"every manifest since was refused (wrong_stream: {detail})", now)
            return
        self._manifest_usable(now)
        self._epoch_chunks = max(1, m.body.total_chunks)
        if self._serve_manifest(sequence, payload, out):
            self.manifests += 1

    def _serve_manifest(self, sequence: int, payload: bytes, out: list[Output]) -> bool:
        if sequence < 0 or sequence in self._served_manifests:
            return False
        self._served_manifests[sequence] = None
        while len(self._served_manifests) > _SEEN_WINDOW:
            self._served_manifests.popitem(last=False)
        out.append(ServeGroup(Track.MANIFESTS, sequence, payload))
        return True

    def _manifests_ended(self, ending: Ending, now: float, out: list[Output]) -> None:
        """The manifests track's end passed its grace: fetch, once, what it overtook; then it is over."""
        owed = ending.settle(now, self._owed_manifests() if self.manifests_peer is not None else ())
        if owed:
            assert self.manifests_peer is not None
            out.append(Fetch(self.manifests_peer, Track.MANIFESTS, owed))
        else:
            self._manifests_over(out)

    def _owed_manifests(self) -> tuple[int, ...]:
        """Manifest sequences (epochs) that chunks received so far need and that never came (at most 64)."""
        e = self._epoch_chunks
        owed = {i // e for i in self.verifier.pending_indices()}
        if self._max_chunk_seen >= 0:  # chunks past the last manifest: theirs were overtaken too
            top = self._max_chunk_seen // e
            owed |= set(range(max(self._max_manifest_seen + 1, top - 63), top + 1))  # bounded
        return tuple(sorted(owed)[-64:])

    def _listed_tail(self) -> tuple[int, ...]:
        """Chunk indices above every chunk received that usable manifests list (at most 64)."""
        first = self._max_chunk_seen + 1
        last = min(self._max_listed, first + 63)
        return tuple(i for i in range(first, last + 1) if self.verifier.slot_state(i) is SlotState.PRESENT)

    def _manifests_over(self, out: list[Output]) -> None:
        """No more manifests will come: what waits for one never gets it."""
        if self._manifests_done:
            return
        self._manifests_done = True
        self._leader_gone_since = None
        self._dropped(self.verifier.drop_pending(), out)
        if self.settings.role is Role.RELAY:
            out.append(FinishTrack(Track.MANIFESTS))

    def _leader_away(self, link: Link, now: float) -> None:
        if link.track is Track.MANIFESTS and not self._manifests_done and self._leader_gone_since is None:
            self._leader_gone_since = now

    def _manifest_usable(self, now: float) -> None:
        """A usable manifest arrived: the leader is here."""
        self._leader_gone_since = None
        self._usable_manifest_at = now
        self._manifest_trouble = None

    def _manifest_unusable(self, why: str, now: float) -> None:
        """A manifest arrived but was refused: it does not count as arrived. The leader counts as away since
        the last usable one, so ``manifest_timeout_s`` of nothing usable ends the wait as if it were gone."""
        self._manifest_trouble = why
        if not self._manifests_done and self._leader_gone_since is None:
            self._leader_gone_since = self._usable_manifest_at

    def _untrusted(self, signers: tuple[str, ...], peer: str, now: float, out: list[Output]) -> None:
        """Manifests signed only by signers not trusted: say so once per signer set, in words; then wait no
        longer than for a missing leader."""
        trusted = tuple(sorted(self.verifier.trusted_signers))
        report = UntrustedSigner(list(signers), list(trusted), peer)
        if signers not in self._untrusted_said and len(self._untrusted_said) < 16:
            self._untrusted_said.add(signers)
            out.append(report)
        self._manifest_unusable(report.text(), now)

    # ------------------------------------------------------------------ links

    def _activity(self, link: Link, now: float, out: list[Output]) -> None:
        link.last_group_at = now
        if link.phase is LinkPhase.STALLED:
            out.append(LinkState("connected", link.peer, link.track, "resumed"))
        if link.phase is not LinkPhase.UP:
            link.enter(LinkPhase.UP, now)

    def _link_timers(self, link: Link, now: float, out: list[Output]) -> None:
        s = self.settings
        stall_at = link.stall_deadline()
        reconnect_at = link.reconnect_deadline(s.silent_stalls)
        give_up_at = link.give_up_deadline(s.reconnect_for_s)
        if stall_at is not None and now >= stall_at:
            link.enter(LinkPhase.STALLED, now)
            out.append(LinkState("stalled", link.peer, link.track, f"no group for {link.stall_s:g} s"))
            self._leader_away(link, now)
        elif reconnect_at is not None and now >= reconnect_at:
            silent = now - (link.last_group_at if link.last_group_at is not None else link.since - link.stall_s)
            link.enter(LinkPhase.LOST, now)
            # long silence: assume the connection is dead; reconnect rather than wait for QUIC
            out.append(LinkState("lost", link.peer, link.track, f"silent for {silent:.0f} s"))
            out.append(Reconnect(link.peer, link.track))
        elif give_up_at is not None and now >= give_up_at:
            assert link.lost_since is not None
            out.append(ClosePeer(link.peer, link.track))
            self._gone(link, f"unreachable for {now - link.lost_since:.0f} s", now, out)

    def _gone(self, link: Link, detail: str, now: float, out: list[Output]) -> None:
        s = self.settings
        was_away = self._leader_gone_since is not None
        link.enter(LinkPhase.GONE, now)
        out.append(LinkState("gone", link.peer, link.track, detail))
        objects = [lk for lk in self.links.values() if lk.track is Track.CHUNKS]
        if link.track is Track.CHUNKS:
            if s.role is Role.SUBSCRIBER and not link.ever_up and len(objects) == 1:
                self._exit(ExitCode.UNREACHABLE, f"objects peer {link.peer}: {detail}", out)
            return
        if s.role is Role.RELAY and s.require_manifest:
            # a verifying relay without manifests can never re-serve another object
            self._exit(ExitCode.UNREACHABLE, f"manifests upstream {link.peer} is gone: {detail}", out)
        elif s.role is Role.SUBSCRIBER and self.written == 0 and not was_away:
            self._exit(ExitCode.UNREACHABLE, f"manifests peer {link.peer}: {detail}", out)
        else:
            self._manifests_over(out)

    # ------------------------------------------------------------------ order, holes, the end

    def _settle(self, now: float, out: list[Output], final: bool = False) -> None:
        if self.done is not None:
            return
        self._release(now, out, final)
        self._backfill(now, out)
        s = self.settings
        if s.max_invalid is not None and self.ledger.faults > s.max_invalid:
            self._exit(
                ExitCode.INTEGRITY,
                f"{self.ledger.faults} objects rejected (more than --max-invalid-chunks {s.max_invalid})",
                out,
            )
        elif s.stop_after is not None and self.written >= s.stop_after:
            self._exit(ExitCode.OK, f"--stop-after {s.stop_after} reached", out)
        elif not final:
            self._check_end(now, out)

    def _release(self, now: float, out: list[Output], final: bool) -> None:
        s = self.settings
        if not final and self._holding_start(now):
            return
        items, holes = self._reorder.release(now, s.reorder_s, self._known_absent, final=final)
        for h in holes:
            log.warning("chunks %d..%d never arrived; moving on", h.first, h.last)
            self.missing += h.last - h.first + 1
            out.append(Gap(h.first, h.last))
        if items:
            self._last_released = max(self._last_released, max(index for index, _ in items))
        if items and self._unvouched:  # bounded: what the writer has passed is counted as gaps, if at all
            self._unvouched = {i for i in self._unvouched if i > self._last_released}
        for index, held in items:
            if held.data is not None and (s.stop_after is None or self.written < s.stop_after):
                nominal = s.chunk_ms
                duration = (self._measure(held.data, nominal) if self._measure else None) or nominal
                out.append(WriteSegment(index, held.data, duration, held.received_at))
                self.written += 1
            if s.ordered_output:  # anything still waiting for a manifest at or below it can never be written
                self._dropped(
                    self.verifier.drop_pending(index + 1, RejectReason.STALE, "its place in the output has passed"), out
                )
        if s.stop_after is not None and self.written >= s.stop_after:
            self._reorder.clear()

    def _holding_start(self, now: float) -> bool:
        """Before the first segment: wait (at most ``reorder_s``) while objects below the lowest accepted one
        still wait for their manifest, so a join whose later manifest came first starts at the earliest chunk."""
        r = self._reorder
        lowest = r.lowest()
        if not self.settings.ordered_output or r.next is not None or lowest is None:
            return False
        pending = self.verifier.pending_indices()  # sorted
        if not pending or pending[0] >= lowest:
            return False
        if self._start_hold_since is None:
            self._start_hold_since = now
        return now < self._start_hold_since + self.settings.reorder_s

    def _backfill(self, now: float, out: list[Output]) -> None:
        """A hole open for ``backfill_s``: fetch the missing chunks (and manifests) once, from every live peer."""
        hole = self._reorder.hole()
        since = self._reorder.hole_since
        s = self.settings
        if hole is None or since is None or hole == self._fetched_hole or now < since + s.backfill_s:
            return
        self._fetched_hole = hole
        first, end = max(hole[0], hole[1] - s.max_backfill), hole[1]
        pending = set(self.verifier.pending_indices())
        missing = tuple(i for i in range(first, end) if i not in pending)
        unknown = sorted({i // self._epoch_chunks for i in range(first, end)
                          if self.verifier.slot_state(i) is SlotState.UNKNOWN})  # fmt: skip
        for link in self.links.values():
            if link.phase not in _FETCHABLE:
                continue
            mine = tuple(i for i in missing if link.peer not in self._lied_at.get(i, ()))
            if link.track is Track.CHUNKS and mine:
                out.append(Fetch(link.peer, Track.CHUNKS, mine))
            elif link.track is Track.MANIFESTS and unknown and self.settings.require_manifest:
                out.append(Fetch(link.peer, Track.MANIFESTS, tuple(unknown)))

    def _known_absent(self, a: int, b: int) -> bool:
        """Do trusted manifests say indices a..b-1 produced no chunk (so nothing is missing)?

        Either every slot is listed empty, or the manifest of chunk b links it to a previous chunk
        (``prev_chunk_index`` in its signed metadata) below a, and its own earlier slots are empty.
        """
        v = self.verifier
        m = v.manifest_for(b)
        start = b if m is None else m.body.chunk_start_index
        prev = None if m is None else prev_chunk_index(m.body.metadata)
        if prev is not None and prev < a:
            return all(v.slot_state(i) is SlotState.ABSENT for i in range(max(a, start), b))
        if b - a > 4096:
            return False
        return all(v.slot_state(i) is SlotState.ABSENT for i in range(a, b))

    def _check_end(self, now: float, out: list[Output]) -> None:
        s = self.settings
        v = self.verifier
        if self._leader_gone_since is not None and now >= self._leader_gone_since + s.manifest_timeout_s:
            self._leader_gone_since = None
            self._usable_manifest_at = now  # (a relay waits a whole timeout again before it says so again)
            trouble, self._manifest_trouble = self._manifest_trouble, None
            self._dropped(v.drop_pending(), out)
            if trouble is not None:
                why = f"no usable manifest for {s.manifest_timeout_s:g} s: {trouble}"
            else:
                why = f"no manifests for {s.manifest_timeout_s:g} s (manifests peer gone)"
            if s.exits_without_manifests:
                self._exit(ExitCode.MANIFEST_TIMEOUT, why, out)
                return
            log.warning("%s; buffered objects dropped", why)
        if self.finished:
            return
        objects = [lk for lk in self.links.values() if lk.track is Track.CHUNKS]
        if not all(lk.phase.final for lk in objects) or self._deferred:
            return
        # every objects peer is finished or gone: wait for a hole being fetched, and for manifests still
        # owed, then end
        if self._objects_done_at is None:
            self._objects_done_at = now
            if any(lk.phase is LinkPhase.ENDED for lk in objects):
                self._objects_ending = Ending.at(now, s.end_grace_s)
        ending = self._objects_ending
        if ending is not None and ending.until is not None:
            if ending.waiting(now):
                return  # groups the end overtook may still arrive
            tail = ending.settle(now, self._listed_tail())  # manifests vouch for chunks that never came: ask once
            if tail:
                out.extend(Fetch(lk.peer, Track.CHUNKS, tail) for lk in objects if lk.phase in _FETCHABLE)
                return
        hole_at = self._reorder.hole_since
        if hole_at is not None and now < hole_at + s.reorder_s and any(lk.phase is LinkPhase.ENDED for lk in objects):
            return
        owed = v.pending_count > 0 and not self._manifests_done
        if owed and now < self._objects_done_at + s.manifest_timeout_s:
            self._say_waiting("manifests for the buffered objects", s.manifest_timeout_s, out)
            return
        if s.role is Role.RELAY and not any(lk.phase is LinkPhase.ENDED for lk in objects):
            why = ", ".join(f"{lk.peer}: {lk.phase.value}" for lk in objects)
            self._exit(ExitCode.UNREACHABLE, f"every objects upstream is lost or dropped ({why})", out)
            return
        if s.role is Role.SUBSCRIBER and not any(lk.ever_up for lk in objects):
            self._exit(ExitCode.UNREACHABLE, "no objects peer could be reached", out)
            return
        self._dropped(v.drop_pending(), out)  # arrived, but no usable manifest ever vouched for them
        self._release(now, out, final=True)
        # unvouched indices between released chunks were counted as gaps; those above the last one were
        # not, but only those a leader's manifest named are a loss
        self.missing += sum(1 for i in self._unvouched if self._last_released < i <= self._max_claimed)
        self._unvouched.clear()
        tail = self._listed_tail()  # vouched for, fetched once at the end, and still not here
        if tail:
            self.missing += len(tail)
            out.append(Gap(tail[0], tail[-1], reason="listed by a manifest, never received"))
        if s.exits_at_end:
            if s.stop_after is not None and self.written >= s.stop_after:
                self._exit(ExitCode.OK, f"--stop-after {s.stop_after} reached", out)
            elif self.missing:
                why = f"stream ended with {self.missing} chunk(s) missing"
                self._exit(ExitCode.INCOMPLETE, f"{why} ({self.written} segments written)", out)
            elif s.stop_after is None:
                self._exit(ExitCode.OK, "stream ended", out)
            else:
                self._exit(ExitCode.ENDED_EARLY, f"stream ended after {self.written} of {s.stop_after} segments", out)
            return
        self.finished = True
        out.append(FinishTrack(Track.CHUNKS))
        if self.manifests_peer is not None and not self._manifests_done:
            self._manifests_done = True
            self.links[(self.manifests_peer, Track.MANIFESTS)].phase = LinkPhase.ENDED
            out.append(FinishTrack(Track.MANIFESTS))
            out.append(ClosePeer(self.manifests_peer, Track.MANIFESTS))

    def _say_waiting(self, what: str, up_to_s: float, out: list[Output]) -> None:
        if self._waiting_said != what:
            self._waiting_said = what
            out.append(Waiting(what, up_to_s))

    def _exit(self, code: ExitCode, reason: str, out: list[Output]) -> None:
        self.done = Exit(code, reason)
        out.append(self.done)
