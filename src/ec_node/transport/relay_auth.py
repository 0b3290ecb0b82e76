"""How a node proves itself to, and pins, the peers it dials by URL (relays): pure, no I/O but reading a file.

A pinned node address (``{"id", "addrs"}``) is checked by its certificate's SHA-256. A URL peer is
checked with system roots, or with ``--tls-ca FILE`` (a self-signed dev relay), or pinned with
``--tls-fingerprint HEX``. Relays such as moq-relay take a JWT in the URL query (``?jwt=``): it comes
from ``--jwt-file`` or ``$EC_NODE_JWT``, never from argv, and every URL a node shows (logs, events,
errors, the startup object) goes through :func:`redact` first.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from ec_node.errors import ConfigError, UsageError

JWT_ENV = "EC_NODE_JWT"
MAX_TOKEN_BYTES = 16 * 1024
_FINGERPRINT_RE = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class UrlPeerOptions:
    """TLS pinning and credentials for every peer a command dials by URL."""

    tls_fingerprints: tuple[str, ...] = ()  # SHA-256 of acceptable certificates (hex)
    tls_ca: Path | None = None  # a PEM CA file instead of system roots
    jwt: str | None = field(default=None, repr=False)  # the token: a secret, never in a repr


def parse_fingerprint(value: str) -> str:
    """A certificate SHA-256 as 64 hex digits (colons and case tolerated), or UsageError."""
    fp = value.strip().replace(":", "").lower()
    if not _FINGERPRINT_RE.fullmatch(fp):
        raise UsageError(f"--tls-fingerprint must be a SHA-256 in hex (64 digits), got {len(fp)} characters")
    return fp


def load_jwt(path: Path | None, env: Mapping[str, str] = os.environ) -> str | None:
    """The relay token from ``path`` (whitespace trimmed) or ``$EC_NODE_JWT``; ConfigError if unusable."""
    if path is None:
        token = env.get(JWT_ENV, "").strip()
        return token or None
    try:
        st = path.stat()
        if st.st_size > MAX_TOKEN_BYTES:
            raise ConfigError(f"--jwt-file {path}: larger than {MAX_TOKEN_BYTES} bytes, not a token")
        if st.st_mode & (stat.S_IRGRP | stat.S_IROTH):
            raise ConfigError(f"--jwt-file {path} is readable by others: run: chmod 600 {path}")
        token = path.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"cannot read --jwt-file {path}: {getattr(e, 'strerror', None) or e}") from None
    if not token or any(c.isspace() for c in token):
        raise ConfigError(f"--jwt-file {path} does not hold one token")
    return token


def with_jwt(url: str, jwt: str | None) -> str:
    """``url`` with ``jwt=<token>`` in its query (a token already in the URL is kept)."""
    if not jwt:
        return url
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    if any(k == "jwt" for k, _ in query):
        return url
    return urlunsplit(parts._replace(query=urlencode([*query, ("jwt", jwt)])))


def redact(url: str) -> str:
    """``url`` safe to show: every query value hidden (tokens live there), the rest kept. Never raises:
    a URL that does not even split is shown without anything after its first ``?``."""
    try:
        parts = urlsplit(url)
    except ValueError:
        head, sep, _ = url.partition("?")
        return head + ("?…" if sep else "")
    if not parts.query:
        return url
    keys = [k for k, _ in parse_qsl(parts.query, keep_blank_values=True)]
    return urlunsplit(parts._replace(query="&".join(f"{k}=…" for k in keys) or "…"))


def has_token(url: str) -> bool:
    """Whether the URL itself carries a query (a token on the command line: others can read argv)."""
    return bool(urlsplit(url).query)
