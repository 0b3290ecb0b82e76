"""The errors of the pure MPEG-TS layer; the CLI maps them to exit codes, the layer never names one."""

from __future__ import annotations


class TsError(ValueError):
    """Input that is not the MPEG-TS (or PSIP) it claims to be."""


class SectionError(TsError):
    """A PSI/PSIP section (or a section builder's argument) is malformed or fails its CRC."""


class NotTsError(TsError):
    """The input as a whole is not usable MPEG-TS: no sync, no PAT, no video PID or no PCR."""
