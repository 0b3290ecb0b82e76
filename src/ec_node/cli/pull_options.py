"""The flags `moq-subscribe` and `relay` share (both pull a broadcast from peers), defined once."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click

from ec_node.errors import ExitCode
from ec_node.node.settings import DEFAULT_MAX_PEER_REJECTIONS
from ec_node.pipeline.node_shell import check_trust_flags
from ec_node.ts.chunker import DEFAULT_CHUNK_MS, MAX_CHUNK_MS, MIN_CHUNK_MS

F = TypeVar("F", bound=Callable[..., Any])

CHUNK_MS = click.IntRange(MIN_CHUNK_MS, MAX_CHUNK_MS)
_SECONDS = click.FloatRange(min=0, min_open=True)

#: option name -> PullConfig field, for the flags below
_FIELDS = {
    "remotes": "remotes", "remote_manifests": "remote_manifests", "stream_id": "stream_id",
    "require_manifest": "require_manifest", "trust_signers": "trust_signers", "min_signers": "min_signers",
    "network_secret": "network_secret",
    "chunk_ms": "chunk_ms", "connect_timeout": "connect_timeout_s", "manifest_timeout": "manifest_timeout_s",
    "reconnect_for": "reconnect_for_s", "max_peer_rejections": "max_peer_rejections",
    "max_frame_mb": "max_frame_mb", "receive_buffer_mb": "receive_buffer_mb", "json_": "json",
}  # fmt: skip


def pull_options(remote_help: str, manifests_help: str) -> Callable[[F], F]:
    """Add the shared pull flags to a click command."""
    options = [
        click.option("--remote", "remotes", multiple=True, required=True, metavar="ADDR", help=remote_help),
        click.option("--remote-manifests", metavar="ADDR", help=manifests_help),
        click.option("--stream-id", help="Stream id for keys and checks (default: the broadcast)."),
        click.option("--require-manifest", is_flag=True, help="Accept nothing a trusted manifest does not vouch for."),
        click.option("--trust-signer", "trust_signers", multiple=True, metavar="HEX",
                     help="Trusted manifest signer id (repeatable; needs --require-manifest; default: trust the "
                          "first signer seen)."),
        click.option("--min-signers", type=click.IntRange(1, 16), default=1, show_default=True, metavar="K",
                     help="Accept a manifest only when K distinct --trust-signer keys signed it (k-of-n leaders)."),
        click.option("--network-secret", metavar="HEX", help="Private-swarm secret mixed into the stream key."),
        click.option("--chunk-ms", type=CHUNK_MS, default=DEFAULT_CHUNK_MS, show_default=True,
                     help="Chunk duration: the clock of stall, reorder and backfill timers."),
        click.option("--connect-timeout", type=_SECONDS, default=10.0, show_default=True),
        click.option("--manifest-timeout", type=_SECONDS, default=30.0, show_default=True,
                     help=f"Seconds the manifests peer may be away (a subscriber then exits "
                          f"{ExitCode.MANIFEST_TIMEOUT:d}), or may owe manifests after the objects end."),
        click.option("--reconnect-for", type=_SECONDS, default=30.0, show_default=True,
                     help="Seconds a lost peer is retried before it counts as gone."),
        click.option("--max-peer-rejections", type=click.IntRange(0), default=DEFAULT_MAX_PEER_REJECTIONS,
                     show_default=True, help="Drop a peer once it has served more proven-invalid objects than this."),
        click.option("--max-frame-mb", type=click.IntRange(1, 1024), default=64, show_default=True,
                     help="Refuse objects larger than this (bounded memory)."),
        click.option("--receive-buffer-mb", type=click.IntRange(1, 1024), default=32, show_default=True,
                     help="Per-connection buffer for groups received but not yet read (memory vs bursts)."),
        click.option("--json", "json_", is_flag=True, help="JSON-lines events on stdout."),
    ]  # fmt: skip
    return stacked(options)


def stacked(options: list[Callable[[F], F]]) -> Callable[[F], F]:
    """One decorator applying ``options`` so that ``--help`` lists them in the given order."""

    def wrap(f: F) -> F:
        for opt in reversed(options):
            f = opt(f)
        return f

    return wrap


def pull_config(kw: dict[str, Any]) -> dict[str, Any]:
    """Take the shared flags out of a command's keyword arguments, as PullConfig fields.

    Flags that contradict each other are refused here, before the command starts: ``--trust-signer``
    without ``--require-manifest`` would verify nothing (a usage error, never silently ignored).
    """
    out = {field: kw.pop(opt) for opt, field in _FIELDS.items()}
    out["remotes"] = list(out["remotes"])
    out["trust_signers"] = list(out["trust_signers"])
    check_trust_flags(out["trust_signers"], out["require_manifest"], out["min_signers"])
    return out
