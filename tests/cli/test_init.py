"""`ec_node.cli` itself: every command module is registered, a broken one is an error, help is generated."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from pathlib import Path

import click
from click.testing import CliRunner

import ec_node.cli
from ec_node.cli import cli
from ec_node.cli.exits import exit_codes_help
from ec_node.errors import ExitCode

COMMANDS = {
    "ts-chunk",
    "media",
    "hdhr",
    "hdhr-emulator",
    "keygen",
    "moq-publish",
    "moq-subscribe",
    "demo",
    "relay",
    "channels",
    "node",
}


def _flat(text: str) -> str:
    return " ".join(text.split())


def test_every_command_is_registered() -> None:
    assert set(cli.commands) == COMMANDS


def test_root_help_lists_every_exit_code_from_exit_code() -> None:
    r = CliRunner().invoke(cli, ["--help"])
    assert r.exit_code == 0
    # click wraps and may break "--max-invalid-chunks" at a hyphen; compare the paragraph unwrapped
    text = _flat(r.output.replace("-\n", "-"))
    assert _flat(exit_codes_help(*ExitCode)) in text
    for code in ExitCode:
        assert f"{int(code)} {_flat(code.description)}" in text


def _all_commands(group: click.Group, prefix: str = "") -> list[tuple[str, click.Command]]:
    out: list[tuple[str, click.Command]] = []
    for name, cmd in group.commands.items():
        out.append((prefix + name, cmd))
        if isinstance(cmd, click.Group):
            out += _all_commands(cmd, prefix + name + " ")
    return out


def test_every_exit_code_paragraph_is_the_generated_one() -> None:
    checked = 0
    for name, cmd in [("ec-node", cli), *_all_commands(cli)]:
        help_text = cmd.help or ""
        assert help_text.count("Exit codes:") <= 1, name
        if "Exit codes:" not in help_text:
            continue
        paragraph = "Exit codes:" + help_text.split("Exit codes:", 1)[1].split("\n\n", 1)[0]
        codes = [ExitCode(int(n)) for n in re.findall(r"(?:: |, )(\d+) ", paragraph)]
        assert codes and paragraph == exit_codes_help(*codes), name
        checked += 1
    assert checked >= len(COMMANDS)  # every command but demo, plus the root and the hdhr subcommands


def test_no_cli_module_writes_exit_codes_by_hand() -> None:
    package = Path(ec_node.cli.__file__).parent
    for path in package.glob("*.py"):
        if path.name != "exits.py":
            assert "Exit codes:" not in path.read_text(), path.name


def test_a_command_module_that_fails_to_import_is_an_error() -> None:
    # exactly the case the old registration skipped: the command module itself is missing
    code = textwrap.dedent(
        """
        import sys

        class Missing:
            def find_spec(self, name, path=None, target=None):
                if name == "ec_node.cli.relay":
                    raise ModuleNotFoundError(f"No module named {name!r}", name=name)
                return None

        sys.meta_path.insert(0, Missing())
        from ec_node.cli import main
        main()
        """
    )
    r = subprocess.run([sys.executable, "-c", code, "--help"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 1 and r.stdout == ""
    assert "ModuleNotFoundError: No module named 'ec_node.cli.relay'" in r.stderr
