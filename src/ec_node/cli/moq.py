"""`ec-node moq-publish` and `ec-node moq-subscribe`: flags in, one pipeline call out."""

from __future__ import annotations

import asyncio
from pathlib import Path

import click

from ec_node.pipeline.publish import PublishConfig, run_publish
from ec_node.pipeline.subscribe import SubscribeConfig, run_subscribe
from ec_node.ts.chunker import DEFAULT_CHUNK_MS, MAX_CHUNK_MS, MIN_CHUNK_MS

_CHUNK_MS = click.IntRange(MIN_CHUNK_MS, MAX_CHUNK_MS)


@click.command("moq-publish")
@click.option("--input", "input_", required=True, metavar="SRC",
              help="TS file, - (stdin), http(s):// TS URL, or hdhr://HOST[:PORT]/<GuideNumber>.")
@click.option("--duration", type=click.FloatRange(min=0, min_open=True), help="Stop ingest after S seconds.")
@click.option("--realtime", is_flag=True, help="Pace a file by its PCR instead of reading it as fast as possible.")
@click.option("--listen", default="127.0.0.1:0", show_default=True, metavar="HOST:PORT")
@click.option("--identity", "identity_dir", type=click.Path(path_type=Path),
              help="Directory keeping this node's TLS identity (node id) across restarts.")
@click.option("--stream-id", help="Explicit stream id (default: derived from the stream or source).")
@click.option("--broadcast", help="MoQ broadcast name (default: the stream id).")
@click.option("--network-secret", metavar="HEX", help="Private-swarm secret mixed into the stream key.")
@click.option("--signing-key", type=click.Path(path_type=Path), help="Ed25519 key file (made if missing).")
@click.option("--publish-manifests", is_flag=True, help="Sign and publish per-epoch manifests (leader).")
@click.option("--publish-chunks", type=click.BOOL, default=True, show_default=True, metavar="true|false",
              help="Publish chunk objects; false makes a manifests-only leader.")
@click.option("--epoch-chunks", type=click.IntRange(1, 8192), default=1, show_default=True)
@click.option("--chunk-ms", type=_CHUNK_MS, default=DEFAULT_CHUNK_MS, show_default=True)
@click.option("--startup-delay-ms", type=click.IntRange(0), default=0, help="Test helper: delay ingest.")
@click.option("--addr-file", type=click.Path(path_type=Path), help="Also write the startup JSON here.")
@click.option("--linger-ms", type=click.IntRange(0), default=0, help="Keep serving after the input ends.")
@click.option("--cache-mb", type=click.IntRange(1), default=64, show_default=True,
              help="Bound of the group cache served to peers (history for late joiners).")
def moq_publish(input_: str, duration: float | None, realtime: bool, listen: str, identity_dir: Path | None,
                stream_id: str | None, broadcast: str | None, network_secret: str | None,
                signing_key: Path | None, publish_manifests: bool, publish_chunks: bool, epoch_chunks: int,
                chunk_ms: int, startup_delay_ms: int, addr_file: Path | None, linger_ms: int,
                cache_mb: int) -> None:
    """Publish a stream over MoQ: chunk objects, signed manifests, or both.

    Prints one JSON line first: {"endpoint_addr", "broadcast", "stream_id", "tracks", "signer_id"}.
    Exit codes: 0 ok, 2 usage, 3 bad input, 4 unreachable source, 5 tuner busy, 6 config, 7 output.
    """
    cfg = PublishConfig(
        input=input_, duration_s=duration, realtime=realtime, listen=listen, identity_dir=identity_dir,
        stream_id=stream_id, broadcast=broadcast, network_secret=network_secret, signing_key=signing_key,
        publish_manifests=publish_manifests, publish_chunks=publish_chunks, epoch_chunks=epoch_chunks,
        chunk_ms=chunk_ms, startup_delay_ms=startup_delay_ms, addr_file=addr_file, linger_ms=linger_ms,
        cache_mb=cache_mb,
    )
    asyncio.run(run_publish(cfg))


@click.command("moq-subscribe")
@click.option("--remote", "remotes", multiple=True, required=True, metavar="ADDR",
              help="Objects peer: EndpointAddr JSON, @FILE, or moql:// / moqt:// / https:// URL.")
@click.option("--remote-manifests", metavar="ADDR", help="Manifests peer (default: the objects peer).")
@click.option("--broadcast", required=True, help="MoQ broadcast name.")
@click.option("--stream-id", help="Stream id for keys and checks (default: the broadcast).")
@click.option("--subscribe-manifests", is_flag=True, help="Subscribe to the manifests track.")
@click.option("--require-manifest", is_flag=True, help="Write nothing a trusted manifest does not vouch for.")
@click.option("--trust-signer", "trust_signers", multiple=True, metavar="HEX",
              help="Trusted manifest signer id (repeatable; default: trust the first signer seen).")
@click.option("--network-secret", metavar="HEX")
@click.option("--max-invalid-chunks", type=click.IntRange(0), default=None,
              help="Exit 8 once more than N objects are rejected (default: unlimited).")
@click.option("--stop-after", type=click.IntRange(1), default=None, help="Exit 0 once N segments are written.")
@click.option("--output-dir", type=click.Path(path_type=Path), default=Path("hls"), show_default=True)
@click.option("--hls-window", type=click.IntRange(0), default=0, show_default=True,
              help="Segments kept in the playlist (0 = all).")
@click.option("--json", "json_", is_flag=True, help="JSON-lines events on stdout.")
@click.option("--chunk-ms", type=_CHUNK_MS, default=DEFAULT_CHUNK_MS, show_default=True)
@click.option("--connect-timeout", type=click.FloatRange(min=0, min_open=True), default=10.0, show_default=True)
@click.option("--manifest-timeout", type=click.FloatRange(min=0, min_open=True), default=30.0, show_default=True,
              help="Exit 10 when the manifests peer is gone this long (or owes manifests after the objects end).")
@click.option("--max-peer-rejections", type=click.IntRange(0), default=3, show_default=True,
              help="Drop an objects peer once it has served more invalid objects than this.")
@click.option("--max-frame-mb", type=click.IntRange(1, 1024), default=64, show_default=True,
              help="Refuse objects larger than this (bounded memory).")
@click.option("--receive-buffer-mb", type=click.IntRange(1, 1024), default=32, show_default=True,
              help="Per-connection buffer for groups received but not yet read (memory vs bursts).")
def moq_subscribe(remotes: tuple[str, ...], remote_manifests: str | None, broadcast: str, stream_id: str | None,
                  subscribe_manifests: bool, require_manifest: bool, trust_signers: tuple[str, ...],
                  network_secret: str | None, max_invalid_chunks: int | None, stop_after: int | None,
                  output_dir: Path, hls_window: int, json_: bool, chunk_ms: int, connect_timeout: float,
                  manifest_timeout: float, max_peer_rejections: int, max_frame_mb: int,
                  receive_buffer_mb: int) -> None:
    """Subscribe to a stream and write verified HLS (index.m3u8 + segment_NNNNNN.ts).

    --remote may be repeated: every objects peer is pulled at once, the first verifiable copy of each
    chunk wins, stalled peers are noticed within two chunk durations and lying peers are dropped.

    Exit codes: 0 done (--stop-after reached or stream ended), 2 usage, 4 peer unreachable,
    7 output not writable, 8 integrity (more than --max-invalid-chunks rejected),
    9 stream ended before --stop-after, 10 manifests peer gone longer than --manifest-timeout.
    """
    cfg = SubscribeConfig(
        remotes=list(remotes), broadcast=broadcast, remote_manifests=remote_manifests, stream_id=stream_id,
        subscribe_manifests=subscribe_manifests, require_manifest=require_manifest,
        trust_signers=list(trust_signers), network_secret=network_secret, max_invalid=max_invalid_chunks,
        stop_after=stop_after, output_dir=output_dir, hls_window=hls_window, json=json_, chunk_ms=chunk_ms,
        connect_timeout_s=connect_timeout, manifest_timeout_s=manifest_timeout,
        max_peer_rejections=max_peer_rejections, max_frame_mb=max_frame_mb, receive_buffer_mb=receive_buffer_mb,
    )
    asyncio.run(run_subscribe(cfg))


COMMANDS = [moq_publish, moq_subscribe]
