"""The devkit's plain moq relay (origin fan-out) carries a real ec-node broadcast unchanged, and, in
accept mode, what publishers push into it (optionally behind moq-relay style JWTs).

Everything is real: `ec-node moq-publish` and `moq-subscribe` processes, the relay process, bare `moq`
clients as pushing publishers and subscribers, MoQ over QUIC on 127.0.0.1. Every process is stopped by
its context manager. No sleep synchronizes anything: tests await the relay's startup line, a track's
demand, a group, or a session's close. The only timed waits are the bounded negative checks (a refused
direction must show nothing within NEGATIVE_WAIT_S).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import moq
import pytest

from ec_node.devkit.plain_relay import AuthRejected, make_token, upstream_urls, verify_request
from ec_node.errors import ExitCode
from ec_node.pipeline.hls import segment_name
from ec_node.transport.addr import endpoint_addr_from_obj
from ec_node.ts.chunker import Chunk, Chunker

from support.procs import Node, addr_arg

STOP_AFTER = 3
HISTORY_US = 600_000_000
T = 15.0  # bound on every awaited event (a hung relay fails the test instead of hanging it)
NEGATIVE_WAIT_S = 1.0
SECRET = bytes(range(32))


def _plain_relay(cwd: Path, *args: str, name: str = "plain-relay") -> Node:
    return Node([], cwd, name, argv=[sys.executable, "-m", "ec_node.devkit.plain_relay", "-v", *args])


def _chunks(path: Path) -> list[Chunk]:
    ch = Chunker(2000)
    return [c for c in ch.feed(path.read_bytes()) + ch.flush() if c.complete]


async def _chunk_groups(
    endpoint: dict[str, Any], broadcast: str, count: int, timeout_s: float = 15.0
) -> dict[int, bytes]:
    """The first ``count`` groups of ``chunks`` (history from the start), read with a bare moq client."""
    urls, pins = upstream_urls(endpoint_addr_from_obj(endpoint))
    client = moq.Client(urls[0], tls_fingerprints=pins, reconnect=False)
    await asyncio.wait_for(client.__aenter__(), timeout_s)
    try:
        consumer = await asyncio.wait_for(client.announced_broadcast(broadcast).available(), timeout_s)
        track = await consumer.subscribe_track("chunks", moq.Subscription(max_age_us=HISTORY_US, group_start=0))
        groups: dict[int, bytes] = {}
        while len(groups) < count and (group := await asyncio.wait_for(track.recv_group(), timeout_s)) is not None:
            parts = []
            while (frame := await group.read_frame()) is not None:
                parts.append(frame.payload)
            groups[group.sequence] = b"".join(parts)
        return groups
    finally:
        await client.__aexit__(None, None, None)


def test_chunks_pass_through_the_plain_relay_byte_identical(media_mpeg2: Path, tmp_path: Path) -> None:
    expected = _chunks(media_mpeg2)[:STOP_AFTER]
    assert len(expected) == STOP_AFTER
    pub_json, relay_json, out = tmp_path / "pub.json", tmp_path / "relay.json", tmp_path / "hls"
    # --realtime: a live track. The moq origin fan-out cannot relay a track that had already finished
    # upstream when it was first asked for (a cancelled group, then an empty end): see plain_relay.
    with Node(["moq-publish", "--input", str(media_mpeg2), "--realtime", "--linger-ms", "600000",
               "--publish-manifests", "--addr-file", str(pub_json)], tmp_path, "publisher") as pub:  # fmt: skip
        sp = pub.startup()
        with _plain_relay(tmp_path, "--remote", f"@{pub_json}", "--listen", "127.0.0.1:0",
                          "--addr-file", str(relay_json)) as relay:  # fmt: skip
            sr = relay.startup()
            # ec-node's startup shape, its own node id, the publisher's broadcast and signer
            assert json.loads(relay_json.read_text()) == sr
            assert sr["endpoint_addr"]["id"] != sp["endpoint_addr"]["id"]
            assert sr["endpoint_addr"]["addrs"][0].startswith("127.0.0.1:")
            assert (sr["broadcast"], sr["stream_id"], sr["tracks"], sr["signer_id"]) == (
                sp["broadcast"], sp["stream_id"], sp["tracks"], sp["signer_id"],
            )  # fmt: skip
            with Node(["moq-subscribe", "--remote", addr_arg(sr), "--broadcast", sr["broadcast"],
                       "--subscribe-manifests", "--require-manifest", "--trust-signer", sp["signer_id"],
                       "--output-dir", str(out), "--json", "--max-invalid-chunks", "0",
                       "--stop-after", str(STOP_AFTER)], tmp_path, "subscriber") as sub:  # fmt: skip
                assert sub.wait() == 0, sub.stderr()
                events = sub.events()
            direct = asyncio.run(_chunk_groups(sp["endpoint_addr"], sp["broadcast"], STOP_AFTER))
            relayed = asyncio.run(_chunk_groups(sr["endpoint_addr"], sr["broadcast"], STOP_AFTER))
            assert relay.proc.poll() is None, relay.stderr()  # serves until stopped
        relay_err = relay.stderr()
    assert relay.proc.returncode == 0, relay_err  # SIGTERM: clean exit
    assert "session 1 accepted" in relay_err
    assert events[-1]["event"] == "end" and events[-1]["rejected"] == 0
    for chunk in expected:  # verified and decrypted by ec-node: the recording's own bytes
        assert (out / segment_name(chunk.index)).read_bytes() == chunk.data
    # the sealed objects themselves: same sequences, same bytes as straight from the publisher
    assert len(direct) == STOP_AFTER and relayed == direct


def test_unreachable_upstream_and_bad_listen_address_exit_with_codes(tmp_path: Path) -> None:
    nobody = json.dumps({"id": "a" * 64, "addrs": ["127.0.0.1:9"]})
    with _plain_relay(tmp_path, "--remote", nobody, "--connect-timeout", "1", name="unreachable") as r:
        assert r.wait(timeout=30) == ExitCode.UNREACHABLE, r.stderr()
        assert "cannot connect to upstream" in r.stderr()
    with _plain_relay(tmp_path, "--remote", nobody, "--listen", "0.0.0.0:0", name="wildcard") as r:
        assert r.wait(timeout=30) == ExitCode.USAGE, r.stderr()


# --- accept mode: publishers push in ------------------------------------------------------------------


def _accept_relay(tmp_path: Path, *args: str, name: str = "accept-relay") -> Node:
    return _plain_relay(
        tmp_path, "--accept", "--listen", "127.0.0.1:0", "--addr-file", str(tmp_path / f"{name}.json"), *args,
        name=name,
    )  # fmt: skip


def _group_frames(seq: int) -> list[bytes]:
    """Three frames of different sizes per group, distinct per group (up to ~30 kB)."""
    return [bytes([seq, f]) * (50 * (f + 1) ** 3) for f in range(3)]


class _Pusher:
    """A bare moq publisher that dials the relay and announces ``broadcast`` with one live track."""

    def __init__(self, url: str, fingerprint: str, broadcast: str) -> None:
        self.origin = moq.OriginProducer(cache_capacity_bytes=8 * 1024 * 1024)
        self.client = moq.Client(url, tls_fingerprints=[fingerprint], reconnect=False, publish=self.origin)
        self.broadcast_name = broadcast

    async def __aenter__(self) -> _Pusher:
        await asyncio.wait_for(self.client.__aenter__(), T)
        self.broadcast = self.origin.create_broadcast(self.broadcast_name)
        self.track = self.broadcast.publish_track("chunks")
        self.broadcast.announce()
        return self

    def write(self, seq: int) -> None:
        group = self.track.append_group()
        assert group.sequence == seq
        for frame in _group_frames(seq):
            group.write_frame(frame)
        group.finish()

    async def __aexit__(self, *exc: object) -> None:
        with contextlib.suppress(moq.Error):
            await self.client.__aexit__(None, None, None)


@contextlib.asynccontextmanager
async def _client(url: str, fingerprint: str) -> AsyncIterator[moq.Client]:
    client = moq.Client(url, tls_fingerprints=[fingerprint], reconnect=False)
    await asyncio.wait_for(client.__aenter__(), T)
    try:
        yield client
    finally:
        with contextlib.suppress(moq.Error):
            await client.__aexit__(None, None, None)


async def _subscribe(client: moq.Client, broadcast: str) -> tuple[moq.BroadcastConsumer, moq.TrackConsumer]:
    consumer = await asyncio.wait_for(client.announced_broadcast(broadcast).available(), T)
    sub = moq.Subscription(max_age_us=HISTORY_US, group_start=0)
    return consumer, await consumer.subscribe_track("chunks", sub)


async def _read(track: moq.TrackConsumer, count: int) -> dict[int, list[bytes]]:
    groups: dict[int, list[bytes]] = {}
    while len(groups) < count:
        group = await asyncio.wait_for(track.recv_group(), T)
        assert group is not None, f"track ended after {sorted(groups)}"
        frames = []
        while (frame := await asyncio.wait_for(group.read_frame(), T)) is not None:
            frames.append(frame.payload)
        groups[group.sequence] = frames
    return groups


def _expected(seqs: range) -> dict[int, list[bytes]]:
    return {s: _group_frames(s) for s in seqs}


def _where(startup: dict[str, Any]) -> tuple[str, str]:
    return startup["endpoint_addr"]["addrs"][0], startup["endpoint_addr"]["cert_sha256"][0]


def test_accept_mode_carries_a_pushed_broadcast_to_live_and_late_subscribers(tmp_path: Path) -> None:
    with _accept_relay(tmp_path) as relay:
        sr = relay.startup()
        assert json.loads((tmp_path / "accept-relay.json").read_text()) == sr
        assert re.fullmatch(r"[0-9a-f]{64}", sr["endpoint_addr"]["id"])
        assert sr["endpoint_addr"]["addrs"][0].startswith("127.0.0.1:")
        # no broadcast is known in accept mode: StartupObject has no null, so empty (documented)
        assert (sr["broadcast"], sr["stream_id"], sr["tracks"], sr["signer_id"]) == ("", "", [], None)
        addr, fp = _where(sr)

        async def scenario() -> tuple[dict[int, list[bytes]], ...]:
            async with _Pusher(f"moql://{addr}", fp, "demo") as pub, _client(f"moql://{addr}", fp) as live:
                _bc1, live_track = await _subscribe(live, "demo")
                reading = asyncio.create_task(_read(live_track, 3))  # a subscription is sent once polled
                await asyncio.wait_for(pub.track.used(), T)  # the relay subscribed upstream on demand
                for seq in range(3):
                    pub.write(seq)
                live_first = await reading
                async with _client(f"moql://{addr}", fp) as late:  # after the groups, track still live
                    _bc2, late_track = await _subscribe(late, "demo")
                    late_first = await _read(late_track, 3)
                    pub.write(3)
                    return live_first, late_first, await _read(live_track, 1), await _read(late_track, 1)

        live_first, late_first, live_next, late_next = asyncio.run(scenario())
        assert relay.proc.poll() is None, relay.stderr()
    err = relay.stderr()
    assert relay.proc.returncode == 0, err
    assert live_first == late_first == _expected(range(3))  # byte-identical, frame by frame, late join too
    assert live_next == late_next == _expected(range(3, 4))
    assert "broadcast 'demo' announced" in err
    assert "session 3 accepted at '', put/get" in err  # open relay: every session may do both


async def _rejected_after(url: str, fp: str) -> tuple[BaseException, float]:
    """How the relay's refusal shows: the session closes right after the handshake (or, when the
    close arrives first, the connect itself fails with it)."""
    with pytest.raises(moq.Error.Protocol) as info:
        async with _client(url, fp) as client:
            assert client.session is not None
            await asyncio.wait_for(client.session.closed(), T)
    return info.value, 0.0


def _assert_unauthorized(exc: BaseException) -> None:
    detail = moq.protocol_error(exc)
    assert detail is not None
    assert (detail.scope, detail.code, detail.kind) == (moq.ErrorScope.SESSION, 2, moq.ProtocolKind.UNAUTHORIZED)
    assert moq.is_auth(exc)


def test_jwt_relay_admits_valid_tokens_and_rejects_the_rest(tmp_path: Path) -> None:
    key = tmp_path / "relay.key"
    key.write_bytes(SECRET)
    key.chmod(0o600)
    full = make_token(SECRET, root="ec", put=[""], get=[""])
    reader = make_token(SECRET, root="ec", get=[""])
    bad = {
        "wrong-secret": make_token(b"x" * 32, root="ec", put=[""], get=[""]),
        "expired": make_token(SECRET, root="ec", put=[""], get=[""], ttl_s=-10),
        "outside-root": make_token(SECRET, root="other", put=[""], get=[""]),
        "narrow-put": make_token(SECRET, root="ec", put=["alice"], get=[""]),
    }
    with _accept_relay(tmp_path, "--jwt-key", str(key)) as relay:
        addr, fp = _where(relay.startup())

        async def scenario() -> dict[str, Any]:
            out: dict[str, Any] = {}
            # publisher over raw QUIC, subscriber over WebTransport: the token rides in the query of both
            async with (
                _Pusher(f"moql://{addr}/ec?jwt={full}", fp, "demo") as pub,
                _client(f"https://{addr}/ec/room?jwt={reader}", fp) as sub,
            ):
                _bc, track = await _subscribe(sub, "demo")
                reading = asyncio.create_task(_read(track, 2))
                await asyncio.wait_for(pub.track.used(), T)
                for seq in range(2):
                    pub.write(seq)
                out["groups"] = await reading
                for name, token in bad.items():
                    path = "ec/x" if name == "outside-root" else "ec"
                    out[name] = await _rejected_after(f"moql://{addr}/{path}?jwt={token}", fp)
                out["no-token"] = await _rejected_after(f"moql://{addr}/ec", fp)
                out["https-wrong-secret"] = await _rejected_after(f"https://{addr}/ec?jwt={bad['wrong-secret']}", fp)
                assert sub.session is not None
                out["still-open"] = not await _closes_within(sub.session, 0.0)
            return out

        got = asyncio.run(scenario())
        assert relay.proc.poll() is None, relay.stderr()
    err = relay.stderr()
    assert relay.proc.returncode == 0, err
    assert got["groups"] == _expected(range(2)) and got["still-open"]
    for case in (*bad, "no-token", "https-wrong-secret"):
        exc, _ = got[case]
        _assert_unauthorized(exc)
    for reason in ("token signature does not verify", "token expired", "outside the token's root",
                   "narrower than the relay can enforce", "no jwt in the URL query"):  # fmt: skip
        assert reason in err, err
    assert err.count("rejected (401)") == 5 and err.count("rejected (403)") == 1, err
    for token in (full, reader, *bad.values()):  # never logged, nor any part of its signature
        assert token not in err and token.rsplit(".", 1)[1] not in err
    assert "session 1 accepted at '/ec', put/get" in err and "session 2 accepted at '/ec/room', get (" in err


async def _closes_within(session: moq.Session, timeout_s: float) -> bool:
    try:
        await asyncio.wait_for(session.closed(), timeout_s)
    except TimeoutError:
        return False
    except moq.Error:
        pass
    return True


def test_jwt_refused_directions_see_and_carry_nothing_and_sessions_end_at_exp(tmp_path: Path) -> None:
    key = tmp_path / "relay.key"
    key.write_bytes(SECRET)
    key.chmod(0o600)
    full = make_token(SECRET, put=[""], get=[""])
    with _accept_relay(tmp_path, "--jwt-key", str(key)) as relay:
        addr, fp = _where(relay.startup())

        async def scenario() -> dict[str, Any]:
            out: dict[str, Any] = {}
            reader_only = make_token(SECRET, get=[""])  # may not put: its announcement goes nowhere
            writer_only = make_token(SECRET, put=[""])  # may not get: sees no broadcast
            async with (
                _Pusher(f"moql://{addr}/?jwt={full}", fp, "shown") as shown,
                _Pusher(f"moql://{addr}/?jwt={reader_only}", fp, "hidden"),
                _client(f"moql://{addr}/?jwt={full}", fp) as sub,
                _client(f"moql://{addr}/?jwt={writer_only}", fp) as blind,
            ):
                _bc, track = await _subscribe(sub, "shown")  # positive control
                reading = asyncio.create_task(_read(track, 1))
                await asyncio.wait_for(shown.track.used(), T)
                shown.write(0)
                out["shown"] = await reading

                async def absent(client: moq.Client, name: str) -> bool:
                    try:
                        await asyncio.wait_for(client.announced_broadcast(name).available(), NEGATIVE_WAIT_S)
                    except TimeoutError:
                        return True
                    return False

                out["hidden-absent"], out["blind-sees-nothing"] = await asyncio.gather(
                    absent(sub, "hidden"), absent(blind, "shown")
                )
            # a token that expires mid-session: accepted, then closed at exp as unauthorized
            short = make_token(SECRET, get=[""], ttl_s=2)
            async with _client(f"moql://{addr}/?jwt={short}", fp) as client:
                assert client.session is not None
                t0 = time.monotonic()
                with pytest.raises(moq.Error.Protocol) as info:
                    await asyncio.wait_for(client.session.closed(), T)
                out["expiry"] = info.value, time.monotonic() - t0
            return out

        got = asyncio.run(scenario())
        assert relay.proc.poll() is None, relay.stderr()
    err = relay.stderr()
    assert relay.proc.returncode == 0, err
    assert got["shown"] == _expected(range(1))
    assert got["hidden-absent"] and got["blind-sees-nothing"]
    assert "broadcast 'shown' announced" in err and "'hidden'" not in err
    exc, _ = got["expiry"]
    _assert_unauthorized(exc)
    assert "token expired, closing" in err


def test_pull_relay_with_jwt_relays_an_accept_relays_broadcast(tmp_path: Path) -> None:
    """publisher -> accept relay -> pull relay (JWT) -> subscriber: the two modes chain."""
    key = tmp_path / "relay.key"
    key.write_bytes(SECRET)
    key.chmod(0o600)
    with _accept_relay(tmp_path) as first:
        addr, fp = _where(first.startup())

        async def push_then_chain() -> tuple[dict[str, Any], tuple[BaseException, float], dict[int, list[bytes]]]:
            async with _Pusher(f"moql://{addr}", fp, "demo") as pub:
                with _plain_relay(
                    tmp_path, "--remote", json.dumps({"id": fp, "addrs": [addr]}), "--broadcast", "demo",
                    "--jwt-key", str(key), "--listen", "127.0.0.1:0", name="pull-relay",
                ) as second:  # fmt: skip
                    startup = await asyncio.to_thread(second.startup)  # it waited for 'demo' upstream
                    addr2, fp2 = _where(startup)
                    rejected = await _rejected_after(f"moql://{addr2}", fp2)
                    token = make_token(SECRET, get=[""])
                    async with _client(f"moql://{addr2}/?jwt={token}", fp2) as sub:
                        _bc, track = await _subscribe(sub, "demo")
                        reading = asyncio.create_task(_read(track, 3))
                        await asyncio.wait_for(pub.track.used(), T)  # demand crossed both relays
                        for seq in range(3):
                            pub.write(seq)
                        groups = await reading
                    assert second.proc.poll() is None, second.stderr()
                assert second.proc.returncode == 0, second.stderr()
                return startup, rejected, groups

        startup, (exc, _after), groups = asyncio.run(push_then_chain())
    assert first.proc.returncode == 0, first.stderr()
    assert (startup["broadcast"], startup["stream_id"], startup["tracks"]) == ("demo", "demo", ["chunks", "manifests"])
    _assert_unauthorized(exc)
    assert groups == _expected(range(3))


def test_accept_mode_bad_arguments_exit_2(tmp_path: Path) -> None:
    empty = tmp_path / "empty.key"
    empty.write_bytes(b"")
    cases = {
        "both-modes": ("--accept", "--remote", json.dumps({"id": "a" * 64, "addrs": ["127.0.0.1:9"]})),
        "no-mode": ("--listen", "127.0.0.1:0"),
        "missing-key": ("--accept", "--jwt-key", str(tmp_path / "nope.key")),
        "empty-key": ("--accept", "--jwt-key", str(empty)),
    }
    for name, args in cases.items():
        with _plain_relay(tmp_path, *args, name=name) as r:
            assert r.wait(timeout=30) == ExitCode.USAGE, (name, r.stderr())


# --- the token check itself (pure) ----------------------------------------------------------------------


def _grant(token: str, path: str) -> tuple[bool, bool]:
    g = verify_request(SECRET, path, f"x=1&jwt={token}")
    return g.publish, g.subscribe


def _reject(token: str | None, path: str, query: str | None = None) -> AuthRejected:
    with pytest.raises(AuthRejected) as info:
        verify_request(SECRET, path, query if token is None else f"jwt={token}")
    assert token is None or (token not in info.value.reason and token not in str(info.value))
    return info.value


def test_token_claims_reduce_to_the_request_path_like_moq_relay() -> None:
    assert _grant(make_token(SECRET, root="ec", put=[""], get=[""]), "/ec") == (True, True)
    assert _grant(make_token(SECRET, root="/ec/", put=[""], get=[""]), "ec//room/1/") == (True, True)
    assert _grant(make_token(SECRET, root="ec", get=[""]), "/ec") == (False, True)  # no put claim: read-only
    assert _grant(make_token(SECRET, root="ec", put=["room"], get=[""]), "/ec/room/cam") == (True, True)
    assert _grant(make_token(SECRET, root="ec", put=["room"], get=[""]), "/ec/hall") == (False, True)  # put drops
    assert _grant(make_token(SECRET, put=[""]), "") == (True, False)
    assert verify_request(SECRET, "/", f"jwt=&jwt={make_token(SECRET, get=[''])}").subscribe  # last non-empty
    assert _reject(make_token(SECRET, root="ec", put=["room/a"], get=[""]), "/ec/room").code == 403
    assert _reject(make_token(SECRET, root="ec", get=["b"]), "/ec").code == 403
    assert _reject(make_token(SECRET, root="ec", put=[""]), "/ecx").code == 401  # a segment, not a string prefix
    assert _reject(make_token(SECRET, root="ec/room", put=[""]), "/ec").code == 401  # above the root
    assert _reject(make_token(SECRET, root="ec"), "/ec").reason.startswith("token grants neither")
    assert _reject(make_token(SECRET, root="ec", put=["room"]), "/ec/hall").code == 401
    assert _reject(make_token(SECRET, get=[""], ttl_s=-1), "/").reason == "token expired"
    assert _reject(make_token(os.urandom(32), get=[""]), "/").reason == "token signature does not verify"
    assert _reject(None, "/", None).reason == "no jwt in the URL query"
    assert _reject(None, "/", "jwt=").reason == "no jwt in the URL query"
    assert _reject("not.a.token", "/").code == 401
    import jwt  # PyJWT: other algorithms and unsigned tokens are refused

    assert _reject(jwt.encode({"get": [""]}, SECRET * 2, algorithm="HS512"), "/").code == 401
    assert _reject(jwt.encode({"get": [""]}, None, algorithm="none"), "/").code == 401
    assert _reject(jwt.encode({"get": 5}, SECRET, algorithm="HS256"), "/").reason.startswith("claim 'get'")
    one = jwt.encode({"root": "ec", "put": "room", "get": ""}, SECRET, algorithm="HS256")  # strings, not lists
    assert _grant(one, "/ec/room") == (True, True)
    no_exp = jwt.encode({"get": [""]}, SECRET, algorithm="HS256")  # moq-relay: exp is optional
    assert verify_request(SECRET, "/", f"jwt={no_exp}").expires_at is None
