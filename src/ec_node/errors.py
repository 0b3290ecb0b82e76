"""Errors a user can cause, each with its documented exit code.

The CLI turns an :class:`EcError` into one line on stderr and ``exit(code)``;
anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """Process exit codes; documented in docs/USAGE.md and each command's --help."""

    OK = 0
    FAILURE = 1  # unexpected internal failure (a bug)
    USAGE = 2  # bad flags or arguments
    BAD_INPUT = 3  # input is not MPEG-TS, has no video PID, unreadable file
    UNREACHABLE = 4  # host/peer unreachable or not an HDHomeRun / not a MoQ node
    TUNER_BUSY = 5  # all tuners busy after retries
    CONFIG = 6  # unknown channel, bad stream id, no signal
    OUTPUT = 7  # output directory or file not writable
    INTEGRITY = 8  # more objects rejected than --max-invalid-chunks
    ENDED_EARLY = 9  # stream ended before --stop-after was reached
    MANIFEST_TIMEOUT = 10  # manifests peer gone longer than --manifest-timeout


class EcError(Exception):
    """A failure caused by input, environment or peers, not by a bug."""

    code: ExitCode = ExitCode.FAILURE

    def __init__(self, message: str, code: ExitCode | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code


class UsageError(EcError):
    code = ExitCode.USAGE


class BadInputError(EcError):
    code = ExitCode.BAD_INPUT


class UnreachableError(EcError):
    code = ExitCode.UNREACHABLE


class TunerBusyError(EcError):
    code = ExitCode.TUNER_BUSY


class ConfigError(EcError):
    code = ExitCode.CONFIG


class OutputError(EcError):
    code = ExitCode.OUTPUT


class IntegrityError(EcError):
    code = ExitCode.INTEGRITY


class EndedEarlyError(EcError):
    code = ExitCode.ENDED_EARLY
