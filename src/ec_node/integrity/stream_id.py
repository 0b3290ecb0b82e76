"""Canonical stream ids (ECP-0004/0089/0090): the mesh-wide name of a stream and its key id.

Two nodes tuned to the same broadcast must derive the same id without talking to each other, so the
broadcast form uses only what the transport stream itself says (PAT tsid + program, PSIP short name).
When the stream does not identify itself, a per-source id is used; it is stable for that source but
not convergent across the mesh. An explicit id always wins. See docs/PROTOCOL.md §2.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from pathlib import PurePath
from typing import Literal
from urllib.parse import urlsplit

import blake3

from ec_node.integrity.errors import InvalidValueError, StreamIdError

PREFIX = "ec/stream/v1"
MAX_STREAM_ID_BYTES = 256


@dataclass(frozen=True)
class BroadcastIdentity:
    """What the transport stream says about itself (filled by the TS/PSIP probe)."""

    transport_stream_id: int | None
    program_numbers: tuple[int, ...]
    has_psip: bool
    short_name: str | None


@dataclass(frozen=True)
class SourceHint:
    """Where the bytes came from; used only when the stream does not identify its broadcast."""

    kind: Literal["hdhr", "file", "url", "stdin"]
    device_id: str | None = None
    channel: str | None = None
    locator: str | None = None


_NOT_SEG = re.compile(r"[^a-z0-9.-]+")
_NOT_CALL = re.compile(r"[^a-z0-9-]+")


def _sanitize(value: str, pattern: re.Pattern[str]) -> str:
    """Lowercase, fold accents away, replace disallowed runs by one '-', trim '-' and '.' at the ends."""
    folded = unicodedata.normalize("NFKD", value).encode("ascii", "ignore").decode("ascii").lower()
    return pattern.sub("-", folded).strip("-.")


def _segment(name: str, value: str | int) -> str:
    text = _sanitize(str(value), _NOT_SEG)
    if not text:
        raise StreamIdError(f"cannot build a stream id: {name} {str(value)!r} has no usable characters")
    return f"{name}-{text}"


def broadcast_program(identity: BroadcastIdentity | None) -> int | None:
    """The single non-zero PAT program when the stream identifies one broadcast, else None."""
    if identity is None or identity.transport_stream_id is None:
        return None
    programs = sorted({p for p in identity.program_numbers if p != 0})
    if len(programs) != 1:
        return None  # no program, or an ambiguous multi-program PAT: no promotion (ECP-0090)
    return programs[0]


def derive_stream_id(
    identity: BroadcastIdentity | None,
    source: SourceHint,
    *,
    explicit: str | None = None,
    profile: str = "passthrough",
    variant: str = "source",
) -> str:
    """The canonical stream id for a stream; ``explicit`` (``--stream-id``) always wins."""
    if explicit is not None:
        return validate_stream_id(explicit)
    tail = f"{_segment('profile', profile)}/{_segment('variant', variant)}"
    program = broadcast_program(identity)
    if identity is not None and program is not None and identity.transport_stream_id is not None:
        tsid = identity.transport_stream_id
        if not 0 <= tsid <= 0xFFFF or not 0 < program <= 0xFFFF:
            raise StreamIdError(f"cannot build a stream id: tsid {tsid} / program {program} out of range")
        standard = "atsc" if identity.has_psip else "mpegts"
        parts = [PREFIX, "broadcast", standard, f"tsid-{tsid}", f"program-{program}"]
        if identity.has_psip and identity.short_name:
            call = _sanitize(identity.short_name, _NOT_CALL)
            if call:
                parts.append(f"callsign-{call}")
        return _derived(parts, tail)
    parts = [PREFIX, "source", source.kind]
    if source.kind == "hdhr":
        if not source.device_id or not source.channel:
            raise StreamIdError("cannot build a stream id: HDHomeRun source needs a device id and a channel")
        parts += [_segment("device", source.device_id), _segment("channel", source.channel)]
    elif source.kind == "file":
        if not source.locator:
            raise StreamIdError("cannot build a stream id: file source needs a path")
        parts.append(_segment("name", PurePath(source.locator).name))
    elif source.kind == "url":
        if not source.locator:
            raise StreamIdError("cannot build a stream id: URL source needs a URL")
        host = urlsplit(source.locator).hostname or "unknown"
        ref = blake3.blake3(source.locator.encode("utf-8")).hexdigest(length=8)
        parts += [_segment("host", host), f"ref-{ref}"]
    elif source.kind != "stdin":
        raise StreamIdError(f"cannot build a stream id: unknown source kind {source.kind!r}")
    return _derived(parts, tail)


def _derived(parts: list[str], tail: str) -> str:
    """Join a derived id; if it still is not valid (too long), that is the source's fault, not the caller's."""
    sid = "/".join(parts) + "/" + tail
    try:
        return validate_stream_id(sid)
    except InvalidValueError as e:
        raise StreamIdError(f"cannot build a stream id: {e}; give one explicitly") from None


def validate_stream_id(s: str) -> str:
    """Refuse (:class:`InvalidValueError`) ids that cannot be a MoQ broadcast name or a key-derivation input."""
    if not isinstance(s, str) or not s:
        raise InvalidValueError("stream id must be a non-empty string")
    if s != s.strip():
        raise InvalidValueError("stream id must not start or end with whitespace")
    try:
        n = len(s.encode("utf-8"))
    except UnicodeEncodeError:
        raise InvalidValueError("stream id is not valid Unicode text") from None
    if n > MAX_STREAM_ID_BYTES:
        raise InvalidValueError(f"stream id longer than {MAX_STREAM_ID_BYTES} bytes")
    for ch in s:
        if unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Zl", "Zp"):
            raise InvalidValueError(f"stream id contains a control character (U+{ord(ch):04X})")
    return s


def is_valid_stream_id(s: object) -> bool:
    """Whether ``s`` is a usable stream id, for checks on peer data that must not raise."""
    if not isinstance(s, str):
        return False
    try:
        validate_stream_id(s)
    except InvalidValueError:
        return False
    return True


__all__ = [
    "BroadcastIdentity",
    "MAX_STREAM_ID_BYTES",
    "SourceHint",
    "broadcast_program",
    "derive_stream_id",
    "is_valid_stream_id",
    "validate_stream_id",
]
