"""The flags for peers dialled by URL (relays), defined once: pins, a CA, the token, and where to push."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from ec_node.cli.pull_options import stacked
from ec_node.transport.relay_auth import JWT_ENV, UrlPeerOptions, has_token, load_jwt, parse_fingerprint

F = TypeVar("F", bound=Callable[..., Any])


def url_peer_options(*, push: bool) -> Callable[[F], F]:
    """Add --tls-fingerprint/--tls-ca/--jwt-file (and --relay when the command can push) to a command."""
    options = [
        click.option("--tls-fingerprint", "tls_fingerprints", multiple=True, metavar="HEX",
                     help="Accept a URL peer's certificate by its SHA-256 (repeatable) instead of system roots."),
        click.option("--tls-ca", type=click.Path(path_type=Path, dir_okay=False), metavar="FILE",
                     help="PEM CA file for URL peers (a self-signed dev relay) instead of system roots."),
        click.option("--jwt-file", type=click.Path(path_type=Path, dir_okay=False), metavar="PATH",
                     help=f"Token for relays (sent as ?jwt=; file mode 0600). Default: ${JWT_ENV}. Never logged."),
    ]  # fmt: skip
    if push:
        options.insert(0, click.option(
            "--relay", "relays", multiple=True, metavar="URL",
            help="Also push the broadcast to this relay (moql://, moqt://, https://; repeatable): dial out, announce.",
        ))  # fmt: skip
    return stacked(options)


def url_peer_config(kw: dict[str, Any]) -> dict[str, Any]:
    """Take the URL-peer flags out of a command's keyword arguments, as config fields."""
    fps = tuple(parse_fingerprint(f) for f in kw.pop("tls_fingerprints"))
    out: dict[str, Any] = {"url_peers": UrlPeerOptions(fps, kw.pop("tls_ca"), load_jwt(kw.pop("jwt_file")))}
    if "relays" in kw:
        out["relays"] = list(kw.pop("relays"))
    for url in [*out.get("relays", []), *kw.get("remotes", ()), kw.get("remote_manifests") or ""]:
        if url and "://" in url and has_token(url):
            click.echo("ec-node: warning: a token in a URL on the command line is visible to other users; "
                       "use --jwt-file", err=True)  # fmt: skip
            break
    return out
