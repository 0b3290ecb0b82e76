"""The errors of the pure MPEG-TS layer; the CLI maps them to exit codes, the layer never names one."""

from __future__ import annotations


class TsError(ValueError):
    """Input that is not the MPEG-TS (or PSIP) it claims to be."""
