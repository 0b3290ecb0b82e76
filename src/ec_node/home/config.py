"""The home node's config: TOML text in, one validated :class:`ChannelSpec` per channel out.

Pure: no file is read here (the runner reads the file and hands the text over; ``~`` is expanded
and relative paths are taken from the config file's folder). Every mistake is one
:class:`ConfigFileError` line naming the file and the key (``node.toml: channel[2] (7.1): roles:
unknown role 'leeder' ...``), exit 2. The format is documented by ``docs/node.example.toml``.

A channel is the unit the node starts, stops and restarts: its roles run together (a leader and
an objects publisher are one publisher; a relay and a watcher pull from it). Its source is a tuner
channel (``guide_number``), a file (``input``), or nothing local (``remotes`` only).
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ec_node.errors import UsageError
from ec_node.hdhr.api import format_host, parse_host
from ec_node.integrity.errors import InvalidValueError
from ec_node.integrity.keys import parse_signer_id
from ec_node.transport.addr import AddressError, parse_host_port
from ec_node.transport.relay_auth import parse_fingerprint

#: the roles a channel can take, in the order they start (a relay and a watcher pull from the publisher)
ROLES = ("leader", "objects", "relay", "watch")
# Groups a channel's publisher and relay keep for late joiners and backfill. Smaller than the 64 MB of a
# standalone moq-publish: 12 MB is three 1080i chunks (6 s), a reorder window and one more, which is what
# this node's own watchers and relays need, and it keeps 8 channels under 400 MB (docs/BENCHMARKS.md).
DEFAULT_CACHE_MB = 12
DEFAULT_STATE_DIR = "~/.ec-node/node"
DEFAULT_LISTEN = "127.0.0.1:0"
DEFAULT_STATUS_EVERY_S = 30.0
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_GUIDE = re.compile(r"[0-9]{1,4}(?:\.[0-9]{1,4})?")
_URL_SCHEMES = ("moql://", "moqt://", "https://")


class ConfigFileError(UsageError):
    """The config file is not valid TOML or not a valid node config (exit 2: the user edits the file)."""


@dataclass(frozen=True)
class ChannelSpec:
    """One channel as the node runs it; two equal specs run the same way (a reload keeps the channel)."""

    name: str
    roles: tuple[str, ...]
    source: str | None  # the publisher's --input (hdhr://HOST:PORT/GN or a file); None: remotes only
    guide_number: str | None = None  # set when the source is a tuner channel (it then takes a tuner)
    signing_key: Path | None = None
    listen: str = DEFAULT_LISTEN
    advertise: tuple[str, ...] = ()  # the publisher's addresses for peers (listening on 0.0.0.0)
    identity: Path = Path()
    relay_listen: str = DEFAULT_LISTEN
    relay_advertise: tuple[str, ...] = ()
    relay_identity: Path = Path()
    push: tuple[str, ...] = ()
    jwt_file: Path | None = None
    tls_fingerprints: tuple[str, ...] = ()  # pins for the relays dialled by URL (push, URL remotes)
    tls_ca: Path | None = None  # ... or a PEM CA file instead of the system roots
    remotes: tuple[str, ...] = ()
    remote_manifests: str | None = None
    trust_signers: tuple[str, ...] = ()
    watch_http: str | None = None
    output_dir: Path = Path()
    hls_window: int | None = None
    realtime: bool = True
    cache_mb: int = DEFAULT_CACHE_MB
    dir: Path = Path()  # the channel's folder under state_dir: address files, HLS by default

    @property
    def uses_tuner(self) -> bool:
        """Whether running this channel takes one of the device's tuners."""
        return self.guide_number is not None and self.publishes

    @property
    def publishes(self) -> bool:
        """Whether the channel has a local publisher (leader and/or objects)."""
        return "leader" in self.roles or "objects" in self.roles


@dataclass(frozen=True)
class NodeConfig:
    """The whole file: the node's own settings and its channels (``lineup_all``: add the lineup's others)."""

    path: Path
    state_dir: Path
    identity_dir: Path
    http: str | None
    log_file: Path | None
    status_every_s: float
    device: str | None  # HOST:PORT of the HDHomeRun's control port
    tuners: int | None  # None: ask the device (discover.json TunerCount)
    channels: tuple[ChannelSpec, ...]
    lineup_all: bool = False
    defaults: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def uses_tuner(self) -> bool:
        """Whether any channel takes a tuner (then the tuner count matters)."""
        return self.lineup_all or any(c.uses_tuner for c in self.channels)


# -- reading one table ----------------------------------------------------------------------------


class _Table:
    """A TOML table being read: each key taken once, type-checked; what is left over is unknown."""

    def __init__(self, data: object, where: str, err: Callable[[str], ConfigFileError]) -> None:
        if not isinstance(data, dict):
            raise err(f"{where}: must be a table")
        self.data = dict(data)
        self.where = where
        self.err = err

    def fail(self, key: str, why: str) -> ConfigFileError:
        return self.err(f"{self.where}.{key}: {why}")

    def has(self, key: str) -> bool:
        return key in self.data

    def str_(self, key: str, default: str | None = None) -> str | None:
        v = self.data.pop(key, None)
        if v is None:
            return default
        if not isinstance(v, str) or not v.strip():
            raise self.fail(key, f"must be a non-empty string, got {_show(v)}")
        return v.strip()

    def int_(self, key: str, default: int | None, lo: int, hi: int = 1 << 31) -> int | None:
        v = self.data.pop(key, None)
        if v is None:
            return default
        if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
            raise self.fail(key, f"must be a whole number from {lo} to {hi}, got {_show(v)}")
        return v

    def float_(self, key: str, default: float, lo: float) -> float:
        v = self.data.pop(key, None)
        if v is None:
            return default
        if isinstance(v, bool) or not isinstance(v, (int, float)) or v < lo:
            raise self.fail(key, f"must be a number >= {lo}, got {_show(v)}")
        return float(v)

    def bool_(self, key: str, default: bool) -> bool:
        v = self.data.pop(key, None)
        if v is None:
            return default
        if not isinstance(v, bool):
            raise self.fail(key, f"must be true or false, got {_show(v)}")
        return v

    def strs(self, key: str, *, one_ok: bool = False) -> tuple[str, ...] | None:
        v = self.data.pop(key, None)
        if v is None:
            return None
        if one_ok and isinstance(v, str):
            v = [v]
        if not isinstance(v, list) or not all(isinstance(x, str) and x.strip() for x in v):
            raise self.fail(key, f"must be a list of non-empty strings, got {_show(v)}")
        return tuple(x.strip() for x in v)

    def done(self) -> None:
        if self.data:
            key = sorted(self.data)[0]
            raise self.fail(key, "unknown key (see docs/node.example.toml)")


def _show(v: object) -> str:
    text = repr(v)
    return text if len(text) <= 60 else text[:57] + "..."


# -- the file -------------------------------------------------------------------------------------

_CHANNEL_KEYS = (
    "name", "guide_number", "input", "roles", "signing_key", "listen", "advertise", "identity",
    "relay_listen", "relay_advertise", "relay_identity", "push", "jwt_file", "tls_fingerprint", "tls_ca", "remotes",
    "remote_manifests",
    "trust_signer", "watch_http", "output_dir", "hls_window", "realtime", "cache_mb",
)  # fmt: skip
_PER_CHANNEL_ONLY = ("name", "guide_number", "input")


def parse_config(text: str, path: Path) -> NodeConfig:
    """Validate a config file's text (``path`` names it in errors and anchors its relative paths)."""

    def err(msg: str) -> ConfigFileError:
        return ConfigFileError(f"{path}: {msg}")

    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise err(f"not valid TOML: {e}") from None
    base = path.parent

    def p(v: str) -> Path:
        q = Path(v).expanduser()
        return q if q.is_absolute() else base / q

    top = _Table(data, "(top level)", err)
    node = _Table(top.data.pop("node", {}), "node", err)
    tuner = _Table(top.data.pop("tuner", {}), "tuner", err)
    defaults_raw = top.data.pop("defaults", {})
    channels_raw = top.data.pop("channel", [])
    if top.data:
        key = sorted(top.data)[0]
        raise err(f"{key}: unknown table or key (expected [node], [tuner], [defaults], [[channel]])")

    state_dir = p(node.str_("state_dir", DEFAULT_STATE_DIR) or DEFAULT_STATE_DIR)
    ident = node.str_("identity_dir")
    identity_dir = p(ident) if ident else state_dir / "identity"
    http = node.str_("http")
    if http is not None:
        _check_host_port(node, "http", http)
    log_file_text = node.str_("log_file")
    status_every_s = node.float_("status_every_s", DEFAULT_STATUS_EVERY_S, 1.0)
    node.done()

    device_text = tuner.str_("device")
    device = _device(tuner, device_text) if device_text else None
    tuners = tuner.int_("tuners", None, 1, 64)
    lineup_all = False
    listed: tuple[str, ...] = ()
    if tuner.has("channels"):
        v = tuner.data.get("channels")
        if v == "all":
            tuner.data.pop("channels")
            lineup_all = True
        else:
            listed = tuner.strs("channels") or ()
            for gn in listed:
                if not _GUIDE.fullmatch(gn):
                    raise tuner.fail("channels", f'{gn!r} is not a guide number such as "7.1" (or use "all")')
    tuner.done()

    defaults = _Table(defaults_raw, "defaults", err)
    for key in _PER_CHANNEL_ONLY:
        if defaults.has(key):
            raise defaults.fail(key, "is per channel: set it in a [[channel]] entry")
    for key in defaults.data:
        if key not in _CHANNEL_KEYS:
            raise defaults.fail(key, "unknown key (see docs/node.example.toml)")
    if not isinstance(channels_raw, list):
        raise err("channel: must be an array of tables ([[channel]])")

    cfg = NodeConfig(
        path=path,
        state_dir=state_dir,
        identity_dir=identity_dir,
        http=http,
        log_file=p(log_file_text) if log_file_text else None,
        status_every_s=status_every_s,
        device=device,
        tuners=tuners,
        channels=(),
        lineup_all=lineup_all,
        defaults=dict(defaults.data),
    )
    specs: list[ChannelSpec] = []
    for i, raw in enumerate(channels_raw, start=1):
        if not isinstance(raw, dict):
            raise err(f"channel[{i}]: must be a table")
        specs.append(_channel(cfg, {**cfg.defaults, **raw}, f"channel[{i}]", err, p, explicit=set(raw)))
    known = {s.guide_number for s in specs}
    for gn in listed:
        if gn not in known:
            specs.append(_lineup_channel(cfg, gn, err, p))
            known.add(gn)
    if not specs and not lineup_all:
        raise err('no channels: add [[channel]] entries or [tuner] channels = "all"')
    return _checked(replace(cfg, channels=tuple(specs)), err)


def with_lineup(cfg: NodeConfig, guide_numbers: list[str]) -> NodeConfig:
    """``[tuner] channels = "all"``: add every lineup channel not configured yet, with ``[defaults]``."""
    if not cfg.lineup_all:
        return cfg

    def err(msg: str) -> ConfigFileError:
        return ConfigFileError(f"{cfg.path}: {msg}")

    def p(v: str) -> Path:
        q = Path(v).expanduser()
        return q if q.is_absolute() else cfg.path.parent / q

    known = {c.guide_number for c in cfg.channels}
    added = [_lineup_channel(cfg, gn, err, p) for gn in guide_numbers if gn not in known and _GUIDE.fullmatch(gn)]
    return _checked(replace(cfg, channels=cfg.channels + tuple(added), lineup_all=False), err)


def _lineup_channel(
    cfg: NodeConfig, gn: str, err: Callable[[str], ConfigFileError], p: Callable[[str], Path]
) -> ChannelSpec:
    where = f"tuner.channels ({gn}, with [defaults])"
    if "roles" not in cfg.defaults:
        raise err(f"{where}: roles: [defaults] needs roles for the channels it lists")
    return _channel(cfg, {**cfg.defaults, "guide_number": gn}, where, err, p, explicit=set())


def _channel(
    cfg: NodeConfig,
    raw: dict[str, Any],
    where: str,
    err: Callable[[str], ConfigFileError],
    p: Callable[[str], Path],
    *,
    explicit: set[str],
) -> ChannelSpec:
    t = _Table(raw, where, err)
    gn = t.str_("guide_number")
    input_ = t.str_("input")
    name = t.str_("name") or gn or (Path(input_).stem if input_ else None)
    if name is None:
        raise t.fail("name", "a channel without guide_number or input needs a name")
    if not _NAME.fullmatch(name):
        raise t.fail("name", f"{name!r} must be letters, digits, '.', '_' or '-' (it names the channel's folder)")
    t.where = f"{where} ({name})"
    if gn is not None and not _GUIDE.fullmatch(gn):
        raise t.fail("guide_number", f'{gn!r} is not a guide number such as "7.1"')
    if gn is not None and input_ is not None:
        raise t.fail("input", "give guide_number (a tuner channel) or input (a file), not both")

    roles_raw = t.strs("roles", one_ok=True)
    if not roles_raw:
        raise t.fail("roles", f"missing: any of {', '.join(ROLES)}")
    for r in roles_raw:
        if r not in ROLES:
            raise t.fail("roles", f"unknown role {r!r} (expected {', '.join(ROLES)})")
    if len(set(roles_raw)) != len(roles_raw):
        raise t.fail("roles", "a role is listed twice")
    roles = tuple(r for r in ROLES if r in roles_raw)

    key_text = t.str_("signing_key")
    listen = t.str_("listen", DEFAULT_LISTEN) or DEFAULT_LISTEN
    relay_listen = t.str_("relay_listen", DEFAULT_LISTEN) or DEFAULT_LISTEN
    for key, value in (("listen", listen), ("relay_listen", relay_listen)):
        _check_host_port(t, key, value)
    advertise = t.strs("advertise") or ()
    relay_advertise = t.strs("relay_advertise") or ()
    for key, addrs in (("advertise", advertise), ("relay_advertise", relay_advertise)):
        for a in addrs:
            try:
                parse_host_port(a, key)
            except AddressError:
                raise t.fail(key, f'{a!r} is not "HOST:PORT" (the address peers dial)') from None
    identity_text = t.str_("identity")
    relay_identity_text = t.str_("relay_identity")
    push = t.strs("push") or ()
    for url in push:
        if not url.startswith(_URL_SCHEMES):
            raise t.fail("push", f"{url!r} must be a moql://, moqt:// or https:// relay URL")
    jwt_text = t.str_("jwt_file")
    pins = t.strs("tls_fingerprint", one_ok=True) or ()
    try:
        tls_fingerprints = tuple(parse_fingerprint(fp) for fp in pins)
    except UsageError:
        raise t.fail("tls_fingerprint", "must be certificate SHA-256s in hex (64 digits each)") from None
    tls_ca_text = t.str_("tls_ca")
    remotes = t.strs("remotes") or ()
    remote_manifests = t.str_("remote_manifests")
    trust = t.strs("trust_signer", one_ok=True) or ()
    try:
        trust_signers = tuple(parse_signer_id(s) for s in trust)
    except InvalidValueError as e:
        raise t.fail("trust_signer", str(e)) from None
    watch_http = t.str_("watch_http")
    if watch_http is not None:
        _check_host_port(t, "watch_http", watch_http)
    output_text = t.str_("output_dir")
    hls_window = t.int_("hls_window", None, 0)
    realtime = t.bool_("realtime", True)
    cache_mb = t.int_("cache_mb", DEFAULT_CACHE_MB, 1, 4096) or DEFAULT_CACHE_MB
    t.done()

    publishes = "leader" in roles or "objects" in roles
    if publishes and gn is None and input_ is None:
        raise t.fail("roles", "leader and objects publish a source: set guide_number (tuner) or input (file)")
    if not publishes and (gn is not None or input_ is not None):
        which = "guide_number" if gn is not None else "input"
        raise t.fail(which, "only leader and objects read a source; relay and watch pull from remotes")
    if "leader" in roles and key_text is None:
        raise t.fail("signing_key", "the leader role needs a signing key (create one with: ec-node keygen -o PATH)")
    if gn is not None and cfg.device is None:
        raise t.fail("guide_number", 'needs a tuner: set [tuner] device = "hdhr://HOST[:PORT]"')
    pulls = [r for r in ("relay", "watch") if r in roles]
    if pulls and not remotes and "objects" not in roles:
        raise t.fail("remotes", f"{pulls[0]} needs objects: add the objects role, or remotes to pull from")
    if pulls and "leader" not in roles:
        if not remotes and remote_manifests is None:
            raise t.fail("remote_manifests", f"{pulls[0]} needs manifests: add the leader role, or remote_manifests")
        if not trust_signers:
            raise t.fail("trust_signer", f"{pulls[0]} without a local leader needs the leader's signer id to trust")
    if "relay" not in roles:
        for key in ("relay_listen", "relay_advertise", "relay_identity"):
            if key in explicit:
                raise t.fail(key, "is only used by the relay role")
    if "watch" not in roles:
        for key in ("watch_http", "output_dir", "hls_window"):
            if key in explicit:
                raise t.fail(key, "is only used by the watch role")
    if key_text is not None and "leader" not in roles and "signing_key" in explicit:
        raise t.fail("signing_key", "is only used by the leader role")

    chdir = cfg.state_dir / name
    source = f"hdhr://{cfg.device}/{gn}" if gn is not None else str(p(input_)) if input_ is not None else None
    return ChannelSpec(
        name=name,
        roles=roles,
        source=source,
        guide_number=gn,
        signing_key=p(key_text) if key_text else None,
        listen=listen,
        advertise=advertise,
        identity=p(identity_text) if identity_text else cfg.identity_dir / name / "publisher",
        relay_listen=relay_listen,
        relay_advertise=relay_advertise,
        relay_identity=p(relay_identity_text) if relay_identity_text else cfg.identity_dir / name / "relay",
        push=push,
        jwt_file=p(jwt_text) if jwt_text else None,
        tls_fingerprints=tls_fingerprints,
        tls_ca=p(tls_ca_text) if tls_ca_text else None,
        remotes=remotes,
        remote_manifests=remote_manifests,
        trust_signers=trust_signers,
        watch_http=watch_http,
        output_dir=p(output_text) if output_text else chdir / "hls",
        hls_window=hls_window,
        realtime=realtime,
        cache_mb=cache_mb,
        dir=chdir,
    )


def _check_host_port(t: _Table, key: str, value: str) -> None:
    try:
        parse_host_port(value, key, any_port=True)
    except AddressError:
        raise t.fail(key, f'{value!r} is not "HOST:PORT" (port 0 picks a free one)') from None


def _device(t: _Table, text: str) -> str:
    if not text.startswith("hdhr://"):
        raise t.fail("device", f'{text!r} must be "hdhr://HOST[:PORT]" (the tuner\'s control port, 80 by default)')
    rest = text.removeprefix("hdhr://").rstrip("/")
    if not rest or "/" in rest:
        raise t.fail("device", f'{text!r} must be "hdhr://HOST[:PORT]" without a path')
    try:
        return format_host(*parse_host(rest))
    except UsageError as e:
        raise t.fail("device", str(e)) from None


def _checked(cfg: NodeConfig, err: Callable[[str], ConfigFileError]) -> NodeConfig:
    """What no single channel can see: names, guide numbers, folders and ports used twice."""
    seen: dict[tuple[str, str], tuple[int, str]] = {}

    def claim(i: int, kind: str, value: str, who: str, what: str) -> None:
        key = (i, who)
        other = seen.setdefault((kind, value), key)
        if other != key:
            raise err(f"{who}: {what}: {value} is also {other[1]}'s; give each its own")

    for i, c in enumerate(cfg.channels):
        who = f"channel {c.name!r}"
        claim(i, "name", c.name, who, "name")
        if c.guide_number is not None and c.publishes:
            claim(i, "guide", c.guide_number, who, "guide_number")
        if c.publishes:
            claim(i, "dir", str(c.identity), f"{who} (publisher)", "identity")
        if "relay" in c.roles:
            claim(i, "dir", str(c.relay_identity), f"{who} (relay)", "relay_identity")
        if "watch" in c.roles:
            claim(i, "out", str(c.output_dir), who, "output_dir")
        for key, addr, used in (("listen", c.listen, c.publishes), ("relay_listen", c.relay_listen, "relay" in c.roles),
                                ("watch_http", c.watch_http, "watch" in c.roles)):  # fmt: skip
            if used and addr is not None and not addr.endswith(":0"):
                claim(i, "port", addr, f"{who} ({key})", key)
    if cfg.http is not None and not cfg.http.endswith(":0"):
        claim(-1, "port", cfg.http, "[node] (http)", "http")
    return cfg


__all__ = ["ROLES", "ChannelSpec", "ConfigFileError", "NodeConfig", "parse_config", "with_lineup"]
