"""Running ec-node's click CLI in-process, and the one shape every user-error answer has."""

from __future__ import annotations

from click.testing import CliRunner, Result

from ec_node.cli import cli


def invoke(args: list[str]) -> Result:
    """``ec-node ARGS`` in this process (stdout and stderr kept apart)."""
    return CliRunner().invoke(cli, args)


def one_error_line(r: Result) -> str:
    """The single ``ec-node: error: ...`` line a user mistake gets, with no traceback; returns it."""
    lines = r.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("ec-node: error: "), r.stderr
    assert "Traceback" not in r.output
    assert r.exception is None or isinstance(r.exception, SystemExit)
    return lines[0]
