"""An IETF moq-transport subscriber (aiomoqt) reads an ec-node listener's `chunks` track byte-identical
to a moq-rs subscriber, over raw QUIC (`moqt://`) and over WebTransport (`https://`).

aiomoqt needs Python >= 3.12, so it lives in its own venv, `.venv-interop` (made by
scripts/interop_venv.sh, which scripts/test.sh runs); without it these tests skip. The IETF side is
tests/interop/ietf_subscribe.py run by that venv's interpreter: it maps the broadcast name onto a
Track Namespace with one element per "/" part, subscribes with ABSOLUTE_START from group 0 (a late
join: the publisher has published everything before anyone subscribes) and writes one JSON line per
complete group with the SHA-256 of its payload. TLS verification is off on that side (aiomoqt cannot
pin a fingerprint; the certificate is ec-node's self-signed identity, valid for DNS:localhost only,
hence `localhost` in the URL). The moq-rs side is the project's own subscriber path
(`MoqTransport().connect(...)` / `subscribe(...)`), pinned to the node id as usual.

Every process is started and stopped by the test; everything binds and dials 127.0.0.1. Nothing is
synchronized by sleeping: we await the publisher's startup line, each group, the end of the track,
and the IETF subscriber's exit; T bounds each of those waits so a hang fails instead of hanging.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ec_node.transport.addr import endpoint_addr_from_obj
from ec_node.transport.moq_transport import MoqTransport

from support.procs import Node

ROOT = Path(__file__).resolve().parents[2]
INTEROP_PY = ROOT / ".venv-interop" / "bin" / "python"
IETF_SUBSCRIBE = Path(__file__).with_name("ietf_subscribe.py")
TRACK = "chunks"
T = 30.0  # bound on each awaited event

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not INTEROP_PY.exists(),
        reason=f"no {INTEROP_PY.relative_to(ROOT)} (aiomoqt needs Python >= 3.12; run scripts/interop_venv.sh)",
    ),
]


async def _moq_rs_groups(endpoint: dict[str, Any], broadcast: str) -> dict[int, bytes]:
    """Every group of the track from the start, as the project's moq-rs subscriber reads it."""
    session = await MoqTransport().connect(endpoint_addr_from_obj(endpoint), timeout_s=T)
    try:
        sub = await session.subscribe(broadcast, TRACK, start=0)
        groups: dict[int, bytes] = {}
        try:
            while (event := await sub.next(T)) is not None:
                assert not event.too_large, f"group {event.sequence} refused as too large"
                groups[event.sequence] = event.payload
        finally:
            await sub.close()
        return groups
    finally:
        await session.close()


@pytest.fixture(scope="module")
def publisher(media_mpeg2: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[dict[str, Any], Path]]:
    """A lingering ec-node listener on 127.0.0.1 that has published (and finished) the whole input."""
    cwd = tmp_path_factory.mktemp("ietf-interop")
    with Node(
        ["moq-publish", "--input", str(media_mpeg2), "--listen", "127.0.0.1:0", "--linger-ms", "600000"],
        cwd,
        "publisher",
    ) as pub:
        startup = pub.startup()
        assert TRACK in startup["tracks"]
        yield startup, cwd


@pytest.fixture(scope="module")
def reference(publisher: tuple[dict[str, Any], Path]) -> dict[int, bytes]:
    startup, _ = publisher
    groups = asyncio.run(_moq_rs_groups(startup["endpoint_addr"], startup["broadcast"]))
    assert groups, "the moq-rs subscriber got no group"
    return groups


@pytest.mark.parametrize("scheme", ["moqt", "https"])
def test_ietf_subscriber_gets_chunks_byte_identical(
    scheme: str, publisher: tuple[dict[str, Any], Path], reference: dict[int, bytes]
) -> None:
    startup, cwd = publisher
    host, port = startup["endpoint_addr"]["addrs"][0].rsplit(":", 1)
    assert host == "127.0.0.1"
    url = f"{scheme}://localhost:{port}"  # the certificate names DNS:localhost only
    out = cwd / f"ietf-{scheme}.jsonl"
    argv = [str(INTEROP_PY), str(IETF_SUBSCRIBE), url, startup["broadcast"], TRACK, str(len(reference)), str(out)]
    # the script bounds its own wait by --timeout; run()'s timeout (larger) kills it if it ever hangs
    proc = subprocess.run(
        [*argv, "--timeout", str(T)], stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=T + 30
    )
    assert proc.returncode == 0, f"IETF subscriber failed ({proc.returncode}):\n{proc.stderr}"

    records = [json.loads(line) for line in out.read_text().splitlines()]
    got = {r["group"]: r for r in records if r["kind"] == "group"}
    want = {seq: hashlib.sha256(payload).hexdigest() for seq, payload in reference.items()}
    assert sorted(got) == sorted(want), f"groups over IETF {sorted(got)} != over moq-rs {sorted(want)}"
    for seq, payload in reference.items():
        assert got[seq]["size"] == len(payload), f"group {seq}: size differs"
        assert got[seq]["sha256"] == want[seq], f"group {seq}: payload differs"
    # whatever else arrived is moq-rs's END_OF_TRACK marker: one 0-byte object in the group after the last
    extra = [r for r in records if r["kind"] == "object" and r["group"] not in want]
    assert all(r["size"] == 0 and r["status"] == 4 and r["group"] > max(want) for r in extra), extra
