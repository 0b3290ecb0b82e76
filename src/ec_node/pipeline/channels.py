"""What a peer offers: the broadcasts it announces and what each one is (`ec-node channels`), and the
``--broadcast`` default of `moq-subscribe` and `relay` (:func:`resolve_broadcast`). One place for both.

A broadcast is described without trusting anything: its channel identity is parsed from the ec-node
stream id (PROTOCOL.md §2) that a manifest body or an object's header claims, else from the broadcast
name; its roles are found by reading one group of each track (bounded); the signer is the one a
manifest *claims* (its trust is never checked here -- that is the subscriber's ``--trust-signer``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ec_node.errors import UnreachableError, UsageError
from ec_node.integrity.errors import IntegrityFormatError, InvalidValueError
from ec_node.integrity.frames import CHUNKS_TRACK, MANIFESTS_TRACK, decode_frame
from ec_node.integrity.manifest import parse_manifest
from ec_node.integrity.stream_id import PREFIX, is_valid_stream_id, validate_stream_id
from ec_node.pipeline.peers import peer_name
from ec_node.pipeline.startup import read_startup_file
from ec_node.transport.addr import EndpointAddr, parse_endpoint_addr
from ec_node.transport.base import NotFoundError, PeerSession, Transport

log = logging.getLogger(__name__)

#: How long announcements are collected (moq-lite sends the live set at once; nothing says "that was all").
DEFAULT_WINDOW_S = 2.0
PROBE_TRACKS = (CHUNKS_TRACK, MANIFESTS_TRACK)
PROBE_CONCURRENCY = 8  # broadcasts probed at once (each probe may read one chunk of a few MB)

#: Manifest ``metadata`` keys read as the channel's number and name (the first present wins).
CHANNEL_NUMBER_KEYS = ("channel_number", "guide_number", "virtual_channel")
CHANNEL_NAME_KEYS = ("channel_name", "guide_name", "short_name", "callsign")

#: What reading one group of a track found.
SERVED, ABSENT, SILENT, ENDED, FAILED = "served", "absent", "silent", "ended", "failed"


# ------------------------------------------------------------------------------ channel identity


@dataclass(frozen=True)
class ChannelIdentity:
    """The segments of an ec-node stream id (PROTOCOL.md §2); values exactly as the id spells them."""

    form: str  # "broadcast" (mesh-convergent) or "source"
    kind: str  # broadcast: the standard (atsc | mpegts); source: hdhr | file | url | stdin
    segments: Mapping[str, str] = field(default_factory=dict)  # e.g. {"tsid": "2049", "program": "3", ...}

    @property
    def tsid(self) -> int | None:
        """The transport_stream_id (broadcast form)."""
        return _int(self.segments.get("tsid"))

    @property
    def program(self) -> int | None:
        """The PAT program number (broadcast form)."""
        return _int(self.segments.get("program"))

    @property
    def callsign(self) -> str | None:
        """The sanitized PSIP short name, if the id has one."""
        return self.segments.get("callsign")

    def to_json(self) -> dict[str, Any]:
        """JSON form: form, kind, then tsid/program as numbers and every other segment as text."""
        out: dict[str, Any] = {"form": self.form, "kind": self.kind}
        for name, value in self.segments.items():
            out[name] = _int(value) if name in ("tsid", "program") else value
        return out

    def describe(self) -> str:
        """A short human form: ``tsid 2049, program 3, call sign wsyn-hd (atsc)``."""
        seg = self.segments
        if self.form == "broadcast":
            parts = [f"tsid {seg.get('tsid', '?')}", f"program {seg.get('program', '?')}"]
            if "callsign" in seg:
                parts.append(f"call sign {seg['callsign']}")
            return ", ".join(parts) + f" ({self.kind})"
        labels = {"device": "device", "channel": "channel", "name": "file", "host": "host"}
        parts = [f"{label} {seg[k]}" for k, label in labels.items() if k in seg]
        return f"{self.kind} source" + (": " + ", ".join(parts) if parts else "")


def _int(value: str | None) -> int | None:
    # isdigit() alone admits "²" and other non-ASCII digits, which int() refuses
    return int(value) if value is not None and value.isascii() and value.isdigit() else None


def parse_stream_id(text: str) -> ChannelIdentity | None:
    """The identity in an ec-node stream id (found anywhere in ``text``, so a relay's path prefix is
    fine), or None for an explicit id such as ``la-nbc`` that follows no form."""
    marker = PREFIX + "/"
    at = text.find(marker)
    if at < 0:
        return None
    parts = text[at + len(marker) :].split("/")
    if len(parts) < 2 or parts[0] not in ("broadcast", "source") or not parts[1]:
        return None
    segments: dict[str, str] = {}
    for part in parts[2:]:
        name, sep, value = part.partition("-")
        if not sep or not name or not value or name in segments:
            return None  # not a segment of a derived id: treat the whole id as explicit
        segments[name] = value
    if parts[0] == "broadcast" and (_int(segments.get("tsid")) is None or _int(segments.get("program")) is None):
        return None
    return ChannelIdentity(parts[0], parts[1], segments)


# -------------------------------------------------------------------------------------- probing


@dataclass(frozen=True)
class ChannelInfo:
    """One announced broadcast as `ec-node channels` shows it."""

    broadcast: str
    tracks: Mapping[str, str]  # track -> SERVED | ABSENT | SILENT | ENDED | FAILED
    stream_id: str | None = None  # claimed by a manifest body or an object header, else the name if it is one
    identity: ChannelIdentity | None = None
    signers: tuple[str, ...] = ()  # signer ids a manifest claims (untrusted)
    channel_number: str | None = None  # from manifest metadata
    channel_name: str | None = None
    notes: tuple[str, ...] = ()  # what could not be read, one phrase each
    probe_s: float = DEFAULT_WINDOW_S

    @property
    def roles(self) -> list[str]:
        """The tracks a group was read from."""
        return [t for t in PROBE_TRACKS if self.tracks.get(t) == SERVED]

    def to_json(self) -> dict[str, Any]:
        """The ``--json`` line."""
        return {
            "broadcast": self.broadcast,
            "stream_id": self.stream_id,
            "identity": self.identity.to_json() if self.identity else None,
            "roles": self.roles,
            "tracks": dict(self.tracks),
            "signer_id_untrusted": self.signers[0] if self.signers else None,
            "signer_ids_untrusted": list(self.signers),
            "channel_number": self.channel_number,
            "channel_name": self.channel_name,
            "notes": list(self.notes),
        }

    def line(self) -> str:
        """The one human line."""
        parts = [self.broadcast]
        parts.append(self.identity.describe() if self.identity else "no ec-node stream id")
        if self.channel_number or self.channel_name:
            parts.append("channel " + " ".join(x for x in (self.channel_number, self.channel_name) if x))
        if self.stream_id and self.stream_id != self.broadcast:
            parts.append(f"stream id {self.stream_id}")
        roles = ", ".join(self.roles) or "none"
        other = {SILENT: f"no group within {self.probe_s:g} s", ENDED: "track ended, no group cached",
                 FAILED: "read failed"}  # fmt: skip
        unsure = [f"{t}: {other[s]}" for t, s in self.tracks.items() if s in other]
        parts.append(f"roles: {roles}" + (f" ({'; '.join(unsure)})" if unsure else ""))
        if self.signers:
            parts.append("signer (untrusted claim): " + ", ".join(self.signers))
        parts += self.notes
        return " | ".join(parts)


async def _read_one(session: PeerSession, broadcast: str, track: str, timeout_s: float) -> tuple[str, bytes | None]:
    """(state, payload) of the first group the peer has of ``broadcast``/``track``, within ``timeout_s``."""
    try:
        async with asyncio.timeout(timeout_s):
            sub = await session.subscribe(broadcast, track)
            try:
                event = await sub.next()
            finally:
                await sub.close()
    except TimeoutError:
        return SILENT, None
    except NotFoundError:
        return ABSENT, None
    except UnreachableError as e:
        log.info("reading %s/%s failed: %s", broadcast, track, e)
        return FAILED, None
    if event is None:
        return ENDED, None
    return SERVED, (None if event.too_large else event.payload)


def _metadata_value(metadata: Mapping[str, Any], keys: tuple[str, ...]) -> str | None:
    for k in keys:
        v = metadata.get(k)
        if isinstance(v, str) and v or isinstance(v, int) and not isinstance(v, bool):
            return str(v)
    return None


async def describe_broadcast(session: PeerSession, broadcast: str, probe_s: float) -> ChannelInfo:
    """Read one group of each track (concurrently, each bounded by ``probe_s``) and say what they claim."""
    results = await asyncio.gather(*(_read_one(session, broadcast, t, probe_s) for t in PROBE_TRACKS))
    got = dict(zip(PROBE_TRACKS, results, strict=True))
    stream_id: str | None = None
    signers: tuple[str, ...] = ()
    number = name = None
    notes: list[str] = []
    manifest_bytes = got[MANIFESTS_TRACK][1]
    if manifest_bytes is not None:
        try:
            manifest = parse_manifest(manifest_bytes)
        except IntegrityFormatError as e:
            notes.append(f"manifest unreadable: {e}")
        else:
            stream_id = manifest.body.stream_id
            signers = tuple(dict.fromkeys(s.signer_id for s in manifest.signatures))
            number = _metadata_value(manifest.body.metadata, CHANNEL_NUMBER_KEYS)
            name = _metadata_value(manifest.body.metadata, CHANNEL_NAME_KEYS)
    object_bytes = got[CHUNKS_TRACK][1]
    if object_bytes is not None:
        try:
            meta = decode_frame(object_bytes).meta
        except IntegrityFormatError as e:
            notes.append(f"object unreadable: {e}")
        else:
            if stream_id is None and is_valid_stream_id(meta.stream_id):
                stream_id = meta.stream_id
    if stream_id is None and is_valid_stream_id(broadcast):
        stream_id = broadcast
    identity = (parse_stream_id(stream_id) if stream_id else None) or parse_stream_id(broadcast)
    return ChannelInfo(
        broadcast=broadcast,
        tracks={t: state for t, (state, _) in got.items()},
        stream_id=stream_id,
        identity=identity,
        signers=signers,
        channel_number=number,
        channel_name=name,
        notes=tuple(notes),
        probe_s=probe_s,
    )


# ---------------------------------------------------------------------------------- discovery


def check_broadcast_flag(value: str | None, default: str) -> None:
    """An explicit ``--broadcast`` must be a usable name: empty, padded or control characters are a usage
    error (exit 2), never silently the default (``default`` says what leaving the flag out gives)."""
    if value is None:
        return
    if not value.strip():
        raise UsageError(f"--broadcast is empty: give the broadcast name, or leave --broadcast out to {default}")
    try:
        validate_stream_id(value)
    except InvalidValueError as e:
        raise UsageError(f"--broadcast {value!r}: {str(e).replace('stream id', 'broadcast name')}") from None


def _say(text: str) -> None:
    sys.stderr.write(f"ec-node: {text}\n")
    sys.stderr.flush()


@contextlib.asynccontextmanager
async def _announcing(
    transport: Transport, addr: EndpointAddr, window_s: float, connect_timeout_s: float, say: Callable[[str], None]
) -> AsyncIterator[tuple[PeerSession, list[str]]]:
    """A session to ``addr`` and the broadcasts it announced within ``window_s`` (closed on exit)."""
    say(f"connecting to {peer_name(addr)} (up to {connect_timeout_s:g} s)")
    session = await transport.connect(addr, connect_timeout_s)
    try:
        say(f"collecting the broadcasts it announces ({window_s:g} s)")
        yield session, await session.announced("", window_s=window_s)
    finally:
        await session.close()


async def announced_broadcasts(
    transport: Transport,
    addr: EndpointAddr,
    *,
    window_s: float = DEFAULT_WINDOW_S,
    connect_timeout_s: float = 10.0,
    say: Callable[[str], None] = _say,
) -> list[str]:
    """The broadcasts ``addr`` announces within ``window_s`` (UnreachableError if it cannot be dialled)."""
    async with _announcing(transport, addr, window_s, connect_timeout_s, say) as (_, names):
        return names


async def list_channels(
    transport: Transport,
    addr: EndpointAddr,
    *,
    window_s: float = DEFAULT_WINDOW_S,
    connect_timeout_s: float = 10.0,
    say: Callable[[str], None] = _say,
) -> list[ChannelInfo]:
    """Every broadcast ``addr`` announces within ``window_s``, each described by :func:`describe_broadcast`."""
    async with _announcing(transport, addr, window_s, connect_timeout_s, say) as (session, names):
        if not names:
            return []
        say(f"reading one group of {' and '.join(PROBE_TRACKS)} of {len(names)} broadcast(s) "
            f"(up to {window_s:g} s each)")  # fmt: skip
        gate = asyncio.Semaphore(PROBE_CONCURRENCY)

        async def one(name: str) -> ChannelInfo:
            async with gate:
                return await describe_broadcast(session, name, window_s)

        return list(await asyncio.gather(*(one(n) for n in names)))


async def resolve_broadcast(
    remote: str,
    transport: Transport,
    *,
    connect_timeout_s: float = 10.0,
    window_s: float = DEFAULT_WINDOW_S,
    say: Callable[[str], None] = _say,
) -> str:
    """``--broadcast``'s default, from the first ``--remote``: the broadcast its ``@FILE`` startup object
    names, else the one broadcast the peer announces. Several: UsageError listing them; none:
    NotFoundError (exit 4); an unreachable peer: UnreachableError."""
    if remote.strip().startswith("@"):
        try:
            startup = read_startup_file(Path(remote.strip()[1:]))
        except UsageError:
            pass  # an EndpointAddr file, not a startup object: ask the peer (a bad path fails below)
        else:
            log.info("no --broadcast: using %r from %s", startup.broadcast, remote)
            return startup.broadcast
    addr = parse_endpoint_addr(remote)
    names = await announced_broadcasts(transport, addr, window_s=window_s, connect_timeout_s=connect_timeout_s,
                                       say=say)  # fmt: skip
    if len(names) == 1:
        say(f"no --broadcast: using {names[0]}, the one broadcast {peer_name(addr)} announces")
        return names[0]
    if not names:
        raise NotFoundError(f"no --broadcast, and {peer_name(addr)} announced no broadcast within {window_s:g} s")
    raise UsageError(f"several broadcasts: {', '.join(names)}; pass --broadcast")


__all__ = [
    "check_broadcast_flag",
    "ChannelIdentity",
    "ChannelInfo",
    "DEFAULT_WINDOW_S",
    "announced_broadcasts",
    "describe_broadcast",
    "list_channels",
    "parse_stream_id",
    "resolve_broadcast",
]
