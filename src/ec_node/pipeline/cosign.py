"""Co-signing (k-of-n, ECP-0022): add this leader's signature to another leader's manifests, but only
to bodies this leader computed itself.

Why it works: version-2 manifest bodies hold nothing particular to a leader (PROTOCOL.md §7.2), so
two leaders tuned independently to the same broadcast compute byte-identical bodies and the same
``manifest_id``. A co-signer publishes, for each epoch, its own manifest with the other leader's
signatures added when (and only when) the other leader signed that same id. If the other leader
signed something else (it lies, or saw the broadcast differently) or nothing arrives in time, the
co-signer publishes its manifest with its own signature alone; a subscriber asking for
``--min-signers 2`` then accepts nothing that only one of them vouched for.

Sans-I/O: the clock is a parameter; the publisher shell feeds the other leader's manifests frames.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from dataclasses import dataclass, field

from ec_node.integrity.errors import IntegrityRejection
from ec_node.integrity.frames import DEFAULT_LIMITS
from ec_node.integrity.manifest import Manifest, ManifestSignature, check_manifest_body, parse_manifest

log = logging.getLogger(__name__)

#: Most epochs remembered on either side (own manifests waiting, the other leader's seen ahead).
MAX_EPOCHS = 64


@dataclass
class CosignStats:
    """What the co-signer did so far (for logs and events)."""

    agreed: int = 0  # published with the other leader's signatures
    alone: int = 0  # published with this leader's only (no agreeing manifest in time)
    disagreed: int = 0  # the other leader signed another body for an epoch
    refused: int = 0  # the other leader's frames that were not usable manifests of this stream
    disagreements: list[int] = field(default_factory=list)  # epochs, most recent last (bounded)


class CoSigner:
    """Holds this leader's manifests up to ``hold_ms`` for the other leader's signatures."""

    def __init__(self, stream_id: str, hold_ms: int, max_signatures: int = DEFAULT_LIMITS.max_signatures) -> None:
        self.stream_id = stream_id
        self.hold_ms = hold_ms
        self.max_signatures = max_signatures
        self.stats = CosignStats()
        self._own: OrderedDict[int, tuple[Manifest, int]] = OrderedDict()  # epoch -> (manifest, publish-by ms)
        self._theirs: OrderedDict[int, Manifest] = OrderedDict()  # the other leader's, for epochs not yet ours
        self._done: OrderedDict[int, None] = OrderedDict()  # epochs published

    def own(self, manifest: Manifest, now_ms: int) -> list[Manifest]:
        """This leader signed ``manifest``: publish it now if the other leader already agreed, else hold it."""
        epoch = manifest.body.epoch
        theirs = self._theirs.pop(epoch, None)
        if theirs is not None:
            return self._settle(epoch, manifest, theirs)
        self._own[epoch] = (manifest, now_ms + self.hold_ms)
        out = []
        while len(self._own) > MAX_EPOCHS:  # bounded: the oldest goes out alone
            old_epoch, (old, _) = self._own.popitem(last=False)
            out.append(self._alone(old_epoch, old))
        return out

    def theirs(self, data: bytes | bytearray | memoryview, now_ms: int) -> list[Manifest]:
        """A frame of the other leader's ``manifests`` track."""
        try:
            other = parse_manifest(data)
            check_manifest_body(other)
        except IntegrityRejection as exc:
            self.stats.refused += 1
            log.warning("co-signing: the other leader sent no usable manifest (%s)", exc)
            return []
        if other.body.stream_id != self.stream_id or not other.valid_signers():
            self.stats.refused += 1
            log.warning("co-signing: a manifest of another stream, or with no valid signature, ignored")
            return []
        epoch = other.body.epoch
        if epoch in self._done:
            return []
        held = self._own.pop(epoch, None)
        if held is not None:
            return self._settle(epoch, held[0], other)
        self._theirs[epoch] = other  # ahead of us: kept until we compute that epoch
        while len(self._theirs) > MAX_EPOCHS:
            self._theirs.popitem(last=False)
        return []

    def due(self, now_ms: int) -> list[Manifest]:
        """Held manifests whose wait is over: published with this leader's signature alone."""
        out = []
        for epoch, (manifest, deadline) in list(self._own.items()):
            if deadline <= now_ms:
                del self._own[epoch]
                out.append(self._alone(epoch, manifest))
        return out

    def flush(self) -> list[Manifest]:
        """The input ended: everything still held goes out (alone)."""
        out = [self._alone(epoch, m) for epoch, (m, _) in self._own.items()]
        self._own.clear()
        return out

    def _settle(self, epoch: int, mine: Manifest, other: Manifest) -> list[Manifest]:
        self._mark_done(epoch)
        if other.manifest_id != mine.manifest_id:
            self.stats.disagreed += 1
            self.stats.disagreements = [*self.stats.disagreements[-15:], epoch]
            log.warning(
                "co-signing: for epoch %d the other leader (%s) signed %s, this leader computed %s: not co-signed",
                epoch,
                ", ".join(other.valid_signers()),
                other.manifest_id,
                mine.manifest_id,
            )
            self.stats.alone += 1
            return [mine]
        valid = set(other.valid_signers())
        mine_ids = {s.signer_id for s in mine.signatures}
        added: list[ManifestSignature] = []
        for sig in other.signatures:
            if sig.signer_id in valid and sig.signer_id not in mine_ids:
                added.append(sig)
                mine_ids.add(sig.signer_id)
        sigs = (*mine.signatures, *added)[: self.max_signatures]
        self.stats.agreed += 1
        return [Manifest(mine.body, mine.manifest_id, sigs)]

    def _alone(self, epoch: int, manifest: Manifest) -> Manifest:
        self._mark_done(epoch)
        self.stats.alone += 1
        return manifest

    def _mark_done(self, epoch: int) -> None:
        self._done[epoch] = None
        while len(self._done) > 4 * MAX_EPOCHS:
            self._done.popitem(last=False)
