"""An IETF moq-transport subscriber (aiomoqt) for the interop tests; run by .venv-interop/bin/python.

    ietf_subscribe.py URL BROADCAST TRACK COUNT OUT [--timeout S] [--draft N]

URL is ``moqt://localhost:PORT`` (raw QUIC) or ``https://localhost:PORT`` (WebTransport). TLS
verification is OFF: aiomoqt cannot pin a certificate fingerprint (only verify-off or a CA file),
and this is a loopback interop test of the wire protocol, not of trust.

The ec-node broadcast name maps onto an IETF Track Namespace with one element per "/"-separated
part of the name (moq-rs's IETF layer joins the tuple back with "/"), and the track name is the
moq-rs track name. The subscription uses an ABSOLUTE_START filter from group 0 / object 0 so a late
joiner gets the publisher's history (the default LATEST_OBJECT filter would get none of it).

OUT gets JSON lines: one per object received,
``{"kind": "object", "group", "subgroup", "object", "size", "sha256", "status"}``, and one per group
whose subgroup stream ended cleanly (FIN), ``{"kind": "group", "group", "objects", "size", "sha256"}``
with the SHA-256 of its objects' payloads concatenated in object order (what a moq-rs subscriber
reads as the group). moq-rs's END_OF_TRACK (one 0-byte object, status 4, in the group after the
last) is logged as an object, not counted as a group.

Exits 0 once COUNT groups are complete; 1 if the track ends (PUBLISH_DONE and all of its Stream
Count streams ended, or the session closed) with fewer, on the timeout, or on an error, saying on
stderr what it was waiting for.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import logging
import sys
from typing import Any, TextIO
from urllib.parse import urlsplit

from aiomoqt.client import MOQTClient
from aiomoqt.track import SubscribedTrack
from aiomoqt.types import FilterType, ObjectStatus
from aiomoqt.utils.logger import set_log_level


def namespace_of(broadcast: str) -> tuple[bytes, ...]:
    """ec-node (moq-rs) broadcast path -> IETF Track Namespace tuple."""
    return tuple(part.encode() for part in broadcast.split("/") if part)


def say(text: str) -> None:
    print(f"ietf_subscribe: {text}", file=sys.stderr, flush=True)


class Receiver:
    """Objects and stream ends of one subscription, written to OUT as they happen."""

    def __init__(self, out: TextIO, count: int) -> None:
        self.out = out
        self.count = count
        self.hashers: dict[int, Any] = {}  # group -> sha256 over its objects so far
        self.sizes: dict[int, int] = {}
        self.objects: dict[int, int] = {}
        self.complete: list[int] = []  # groups whose stream ended cleanly, with a payload
        self.streams_ended = 0
        self.end_of_track: int | None = None
        self.expected_streams: int | None = None  # PUBLISH_DONE's Stream Count
        self.problems: list[str] = []
        self.done = asyncio.Event()

    def write(self, rec: dict[str, Any]) -> None:
        self.out.write(json.dumps(rec) + "\n")
        self.out.flush()

    def on_object(self, msg: Any, size: int, recv_us: int, group_id: int | None = None, subgroup: Any = None) -> None:
        group = group_id if group_id is not None else msg.group_id
        payload = bytes(msg.payload or b"")
        status = int(msg.status or 0)
        self.write(
            {
                "kind": "object",
                "group": group,
                "subgroup": subgroup,
                "object": msg.object_id,
                "size": len(payload),
                "sha256": hashlib.sha256(payload).hexdigest(),
                "status": status,
            }
        )
        if status == ObjectStatus.END_OF_TRACK:
            self.end_of_track = group
            return
        if status != ObjectStatus.NORMAL:
            return
        self.hashers.setdefault(group, hashlib.sha256()).update(payload)
        self.sizes[group] = self.sizes.get(group, 0) + len(payload)
        self.objects[group] = self.objects.get(group, 0) + 1

    def on_stream_end(self, group: int, subgroup: Any, clean: bool = True, reset_code: int = 0) -> None:
        self.streams_ended += 1
        if not clean:
            self.problems.append(f"group {group} stream reset (code {reset_code})")
        elif group in self.hashers:
            self.complete.append(group)
            self.write(
                {
                    "kind": "group",
                    "group": group,
                    "objects": self.objects[group],
                    "size": self.sizes[group],
                    "sha256": self.hashers.pop(group).hexdigest(),
                }
            )
        self.check()

    def on_done(self, msg: Any) -> None:
        self.expected_streams = getattr(msg, "stream_count", None)
        if self.expected_streams is None:
            self.expected_streams = self.streams_ended
        self.check()

    def check(self) -> None:
        if len(self.complete) >= self.count:
            self.done.set()
        elif self.expected_streams is not None and self.streams_ended >= self.expected_streams:
            self.done.set()  # the track is over and all its streams are in

    def waiting_for(self) -> str:
        what = f"{self.count} complete groups (have {len(self.complete)})"
        if self.expected_streams is not None:
            what += f"; PUBLISH_DONE came, {self.streams_ended} of its {self.expected_streams} streams ended"
        return what


async def run(args: argparse.Namespace) -> int:
    url = urlsplit(args.url)
    if url.scheme not in ("moqt", "https") or not url.hostname or not url.port:
        say(f"URL must be moqt://HOST:PORT or https://HOST:PORT, got {args.url!r}")
        return 2
    set_log_level(logging.ERROR)  # aiomoqt logs every message at INFO
    client = MOQTClient(
        url.hostname,
        url.port,
        path=url.path or None,
        use_quic=url.scheme == "moqt",
        verify_tls=False,  # no pinning in aiomoqt; see the module docstring
        supported_drafts=args.draft,
    )
    loop = asyncio.get_running_loop()
    deadline = loop.time() + args.timeout
    with open(args.out, "w", encoding="utf-8") as out:
        rx = Receiver(out, args.count)
        stage = f"the connection to {args.url}"
        try:
            async with asyncio.timeout_at(deadline), client.connect() as session:
                stage = "the MoQT session setup (CLIENT_SETUP / SERVER_SETUP)"
                await session.client_session_init()
                ns = namespace_of(args.broadcast)
                track = SubscribedTrack(
                    session, namespace=ns, trackname=args.track, on_object=rx.on_object, on_done=rx.on_done
                )
                stage = f"SUBSCRIBE_OK for namespace {ns} track {args.track!r}"
                await track.subscribe(
                    timeout=max(1.0, deadline - loop.time()),
                    filter_type=FilterType.ABSOLUTE_START,
                    start_group=0,
                    start_object=0,
                )
                session.register_stream_end_handler(track.track_alias, rx.on_stream_end)
                version = getattr(session, "negotiated_draft", None)
                say(f"subscribed (draft {version}); waiting for {args.count} complete groups of {args.track!r}")
                stage = "groups"
                closed = asyncio.ensure_future(session.async_closed())
                done = asyncio.ensure_future(rx.done.wait())
                try:
                    await asyncio.wait({closed, done}, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    closed.cancel()
                    done.cancel()
        except TimeoutError:
            say(f"timed out after {args.timeout:g} s waiting for " + (rx.waiting_for() if stage == "groups" else stage))
            return 1
        except Exception as exc:  # noqa: BLE001 - reported; the exit code says it failed
            shown = rx.waiting_for() if stage == "groups" else stage
            say(f"failed while waiting for {shown}: {type(exc).__name__}: {exc}")
            return 1
    for problem in rx.problems:
        say(problem)
    if len(rx.complete) < args.count:
        say(f"track ended with {len(rx.complete)} complete groups, wanted {args.count}")
        return 1
    say(f"done: {len(rx.complete)} complete groups, end of track at group {rx.end_of_track}")
    return 0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("url")
    p.add_argument("broadcast")
    p.add_argument("track")
    p.add_argument("count", type=int)
    p.add_argument("out")
    p.add_argument("--timeout", type=float, default=60.0)
    p.add_argument("--draft", type=int, default=None)
    return asyncio.run(run(p.parse_args()))


if __name__ == "__main__":
    sys.exit(main())
