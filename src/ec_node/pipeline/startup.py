"""The startup object: the first JSON line of `moq-publish` and `relay`, and the ``--addr-file`` they write.

``{"endpoint_addr": {...}, "broadcast": str, "stream_id": str, "tracks": [str], "signer_id": str | null}``,
plus ``"relays": [url]`` when the node also pushes into relays (queries redacted)
(PROTOCOL.md §11.5). Written and read here only: other nodes dial ``endpoint_addr`` and subscribe to
``broadcast``; scripts and tests read it instead of log lines.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from ec_node.errors import UsageError
from ec_node.pipeline.aio import emit_json, write_json_file
from ec_node.transport.addr import MAX_ADDR_TEXT_BYTES, AddressError, EndpointAddr, endpoint_addr_from_obj
from ec_node.transport.base import Listener
from ec_node.transport.relay_auth import redact


@dataclass(frozen=True)
class StartupObject:
    """What a serving node tells the world once it listens and has announced its broadcast."""

    endpoint_addr: EndpointAddr | None  # None: the node does not listen (--no-listen), only pushes to relays
    broadcast: str
    stream_id: str
    tracks: tuple[str, ...]
    signer_id: str | None = None  # the leader's manifest signer, if it publishes manifests
    relays: tuple[str, ...] = ()  # relay URLs the broadcast is also pushed to (queries redacted)

    def to_json(self) -> dict[str, Any]:
        """The JSON object, keys in the documented order."""
        return {
            "endpoint_addr": self.endpoint_addr.to_json() if self.endpoint_addr is not None else None,
            "broadcast": self.broadcast,
            "stream_id": self.stream_id,
            "tracks": list(self.tracks),
            "signer_id": self.signer_id,
            **({"relays": [redact(u) for u in self.relays]} if self.relays else {}),
        }

    def announce(self, out: TextIO, addr_file: Path | None) -> None:
        """Write ``--addr-file`` (if given, atomically) and print the startup line."""
        if addr_file is not None:
            write_json_file(addr_file, self.to_json())
        emit_json(out, self.to_json())

    def follow(self, listener: Listener, addr_file: Path | None, emit: Callable[[dict[str, Any]], None]) -> None:
        """Route ``listener``'s events to ``emit``; on a certificate rotation also rewrite
        ``addr_file`` with the new ``cert_sha256`` (PROTOCOL.md §11.5), so readers keep a fresh pin."""

        def on_event(event: dict[str, Any]) -> None:
            if event.get("event") == "cert_rotated" and addr_file is not None:
                refreshed = dataclasses.replace(self, endpoint_addr=listener.endpoint_addr)
                write_json_file(addr_file, refreshed.to_json())
            emit(event)

        listener.on_event = on_event

    @classmethod
    def from_json(cls, obj: object, where: str = "startup object") -> StartupObject:
        """Validate a decoded startup object; UsageError naming ``where`` if it is not one."""
        if not isinstance(obj, dict) or "endpoint_addr" not in obj:
            raise UsageError(f"{where} holds no startup object")
        try:
            raw = obj["endpoint_addr"]
            ep = (
                None
                if raw is None
                else endpoint_addr_from_obj(raw, where=f"{where}: endpoint_addr", allow_startup=False)
            )
        except AddressError as e:
            raise UsageError(str(e)) from None
        broadcast, stream_id, tracks, signer = (obj.get(k) for k in ("broadcast", "stream_id", "tracks", "signer_id"))
        if not isinstance(broadcast, str) or not broadcast:
            raise UsageError(f"{where} has no broadcast name")
        if not isinstance(stream_id, str) or not stream_id:
            raise UsageError(f"{where} has no stream_id")
        if not isinstance(tracks, list) or not all(isinstance(t, str) for t in tracks):
            raise UsageError(f"{where}: tracks must be a list of names")
        if signer is not None and not isinstance(signer, str):
            raise UsageError(f"{where}: signer_id must be a string or null")
        relays = obj.get("relays", [])
        if not isinstance(relays, list) or not all(isinstance(r, str) for r in relays):
            raise UsageError(f"{where}: relays must be a list of URLs")
        return cls(ep, broadcast, stream_id, tuple(tracks), signer, tuple(relays))


def check_reachable(listen: str | None, relays: list[str]) -> None:
    """--no-listen without --relay would serve nobody: a usage error, before anything starts."""
    if listen is None and not relays:
        raise UsageError("--no-listen needs at least one --relay URL: otherwise nothing can reach the broadcast")


def shown_addr(addr: EndpointAddr | None) -> str:
    """How a log line shows where a node serves."""
    return json.dumps(addr.to_json(), separators=(",", ":")) if addr is not None else "no socket (--no-listen)"


def listener_event_level(event: dict[str, Any]) -> str:
    """Log level of a listener event: a rotation is routine; a refused or shed session is not."""
    return "info" if event.get("event") == "cert_rotated" else "warning"


def read_startup_file(path: Path) -> StartupObject:
    """The startup object in ``path`` (the whole file, or its first non-empty line: a JSON-lines log)."""
    try:
        with path.open("rb") as fh:
            data = fh.read(MAX_ADDR_TEXT_BYTES + 1)
    except OSError as e:
        raise UsageError(f"cannot read {path}: {e.strerror or e}") from None
    if len(data) > MAX_ADDR_TEXT_BYTES:
        raise UsageError(f"{path} is larger than a startup object can be")
    text = data.decode("utf-8", "replace")
    for candidate in (text, next((ln for ln in text.splitlines() if ln.strip()), "")):
        try:
            return StartupObject.from_json(json.loads(candidate), where=str(path))
        except (ValueError, RecursionError):  # JSONDecodeError, or an integer beyond Python's digit limit
            continue
    raise UsageError(f"{path} holds no startup object")


def broadcast_from_startup(remote: str) -> str:
    """The ``broadcast`` of a ``@PATH`` startup object (what `moq-publish`/`relay` print)."""
    hint = "pass --broadcast (it can only be read from an --remote @PATH startup file)"
    if not remote.startswith("@"):
        raise UsageError(f"no broadcast name: {hint}")
    try:
        return read_startup_file(Path(remote[1:])).broadcast
    except UsageError as e:
        raise UsageError(f"{e}: {hint}") from None
