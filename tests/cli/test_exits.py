"""The exception -> exit-code table, through the real CLI root: documented code, one stderr line, no traceback."""

from __future__ import annotations

import importlib
import json
import pkgutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import click
import pytest

import ec_node.ts
from ec_node.cli import cli
from ec_node.cli.exits import EXIT_CODES, documents_exits, error_line, exit_code_for, exit_codes_help
from ec_node.errors import ConfigError, EcError, ExitCode, UsageError
from ec_node.integrity.errors import (
    IntegrityError,
    IntegrityFormatError,
    IntegrityRejection,
    InvalidValueError,
    KeyFileError,
    KeyFileWriteError,
    RejectReason,
    StreamIdError,
)
from ec_node.transport.addr import AddressError
from ec_node.transport.identity import IdentityError, IdentityWriteError
from ec_node.ts.errors import TsError

from support.clirun import invoke, one_error_line

PEER = json.dumps({"id": "ab" * 32, "addrs": ["127.0.0.1:9"]})

# The documented codes, written out (not read from the table, which is what is under test).
CASES: list[tuple[BaseException, int]] = [
    (TsError("no sync byte"), 3),
    (InvalidValueError("signer id must be 64 hex digits"), 2),
    (AddressError("endpoint address is empty"), 2),
    (StreamIdError("cannot build a stream id"), 6),
    (KeyFileError("k.pem: not an Ed25519 private key"), 6),
    (IdentityError("identity directory is incomplete"), 6),
    (KeyFileWriteError("k.pem: file exists"), 7),
    (IdentityWriteError("cannot create identity directory"), 7),
    (IntegrityRejection(RejectReason.BAD_PROOF, "proof fails"), 8),
    (IntegrityFormatError("frame too short"), 8),
    (UsageError("--remote is required"), 2),
    (ConfigError("unknown channel"), 6),
    (EcError("tunnel collapsed", ExitCode.ENDED_EARLY), 9),
]


@pytest.fixture
def raising() -> Iterator[list[BaseException]]:
    """A throwaway command on the real root that raises whatever the test puts in the list."""
    box: list[BaseException] = []

    @click.command("raise-for-test")
    def cmd() -> None:
        raise box[0]

    cli.add_command(cmd)
    try:
        yield box
    finally:
        cli.commands.pop("raise-for-test")


@pytest.mark.parametrize(("exc", "code"), CASES, ids=[type(e).__name__ for e, _ in CASES])
def test_each_exception_gives_its_documented_code(raising: list[BaseException], exc: BaseException, code: int) -> None:
    raising.append(exc)
    r = invoke(["raise-for-test"])
    assert r.exit_code == code
    assert one_error_line(r) == f"ec-node: error: {exc}"


def test_a_bug_keeps_its_traceback(raising: list[BaseException]) -> None:
    raising.append(RuntimeError("a bug"))
    r = invoke(["raise-for-test"])
    assert isinstance(r.exception, RuntimeError) and r.exit_code == 1
    assert exit_code_for(RuntimeError()) is None and exit_code_for(ValueError()) is None


def test_multi_line_message_stays_one_line(raising: list[BaseException]) -> None:
    raising.append(TsError("first\n  second\n"))
    r = invoke(["raise-for-test"])
    assert r.exit_code == 3 and one_error_line(r) == "ec-node: error: first second"
    assert error_line(AddressError("a\nb")) == "ec-node: error: a b"


def _subclasses(base: type[BaseException]) -> Iterator[type[BaseException]]:
    for sub in base.__subclasses__():
        yield sub
        yield from _subclasses(sub)


def test_every_core_exception_class_is_mapped() -> None:
    for info in pkgutil.iter_modules(ec_node.ts.__path__):  # TsError subclasses live in the ts modules
        importlib.import_module(f"ec_node.ts.{info.name}")
    classes = [TsError, *_subclasses(TsError), AddressError, *_subclasses(AddressError)]
    classes += [*_subclasses(IntegrityError), IdentityError, *_subclasses(IdentityError)]
    unmapped = [c.__qualname__ for c in classes if exit_code_for(c.__new__(c)) is None]
    assert unmapped == []
    assert IntegrityError not in EXIT_CODES  # the base is never raised; each kind picks its own code


def test_core_exceptions_are_not_exit_code_exceptions() -> None:
    for cls in EXIT_CODES:
        assert not issubclass(cls, EcError), cls


# --- real commands, real arguments ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        (["--trust-signer", "zz"], "signer id"),
        (["--network-secret", "abc"], "--network-secret"),
        (["--stream-id", " padded"], "whitespace"),
    ],
)
def test_subscribe_malformed_values_are_usage_errors(extra: list[str], needle: str) -> None:
    r = invoke(["moq-subscribe", "--remote", PEER, "--broadcast", "b", *extra])
    assert r.exit_code == 2 and needle in one_error_line(r)


@pytest.mark.parametrize("command", [["moq-subscribe", "--broadcast", "b"], ["relay", "--broadcast", "b"]])
def test_malformed_address_is_a_usage_error(command: list[str]) -> None:
    r = invoke([*command, "--remote", "not an address"])
    assert r.exit_code == 2 and "endpoint address" in one_error_line(r)


def test_relay_malformed_signer_is_a_usage_error() -> None:
    r = invoke(["relay", "--remote", PEER, "--broadcast", "b", "--require-manifest", "--trust-signer", "00"])
    assert r.exit_code == 2 and "signer id" in one_error_line(r)


def test_publish_unusable_signing_key_is_a_config_error(tmp_path: Path) -> None:
    key = tmp_path / "bad.pem"
    key.write_text("not a key")
    r = invoke(["moq-publish", "--input", str(tmp_path / "unused.ts"), "--signing-key", str(key)])
    assert r.exit_code == 6 and "private key" in one_error_line(r)


def test_a_real_process_prints_one_line_and_no_traceback() -> None:
    r = subprocess.run(
        [sys.executable, "-m", "ec_node", "moq-subscribe", "--remote", "@", "--broadcast", "b"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 2, r.stderr
    assert r.stderr.count("\n") == 1 and r.stderr.startswith("ec-node: error: ") and "Traceback" not in r.stderr


# --- generated help text -------------------------------------------------------------------------


def test_help_text_is_generated_from_exit_code() -> None:
    assert (
        exit_codes_help(ExitCode.OUTPUT, ExitCode.OK)
        == "Exit codes: 0 ok, 7 output not writable, or a listen address in use."
    )
    full = exit_codes_help(*ExitCode)
    for code in ExitCode:
        assert f"{int(code)} {code.description}" in full
        assert code.description and "\n" not in code.description


def test_documents_exits_dedents_the_docstring_and_appends_the_paragraph() -> None:
    @documents_exits(ExitCode.USAGE)
    @click.command("x")
    def x() -> None:
        """First line.

        Second paragraph, indented in the source.
        """

    expected = "First line.\n\nSecond paragraph, indented in the source.\n\n"
    expected += "Exit codes: 2 usage (bad flags or arguments)."
    assert x.help == expected
