"""The home node's config: what it accepts, how it resolves, and the one line it says for each mistake."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from ec_node.errors import ExitCode
from ec_node.hdhr.api import LineupEntry
from ec_node.home.config import ConfigFileError, parse_config, with_lineup
from ec_node.home.init import FoundDevice, example_config
from ec_node.integrity.signer import Signer

CFG = Path("/etc/ec-node/node.toml")
SIGNER = Signer.generate().signer_id
HEAD = """
[node]
state_dir = "state"
http = "127.0.0.1:8089"

[tuner]
device = "hdhr://192.168.1.50"
tuners = 2
"""


def parse(body: str, head: str = HEAD) -> object:
    return parse_config(textwrap.dedent(head) + textwrap.dedent(body), CFG)


def error(body: str, head: str = HEAD) -> str:
    with pytest.raises(ConfigFileError) as e:
        parse(body, head)
    assert e.value.code is ExitCode.USAGE
    text = str(e.value)
    assert "\n" not in text and text.startswith(f"{CFG}: ")
    return text


def test_a_full_channel_resolves() -> None:
    cfg = parse_config(
        textwrap.dedent(HEAD)
        + textwrap.dedent(
            """
            [defaults]
            signing_key = "~/.ec-node/leader.key"

            [[channel]]
            guide_number = "7.1"
            roles = ["watch", "objects", "leader"]
            listen = "0.0.0.0:4443"
            advertise = ["192.168.1.10:4443"]
            push = ["https://relay.example.net/anon"]
            watch_http = "127.0.0.1:8080"
            """
        ),
        CFG,
    )
    (c,) = cfg.channels
    assert c.name == "7.1" and c.roles == ("leader", "objects", "watch")  # canonical order
    assert c.source == "hdhr://192.168.1.50:80/7.1" and c.uses_tuner
    assert c.signing_key == Path("~/.ec-node/leader.key").expanduser()
    assert c.identity == Path("/etc/ec-node/state/identity/7.1/publisher")  # relative to the config's folder
    assert c.output_dir == Path("/etc/ec-node/state/7.1/hls")
    assert c.push == ("https://relay.example.net/anon",) and c.advertise == ("192.168.1.10:4443",)
    assert cfg.tuners == 2 and cfg.device == "192.168.1.50:80" and cfg.http == "127.0.0.1:8089"


def test_file_and_remote_channels() -> None:
    cfg = parse(
        f"""
        [[channel]]
        input = "/media/wsyn.ts"
        roles = "objects"

        [[channel]]
        name = "far"
        roles = ["relay", "watch"]
        remotes = ["@/var/lib/peer.json"]
        trust_signer = "{SIGNER}"
        """
    )
    f, r = cfg.channels  # type: ignore[attr-defined]
    assert f.name == "wsyn" and f.source == "/media/wsyn.ts" and not f.uses_tuner and f.realtime
    assert r.source is None and r.remotes == ("@/var/lib/peer.json",) and r.trust_signers == (SIGNER,)
    assert r.relay_identity != r.identity


def test_relays_dialled_by_url_can_be_pinned_or_given_a_ca() -> None:
    fp = "AB:" * 31 + "AB"
    cfg = parse(
        f"""
        [defaults]
        tls_fingerprint = "{fp}"

        [[channel]]
        guide_number = "7.1"
        roles = ["objects"]
        push = ["moql://relay.lan:4443/"]

        [[channel]]
        guide_number = "9.1"
        roles = ["objects"]
        push = ["https://relay.lan/anon"]
        tls_fingerprint = ["{"0" * 64}", "{"1" * 64}"]
        tls_ca = "relay-ca.pem"
        """
    )
    a, b = cfg.channels  # type: ignore[attr-defined]
    assert a.tls_fingerprints == ("ab" * 32,) and a.tls_ca is None  # colons and case as --tls-fingerprint takes
    assert b.tls_fingerprints == ("0" * 64, "1" * 64) and b.tls_ca == Path("/etc/ec-node/relay-ca.pem")
    bad = '[[channel]]\nguide_number = "7.1"\nroles = ["objects"]\ntls_fingerprint = "abc"'
    assert "channel[1] (7.1).tls_fingerprint: must be certificate SHA-256s in hex" in error(bad)


def test_lineup_channels_take_the_defaults() -> None:
    head = HEAD.replace("tuners = 2", 'tuners = 2\nchannels = "all"')
    cfg = parse_config(
        textwrap.dedent(head)
        + textwrap.dedent(
            """
            [defaults]
            roles = ["objects"]

            [[channel]]
            guide_number = "9.1"
            roles = ["objects", "watch", "leader"]
            signing_key = "k"
            """
        ),
        CFG,
    )
    assert cfg.lineup_all and [c.name for c in cfg.channels] == ["9.1"]
    full = with_lineup(cfg, ["7.1", "9.1", "11.1"])
    assert [c.name for c in full.channels] == ["9.1", "7.1", "11.1"]
    assert full.channels[1].roles == ("objects",) and full.channels[0].roles == ("leader", "objects", "watch")


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ('[[channel]]\nguide_number = "7.1"\nroles = ["leeder"]', "channel[1] (7.1).roles: unknown role 'leeder'"),
        ('[[channel]]\nguide_number = "7.1"\nroles = ["objects"]\ncolour = 1', "channel[1] (7.1).colour: unknown key"),
        ('[[channel]]\nguide_number = 7.1\nroles = ["objects"]', "channel[1].guide_number: must be a non-empty string"),
        ('[[channel]]\nguide_number = "7.1"\nroles = ["leader"]', "signing_key: the leader role needs a signing key"),
        (
            '[[channel]]\nguide_number = "7.1"\nroles = ["objects"]\n'
            '[[channel]]\nguide_number = "7.1"\nroles = ["objects"]',
            "channel '7.1': name: 7.1 is also channel '7.1'",
        ),
        (
            '[[channel]]\nname = "a"\nguide_number = "7.1"\nroles = ["objects"]\n'
            '[[channel]]\nname = "b"\nguide_number = "7.1"\nroles = ["objects"]',
            "guide_number: 7.1 is also channel 'a'",
        ),
        (
            '[[channel]]\nname = "a"\nguide_number = "7.1"\nroles = ["objects"]\nidentity = "/id"\n'
            '[[channel]]\nname = "b"\nguide_number = "9.1"\nroles = ["objects"]\nidentity = "/id"',
            "channel 'b' (publisher): identity: /id is also channel 'a' (publisher)'s",
        ),
        (
            '[[channel]]\nname = "a"\ninput = "x.ts"\nroles = ["objects", "leader", "relay"]\nsigning_key = "k"\n'
            'identity = "/id"\nrelay_identity = "/id"',
            "channel 'a' (relay): relay_identity: /id is also channel 'a' (publisher)'s",
        ),
        ('[[channel]]\nguide_number = "7.1"\nroles = ["objects", "watch"]', "watch needs manifests"),
        ('[[channel]]\nname = "x"\nroles = ["watch"]', "watch needs objects"),
        ('[[channel]]\nname = "x"\nroles = ["watch"]\nremotes = ["@a.json"]', "trust_signer: watch without a local"),
        (
            '[[channel]]\nname = "x"\nroles = ["watch"]\nremotes = ["@a.json"]\ntrust_signer = "abc"',
            "trust_signer: signer id must be 64 hex digits",
        ),
        (
            '[[channel]]\nguide_number = "7.1"\nroles = ["objects"]\nlisten = "4443"',
            "listen: '4443' is not \"HOST:PORT\"",
        ),
        ('[[channel]]\nguide_number = "7.1"\nroles = ["objects"]\npush = ["http://x"]', "push: 'http://x' must be"),
        ('[[channel]]\nguide_number = "7.1"\nroles = ["objects"]\nadvertise = ["h:0"]', "advertise: 'h:0' is not"),
        (
            '[[channel]]\nguide_number = "7.1"\nroles = ["objects"]\nwatch_http = "127.0.0.1:1"',
            "watch_http: is only used by the watch role",
        ),
        (
            '[[channel]]\nguide_number = "7.1"\nroles = ["objects"]\nhls_window = -1',
            "hls_window: must be a whole number",
        ),
        ('[[channel]]\nguide_number = "7.1"\nroles = ["objects"]\nrealtime = "yes"', "realtime: must be true or false"),
        ('[[channel]]\nname = "../x"\ninput = "a.ts"\nroles = ["objects"]', "name: '../x' must be letters"),
        ('[[channel]]\nguide_number = "7.1"\ninput = "a.ts"\nroles = ["objects"]', "not both"),
        ('[[channel]]\nguide_number = "7.1"\nroles = []', "roles: missing"),
        (
            '[[channel]]\nname = "r"\nroles = ["relay"]\nremotes = ["@a"]\nguide_number = "7.1"\ntrust_signer = "'
            + "0" * 64
            + '"',
            "guide_number: only leader and objects read a source",
        ),
        ('[defaults]\nguide_number = "7.1"', "defaults.guide_number: is per channel"),
        ("[nodes]\n", "nodes: unknown table or key"),
        ("", "no channels"),
        ("[[channel]\n", "not valid TOML"),
        ('[[channel]]\nguide_number = "7.1"\nroles = ["objects", "watch"]\nleader = true', "leader: unknown key"),
    ],
)
def test_one_clear_line_per_mistake(body: str, says: str) -> None:
    assert says in error(body)


def test_node_and_tuner_tables_are_strict() -> None:
    ch = '[[channel]]\nguide_number = "7.1"\nroles = ["objects"]\n'
    assert "node.htp: unknown key" in error(ch, '[node]\nhtp = 1\n[tuner]\ndevice = "hdhr://h"\n')
    assert "tuner.device: 'http://h' must be" in error(ch, '[tuner]\ndevice = "http://h"\n')
    assert "tuner.tuners: must be a whole number from 1" in error(ch, '[tuner]\ndevice = "hdhr://h"\ntuners = 0\n')
    assert "tuner.channels: 'seven' is not a guide number" in error(
        ch, '[tuner]\ndevice = "hdhr://h"\nchannels = ["seven"]\n'
    )
    assert "needs a tuner: set [tuner] device" in error(ch, "")
    assert "node.http: 'here' is not" in error(ch, '[node]\nhttp = "here"\n[tuner]\ndevice = "hdhr://h"\n')
    two = (
        '[[channel]]\nguide_number = "7.1"\nroles = ["objects", "leader", "watch"]\nsigning_key = "k"\n'
        'watch_http = "127.0.0.1:8089"\n'
    )
    assert "[node] (http): http: 127.0.0.1:8089 is also channel '7.1' (watch_http)'s" in error(two)


def test_a_listed_lineup_channel_needs_default_roles() -> None:
    head = HEAD.replace("tuners = 2", 'tuners = 2\nchannels = ["7.1"]')
    assert "tuner.channels (7.1, with [defaults]): roles: [defaults] needs roles" in error("", head)


def test_the_documented_example_parses() -> None:
    example = Path(__file__).resolve().parents[2] / "docs" / "node.example.toml"
    cfg = parse_config(example.read_text(), example)
    assert cfg.channels and all(c.name for c in cfg.channels)


def test_init_writes_a_config_that_parses() -> None:
    found = FoundDevice(
        "127.0.0.1:8080",
        "1FA4E002",
        2,
        [
            LineupEntry(gn, name, f"http://127.0.0.1:5004/auto/v{gn}")
            for gn, name in [("7.1", "A"), ("9.1", "B"), ("11.1", "C")]
        ],
    )
    text = example_config(found)
    cfg = parse_config(text, CFG)
    assert [c.name for c in cfg.channels] == ["7.1", "9.1"]  # as many on as tuners; the rest commented out
    assert '# [[channel]]\n# guide_number = "11.1"' in text
    assert cfg.channels[0].roles == ("leader", "objects", "watch") and cfg.tuners == 2
