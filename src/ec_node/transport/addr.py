"""Peer addresses as the CLI takes them: an ``EndpointAddr`` JSON object, ``@PATH`` or a URL.

Pure: no sockets, no DNS. The only I/O is reading the ``@PATH`` file, bounded in size.

Accepted forms (one clear :class:`AddressError` for anything else):

* ``{"id": "<64 hex>", "addrs": ["host:port", ...], "cert_sha256": ["<64 hex>", ...]}`` -- the node
  id is the peer's Ed25519 node key (32 bytes in lowercase hex, as iroh's node ids are);
  ``cert_sha256`` (optional, at most 8) lists the SHA-256 of the TLS certificates it vouches for,
  which a dialler pins (an older node's id was its certificate's SHA-256, and still works as a pin).
  ``addrs`` entries may also be iroh's serde form ``{"Ip": "host:port"}``; ``{"Relay": url}``
  entries are skipped (no relay support), and at least one direct address must remain because this
  node has no discovery.
* ``@PATH`` -- a file holding that JSON, or a node's startup object (a JSON object whose
  ``endpoint_addr`` key holds that JSON, as an object or as a JSON string). If the whole file is not
  one JSON value, its first non-empty line is tried (a JSON-lines log whose first line is the startup
  object).
* ``moql://host:port``, ``moqt://host:port`` or ``https://host[:port][/path]`` -- a MoQ relay with a
  public certificate; it is verified with normal TLS (system roots), not pinned.
"""

from __future__ import annotations

import ipaddress
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

#: Largest ``@PATH`` file or JSON text we parse; an address never needs more.
MAX_ADDR_TEXT_BYTES = 64 * 1024
#: Most direct addresses one EndpointAddr may list.
MAX_ADDRS = 64
#: Most certificate hashes one EndpointAddr may list.
MAX_CERT_HASHES = 8
URL_SCHEMES = ("moql", "moqt", "https")

_ID_RE = re.compile(r"[0-9a-fA-F]{64}")
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_HOSTNAME_RE = re.compile(rf"(?=.{{1,253}}$){_LABEL}(?:\.{_LABEL})*\.?")


class AddressError(Exception):
    """An address argument is malformed; this pure parser names no exit code (the CLI maps it to usage)."""


@dataclass(frozen=True)
class EndpointAddr:
    """Where a peer is and who it must prove to be.

    Either ``id`` + ``addrs`` (a pinned node, with the hashes of the certificates it vouches for)
    or ``url`` (a relay checked with public TLS); never both.
    """

    id: str | None
    addrs: tuple[str, ...]
    url: str | None = None
    cert_sha256: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        """The JSON object form; a URL address becomes ``{"url": ...}``."""
        if self.url is not None:
            return {"url": self.url}
        out: dict[str, Any] = {"id": self.id, "addrs": list(self.addrs)}
        if self.cert_sha256:
            out["cert_sha256"] = list(self.cert_sha256)
        return out

    def to_arg(self) -> str:
        """A string that :func:`parse_endpoint_addr` turns back into this address."""
        if self.url is not None:
            return self.url
        return json.dumps(self.to_json(), separators=(",", ":"))


def parse_endpoint_addr(text: str) -> EndpointAddr:
    """Parse a CLI EndpointAddr argument (JSON, ``@PATH`` or URL); raise AddressError if malformed."""
    if not isinstance(text, str):
        raise AddressError("endpoint address must be a string")
    stripped = text.strip()
    if not stripped:
        raise AddressError("endpoint address is empty; give EndpointAddr JSON, @PATH or a moql:// URL")
    if stripped.startswith("@"):
        return _parse_file(stripped[1:])
    if stripped.startswith("{"):
        return _from_json_text(stripped, where="endpoint address")
    if "://" in stripped:
        return _parse_url(stripped)
    raise AddressError(
        f"endpoint address {_show(stripped)} is not EndpointAddr JSON, @PATH or a moql://, moqt:// or https:// URL"
    )


def endpoint_addr_from_obj(obj: object, where: str = "endpoint address", *, allow_startup: bool = True) -> EndpointAddr:
    """Validate a decoded ``{"id", "addrs"}`` object (or, if allowed, a startup object holding one)."""
    if not isinstance(obj, dict):
        raise AddressError(f"{where}: expected a JSON object with 'id' and 'addrs'")
    if allow_startup and "endpoint_addr" in obj and "id" not in obj:
        inner = obj["endpoint_addr"]
        if inner is None:
            relays = obj.get("relays")
            shown = ", ".join(r for r in relays if isinstance(r, str)) if isinstance(relays, list) else ""
            raise AddressError(
                f"{where}: that node does not listen (--no-listen); subscribe through a relay it pushes to"
                + (f": {shown}" if shown else "")
            )
        if isinstance(inner, str):
            return _parse_inner_string(inner, where=f"{where}: endpoint_addr")
        return endpoint_addr_from_obj(inner, where=f"{where}: endpoint_addr", allow_startup=False)
    if "id" not in obj:
        raise AddressError(f"{where}: missing 'id' (the peer's 64-hex-digit node id)")
    if "addrs" not in obj:
        raise AddressError(f"{where}: missing 'addrs' (a list of \"host:port\")")
    node_id = obj["id"]
    if not isinstance(node_id, str) or not _ID_RE.fullmatch(node_id):
        raise AddressError(f"{where}: 'id' must be 64 hex digits (a SHA-256), got {_show(node_id)}")
    raw_addrs = obj["addrs"]
    if not isinstance(raw_addrs, list):
        raise AddressError(f"{where}: 'addrs' must be a list of \"host:port\" strings")
    if len(raw_addrs) > MAX_ADDRS:
        raise AddressError(f"{where}: more than {MAX_ADDRS} addrs")
    addrs: list[str] = []
    for entry in raw_addrs:
        addr = _addr_entry(entry, where)
        if addr is not None and addr not in addrs:
            addrs.append(addr)
    if not addrs:
        raise AddressError(f'{where}: no direct "host:port" address (discovery and relays are not supported)')
    return EndpointAddr(id=node_id.lower(), addrs=tuple(addrs), cert_sha256=_cert_hashes(obj.get("cert_sha256"), where))


def _cert_hashes(raw: object, where: str) -> tuple[str, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list) or len(raw) > MAX_CERT_HASHES:
        raise AddressError(f"{where}: 'cert_sha256' must be a list of at most {MAX_CERT_HASHES} SHA-256 hex strings")
    out: list[str] = []
    for entry in raw:
        if not isinstance(entry, str) or not _ID_RE.fullmatch(entry):
            raise AddressError(f"{where}: 'cert_sha256' entry {_show(entry)} is not 64 hex digits")
        if entry.lower() not in out:
            out.append(entry.lower())
    return tuple(out)


def parse_host_port(text: str, where: str = "address", *, any_port: bool = False) -> tuple[str, int]:
    """Split ``host:port`` / ``[v6]:port``; the host is returned without brackets (port 0 only with any_port)."""
    if not isinstance(text, str) or not text or len(text) > 300:
        raise AddressError(f'{where}: {_show(text)} is not "host:port"')
    if text.startswith("["):
        close = text.find("]")
        if close < 0 or text[close + 1 : close + 2] != ":":
            raise AddressError(f'{where}: {_show(text)} is not "[ipv6]:port"')
        host, port_text = text[1:close], text[close + 2 :]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise AddressError(f"{where}: {_show(host)} is not an IPv6 address") from None
    else:
        host, sep, port_text = text.rpartition(":")
        if not sep or not host:
            raise AddressError(f'{where}: {_show(text)} is not "host:port"')
        if ":" in host:
            raise AddressError(f'{where}: IPv6 address {_show(text)} must be written "[addr]:port"')
        if not _is_ipv4(host) and not _HOSTNAME_RE.fullmatch(host):
            raise AddressError(f"{where}: {_show(host)} is not a valid host name or IP address")
    if not port_text.isascii() or not port_text.isdigit() or len(port_text) > 5:
        raise AddressError(f"{where}: port {_show(port_text)} is not a number")
    port = int(port_text)
    if not (0 if any_port else 1) <= port <= 65535:
        raise AddressError(f"{where}: port {port} is out of range {0 if any_port else 1}-65535")
    return host, port


def _addr_entry(entry: object, where: str) -> str | None:
    if isinstance(entry, dict) and len(entry) == 1:
        ((kind, value),) = entry.items()
        if kind == "Relay":
            return None  # a relay URL; we can only dial direct addresses
        if kind == "Ip":
            entry = value
    if not isinstance(entry, str):
        raise AddressError(f'{where}: addrs entry {_show(entry)} is not a "host:port" string')
    host, port = parse_host_port(entry, where=f"{where}: addrs entry")
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _is_ipv4(host: str) -> bool:
    try:
        ipaddress.IPv4Address(host)
    except ValueError:
        return False
    return True


def _parse_url(text: str) -> EndpointAddr:
    if len(text) > 2048:
        raise AddressError("endpoint URL is longer than 2048 characters")
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError as exc:
        raise AddressError(f"endpoint URL {_show(text)} is malformed: {exc}") from None
    scheme = parts.scheme.lower()
    if scheme not in URL_SCHEMES:
        raise AddressError(f"endpoint URL scheme {_show(parts.scheme)} is not one of moql, moqt, https")
    host = parts.hostname
    if not host:
        raise AddressError(f"endpoint URL {_show(text)} has no host")
    if port == 0:
        raise AddressError(f"endpoint URL {_show(text)} has port 0")
    if parts.username is not None or parts.password is not None:
        raise AddressError("endpoint URL must not carry user:password")
    if any(ch.isspace() for ch in text) or not text.isprintable():
        raise AddressError("endpoint URL contains whitespace or control characters")
    if ":" not in host and not _is_ipv4(host) and not _HOSTNAME_RE.fullmatch(host):
        raise AddressError(f"endpoint URL host {_show(host)} is not a valid host name or IP address")
    return EndpointAddr(id=None, addrs=(), url=text)


def _parse_file(path_text: str) -> EndpointAddr:
    if not path_text:
        raise AddressError("'@' must be followed by the path of an EndpointAddr or startup JSON file")
    path = Path(path_text)
    try:
        size = path.stat().st_size
        if size > MAX_ADDR_TEXT_BYTES:
            raise AddressError(f"endpoint address file {path} is larger than {MAX_ADDR_TEXT_BYTES} bytes")
        with path.open("rb") as fh:
            data = fh.read(MAX_ADDR_TEXT_BYTES + 1)
    except AddressError:
        raise
    except OSError as exc:
        raise AddressError(f"cannot read endpoint address file {path}: {exc.strerror or exc}") from None
    except ValueError:  # e.g. a NUL byte in the path
        raise AddressError(f"invalid endpoint address file name {path_text!r}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise AddressError(f"endpoint address file {path} is not UTF-8 text") from None
    where = f"endpoint address file {path}"
    try:
        obj = json.loads(text)
    except (ValueError, RecursionError):  # JSONDecodeError, and an integer beyond Python's digit limit
        first = next((line for line in text.splitlines() if line.strip()), "")
        try:
            obj = json.loads(first)
        except (ValueError, RecursionError):
            raise AddressError(f"{where} does not hold EndpointAddr or startup JSON") from None
    return endpoint_addr_from_obj(obj, where=where)


def _parse_inner_string(text: str, where: str) -> EndpointAddr:
    stripped = text.strip()
    if stripped.startswith("{"):
        return _from_json_text(stripped, where=where, allow_startup=False)
    if "://" in stripped:
        return _parse_url(stripped)
    raise AddressError(f"{where}: expected EndpointAddr JSON or a URL")


def _from_json_text(text: str, where: str, *, allow_startup: bool = True) -> EndpointAddr:
    if len(text) > MAX_ADDR_TEXT_BYTES:
        raise AddressError(f"{where}: JSON is longer than {MAX_ADDR_TEXT_BYTES} bytes")
    try:
        obj = json.loads(text)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, or an integer beyond Python's digit limit
        msg = exc.msg if isinstance(exc, json.JSONDecodeError) else "nested too deeply or a number too long"
        raise AddressError(f"{where}: invalid JSON ({msg})") from None
    return endpoint_addr_from_obj(obj, where=where, allow_startup=allow_startup)


def _show(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
