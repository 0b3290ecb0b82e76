"""`ec-node moq-publish` and `ec-node moq-subscribe`: flags in, one pipeline call out."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import click

from ec_node.cli.exits import documents_exits
from ec_node.cli.pull_options import CHUNK_MS, pull_config, pull_options
from ec_node.cli.serve_options import serving_config, serving_options
from ec_node.cli.url_options import url_peer_config, url_peer_options
from ec_node.errors import ExitCode
from ec_node.pipeline.channel_output import RENDITION_MODES
from ec_node.pipeline.hls import DEFAULT_HLS_WINDOW
from ec_node.pipeline.publish import PublishConfig, run_publish
from ec_node.pipeline.subscribe import SubscribeConfig, run_subscribe
from ec_node.ts.chunker import DEFAULT_CHUNK_MS


@documents_exits(
    ExitCode.OK,
    ExitCode.USAGE,
    ExitCode.BAD_INPUT,
    ExitCode.UNREACHABLE,
    ExitCode.TUNER_BUSY,
    ExitCode.CONFIG,
    ExitCode.OUTPUT,
)
@click.command("moq-publish")
@click.option(
    "--input",
    "input_",
    required=True,
    metavar="SRC",
    help="TS file, - (stdin), http(s):// TS URL, or hdhr://HOST[:PORT]/<GuideNumber>.",
)
@click.option("--duration", type=click.FloatRange(min=0, min_open=True), help="Stop ingest after S seconds.")
@click.option("--realtime", is_flag=True, help="Pace a file by its PCR instead of reading it as fast as possible.")
@serving_options()
@click.option("--stream-id", help="Explicit stream id (default: derived from the stream or source).")
@click.option("--broadcast", help="MoQ broadcast name (default: the stream id).")
@click.option("--network-secret", metavar="HEX", help="Private-swarm secret mixed into the stream key.")
@click.option(
    "--signing-key",
    type=click.Path(path_type=Path),
    help="Ed25519 key file made by `ec-node keygen -o PATH` (a missing file is an error, never made here).",
)
@click.option("--publish-manifests", is_flag=True, help="Sign and publish per-epoch manifests (leader).")
@click.option(
    "--cosign",
    metavar="ADDR",
    help="Another leader of the same broadcast (EndpointAddr, @FILE or URL): add this leader's signature "
    "to each of its manifests whose body this leader computed too (k-of-n; needs --signing-key).",
)
@click.option(
    "--publish-chunks",
    type=click.BOOL,
    default=True,
    show_default=True,
    metavar="true|false",
    help="Publish chunk objects; false makes a manifests-only leader.",
)
@click.option("--epoch-chunks", type=click.IntRange(1, 8192), default=1, show_default=True)
@click.option("--chunk-ms", type=CHUNK_MS, default=DEFAULT_CHUNK_MS, show_default=True)
@click.option("--startup-delay-ms", type=click.IntRange(0), default=0, help="Test helper: delay ingest.")
@click.option("--linger-ms", type=click.IntRange(0), default=0, help="Keep serving after the input ends.")
@click.option("--json", "json_", is_flag=True, help="A JSON 'published' event per chunk on stdout.")
@url_peer_options(push=True)
def moq_publish(
    input_: str,
    duration: float | None,
    realtime: bool,
    stream_id: str | None,
    broadcast: str | None,
    network_secret: str | None,
    signing_key: Path | None,
    publish_manifests: bool,
    cosign: str | None,
    publish_chunks: bool,
    epoch_chunks: int,
    chunk_ms: int,
    startup_delay_ms: int,
    linger_ms: int,
    json_: bool,
    **kw: Any,
) -> None:
    """Publish a stream over MoQ: chunk objects, signed manifests, or both.

    Prints one JSON line first: {"endpoint_addr", "broadcast", "stream_id", "tracks", "signer_id"};
    with --json, then {"event": "published", "chunk_index", "chunks", "objects", "manifests", "damaged"}
    per chunk.
    """
    cfg = PublishConfig(
        input=input_,
        duration_s=duration,
        realtime=realtime,
        stream_id=stream_id,
        broadcast=broadcast,
        network_secret=network_secret,
        signing_key=signing_key,
        publish_manifests=publish_manifests,
        cosign=cosign,
        publish_chunks=publish_chunks,
        epoch_chunks=epoch_chunks,
        chunk_ms=chunk_ms,
        startup_delay_ms=startup_delay_ms,
        linger_ms=linger_ms,
        json=json_,
        **serving_config(kw),
        **url_peer_config(kw),
    )
    asyncio.run(run_publish(cfg))


@documents_exits(
    ExitCode.OK,
    ExitCode.USAGE,
    ExitCode.UNREACHABLE,
    ExitCode.CONFIG,
    ExitCode.OUTPUT,
    ExitCode.INTEGRITY,
    ExitCode.ENDED_EARLY,
    ExitCode.MANIFEST_TIMEOUT,
)
@click.command("moq-subscribe")
@pull_options(
    "Objects peer (repeatable): EndpointAddr JSON, @FILE, or moql:// / moqt:// / https:// URL.",
    "Manifests peer (default: the first objects peer).",
)
@click.option(
    "--broadcast",
    help="MoQ broadcast name (default: from an --remote @FILE startup object, else the one broadcast "
    "the first --remote announces).",
)
@click.option("--subscribe-manifests", is_flag=True, help="Subscribe to the manifests track.")
@click.option(
    "--max-invalid-chunks",
    type=click.IntRange(0),
    default=None,
    help=f"Exit {ExitCode.INTEGRITY:d} once more than N objects are rejected (default: unlimited).",
)
@click.option(
    "--stop-after", type=click.IntRange(1), default=None, help=f"Exit {ExitCode.OK:d} once N segments are written."
)
@click.option("--output-dir", type=click.Path(path_type=Path), default=Path("hls"), show_default=True)
@click.option(
    "--hls-window",
    type=click.IntRange(0),
    default=DEFAULT_HLS_WINDOW,
    show_default=True,
    help="Segments kept in the live playlist (0 = all, an EVENT playlist that grows).",
)
@click.option(
    "--http",
    metavar="HOST:PORT",
    help="Serve the watch page, HLS, a virtual HDHomeRun and /status here (e.g. 127.0.0.1:8080; port 0 = any).",
)
@click.option(
    "--browser-rendition",
    type=click.Choice(RENDITION_MODES),
    default="auto",
    show_default=True,
    help="Also write an H.264/AAC rendition under OUTPUT_DIR/browser: auto = when the source is not browser-playable.",
)
@url_peer_options(push=False)
def moq_subscribe(
    broadcast: str | None,
    subscribe_manifests: bool,
    max_invalid_chunks: int | None,
    stop_after: int | None,
    output_dir: Path,
    hls_window: int,
    http: str | None,
    browser_rendition: str,
    **kw: Any,
) -> None:
    """Subscribe to a stream and write verified HLS (index.m3u8 + segment_NNNNNN.ts, master.m3u8).

    --remote may be repeated: every objects peer is pulled at once, the first verifiable copy of each
    chunk wins, stalled peers are noticed within two chunk durations and lying peers are dropped.
    It is done (ok) once --stop-after segments are written or, without --stop-after, the stream ends.
    """
    cfg = SubscribeConfig(
        broadcast=broadcast,
        subscribe_manifests=subscribe_manifests,
        max_invalid=max_invalid_chunks,
        stop_after=stop_after,
        output_dir=output_dir,
        hls_window=hls_window,
        http=http,
        browser_rendition=browser_rendition,
        **url_peer_config(kw),
        **pull_config(kw),
    )
    asyncio.run(run_subscribe(cfg))


COMMANDS = [moq_publish, moq_subscribe]
