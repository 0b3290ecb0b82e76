"""The one table from exceptions to exit codes, and the generated "Exit codes: ..." help text.

Pure cores raise their own exceptions and name no exit code; this table says what each means for the
process, chosen by what the user did wrong:

* ``TsError`` -> 3 (bad input): the stream or file given is not the MPEG-TS it must be.
* ``InvalidValueError`` (a malformed ``--trust-signer``, ``--network-secret`` or ``--stream-id``) and
  ``AddressError`` (a malformed ``--remote``/``--remote-manifests`` address or its ``@PATH`` file)
  -> 2 (usage): the command line is wrong. Until this table, the integrity ones gave 6.
* ``StreamIdError`` -> 6 (config): the flags are fine but the source yields no stream id; the user
  has to give one.
* ``KeyFileError`` and ``IdentityError`` -> 6 (config): a key file or identity directory exists
  but cannot be used (missing, unreadable, mismatched, readable by others).
* ``KeyFileWriteError`` and ``IdentityWriteError`` -> 7 (output): the file cannot be written.
* ``IntegrityRejection`` -> 8 (integrity): peer data was refused (normally counted, never raised
  this far; mapped so that it could never become a traceback).

An :class:`~ec_node.errors.EcError` (raised by the pipeline shells and device code) keeps its own code.
Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import TypeVar

import click

from ec_node.errors import EcError, ExitCode
from ec_node.integrity.errors import (
    IntegrityRejection,
    InvalidValueError,
    KeyFileError,
    KeyFileWriteError,
    StreamIdError,
)
from ec_node.transport.addr import AddressError
from ec_node.transport.identity import IdentityError, IdentityWriteError
from ec_node.ts.errors import TsError

EXIT_CODES: Mapping[type[BaseException], ExitCode] = {
    TsError: ExitCode.BAD_INPUT,
    InvalidValueError: ExitCode.USAGE,
    AddressError: ExitCode.USAGE,
    StreamIdError: ExitCode.CONFIG,
    KeyFileError: ExitCode.CONFIG,
    IdentityError: ExitCode.CONFIG,
    KeyFileWriteError: ExitCode.OUTPUT,
    IdentityWriteError: ExitCode.OUTPUT,
    IntegrityRejection: ExitCode.INTEGRITY,
}


def exit_code_for(exc: BaseException) -> ExitCode | None:
    """The exit code for a user-caused failure, or None for a bug (the most specific table entry wins)."""
    if isinstance(exc, EcError):
        return exc.code
    for cls in type(exc).__mro__:
        code = EXIT_CODES.get(cls)
        if code is not None:
            return code
    return None


def error_line(exc: BaseException) -> str:
    """The single stderr line for a mapped failure (a message's own line breaks are folded)."""
    return "ec-node: error: " + " ".join(line.strip() for line in str(exc).splitlines() if line.strip())


def exit_codes_help(*codes: ExitCode) -> str:
    """``Exit codes: 0 ok, 2 usage (...), ...`` generated from :class:`ExitCode`, so no help copies it by hand."""
    return "Exit codes: " + ", ".join(f"{int(c)} {c.description}" for c in sorted(codes)) + "."


_Cmd = TypeVar("_Cmd", bound=click.Command)


def documents_exits(*codes: ExitCode) -> Callable[[_Cmd], _Cmd]:
    """Decorator (above ``@click.command``) appending the generated exit-code paragraph to the help."""

    def add(cmd: _Cmd) -> _Cmd:
        text = exit_codes_help(*codes)
        # a raw docstring is indented; dedent it first, or the unindented paragraph would stop click doing so
        cmd.help = f"{inspect.cleandoc(cmd.help)}\n\n{text}" if cmd.help else text
        return cmd

    return add


__all__ = ["EXIT_CODES", "documents_exits", "error_line", "exit_code_for", "exit_codes_help"]
