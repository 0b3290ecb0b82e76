"""`ec-node relay`: flags in, one pipeline call out."""

from __future__ import annotations

import asyncio
from pathlib import Path

import click

from ec_node.pipeline.relay import RelayConfig, run_relay


@click.command("relay")
@click.option("--remote", "remotes", multiple=True, required=True, metavar="ADDR",
              help="Objects upstream (repeatable): EndpointAddr JSON, @FILE, or moql:// / moqt:// / https:// URL.")
@click.option("--remote-manifests", metavar="ADDR",
              help="Manifests upstream (default with --require-manifest: the first --remote).")
@click.option("--listen", default="127.0.0.1:0", show_default=True, metavar="HOST:PORT")
@click.option("--broadcast", help="MoQ broadcast name (default: read from an --remote @PATH startup file).")
@click.option("--stream-id", help="Stream id for keys and checks (default: the broadcast).")
@click.option("--require-manifest", is_flag=True,
              help="Re-serve only objects and manifests that verify (pulls manifests from the first --remote).")
@click.option("--trust-signer", "trust_signers", multiple=True, metavar="HEX",
              help="Trusted manifest signer id (repeatable; default: trust the first signer seen).")
@click.option("--network-secret", metavar="HEX", help="Private-swarm secret (needed to verify its objects fully).")
@click.option("--keyless", is_flag=True,
              help="Without the network secret: check manifests and object metadata only, not ciphertext.")
@click.option("--identity", "identity_dir", type=click.Path(path_type=Path),
              help="Directory keeping this node's TLS identity (node id) across restarts.")
@click.option("--cache-mb", type=click.IntRange(1), default=64, show_default=True,
              help="Bound of the group cache served to peers (history for late joiners).")
@click.option("--receive-buffer-mb", type=click.IntRange(1, 1024), default=32, show_default=True,
              help="Per-upstream buffer for groups received but not yet read (memory vs bursts).")
@click.option("--addr-file", type=click.Path(path_type=Path), help="Also write the startup JSON here.")
@click.option("--max-peer-rejections", type=click.IntRange(0), default=16, show_default=True,
              help="Drop an upstream once it has served more than N invalid objects.")
@click.option("--connect-timeout", type=click.FloatRange(min=0, min_open=True), default=10.0, show_default=True)
@click.option("--manifest-timeout", type=click.FloatRange(min=0, min_open=True), default=30.0, show_default=True,
              help="Seconds to wait for manifests still owed after the objects end.")
def relay(remotes: tuple[str, ...], remote_manifests: str | None, listen: str, broadcast: str | None,
          stream_id: str | None, require_manifest: bool, trust_signers: tuple[str, ...],
          network_secret: str | None, keyless: bool, identity_dir: Path | None, cache_mb: int,
          receive_buffer_mb: int, addr_file: Path | None, max_peer_rejections: int, connect_timeout: float,
          manifest_timeout: float) -> None:
    """Re-serve a broadcast's chunks (and manifests) from upstream peers to any number of subscribers.

    Prints one JSON line first, like moq-publish: {"endpoint_addr", "broadcast", "stream_id",
    "tracks", "signer_id": null}. Runs until SIGINT/SIGTERM (exit 0), serving its cache after the
    upstream ends. Exit codes: 2 usage, 4 every upstream lost, 6 config, 7 --addr-file not writable.
    """
    cfg = RelayConfig(
        remotes=list(remotes), listen=listen, remote_manifests=remote_manifests, broadcast=broadcast,
        stream_id=stream_id, require_manifest=require_manifest, trust_signers=list(trust_signers),
        network_secret=network_secret, keyless=keyless, identity_dir=identity_dir, cache_mb=cache_mb,
        addr_file=addr_file, max_peer_rejections=max_peer_rejections, connect_timeout_s=connect_timeout,
        manifest_timeout_s=manifest_timeout, receive_buffer_mb=receive_buffer_mb,
    )
    asyncio.run(run_relay(cfg))


COMMANDS = [relay]
