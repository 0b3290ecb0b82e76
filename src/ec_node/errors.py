"""Errors a user can cause, each with its documented exit code.

:class:`ExitCode` is the one list of codes; each member carries the one-line description that every
``--help`` "Exit codes: ..." paragraph is generated from (:mod:`ec_node.cli.exits`).
The CLI turns an :class:`EcError` into one line on stderr and ``exit(code)``; pure cores
(``ts``, ``integrity``, the transport parsers) raise their own exceptions instead, which the CLI's
table maps to these codes. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """Process exit codes; ``description`` is the text ``--help`` shows after the number."""

    description: str

    def __new__(cls, value: int, description: str) -> ExitCode:
        """Build a member from its ``(value, description)`` pair so each code carries its help text."""
        member = int.__new__(cls, value)
        member._value_ = value
        member.description = description
        return member

    OK = 0, "ok"
    FAILURE = 1, "internal failure (a bug)"
    USAGE = 2, "usage (bad flags or arguments)"
    BAD_INPUT = 3, "bad input (not MPEG-TS, no video PID, unreadable)"
    UNREACHABLE = 4, "unreachable (host or peer down, not an HDHomeRun or MoQ node)"
    TUNER_BUSY = 5, "tuner busy after retries"
    CONFIG = 6, "config (unknown channel, no signal, bad key or identity file)"
    OUTPUT = 7, "output not writable, or a listen address in use"
    INTEGRITY = 8, "integrity (more objects rejected than --max-invalid-chunks)"
    ENDED_EARLY = 9, "ended early (before --stop-after)"
    MANIFEST_TIMEOUT = 10, "manifest timeout (no usable manifest for --manifest-timeout: leader gone or untrusted)"
    INCOMPLETE = 11, "stream ended with chunks missing (the end event's missing; nothing unverified was written)"


class EcError(Exception):
    """A failure caused by input, environment or peers, not by a bug."""

    code: ExitCode = ExitCode.FAILURE

    def __init__(self, message: str, code: ExitCode | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code


class UsageError(EcError):
    """Bad flags or arguments: the user must change the command line."""

    code = ExitCode.USAGE


class BadInputError(EcError):
    """The input stream or file is not what it must be."""

    code = ExitCode.BAD_INPUT


class UnreachableError(EcError):
    """A host, device or peer cannot be reached or is not what was expected."""

    code = ExitCode.UNREACHABLE


class TunerBusyError(EcError):
    """Every tuner stayed busy through the retries."""

    code = ExitCode.TUNER_BUSY


class ConfigError(EcError):
    """The environment is set up wrong (channel, signal, key files), though the flags are well formed."""

    code = ExitCode.CONFIG


class OutputError(EcError):
    """Something the node must write cannot be written."""

    code = ExitCode.OUTPUT
