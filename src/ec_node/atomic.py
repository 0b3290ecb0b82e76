"""Whole-file writes: a reader (a player, a peer, a second process) never sees half a file."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

from ec_node.errors import OutputError


def write_atomic(path: Path, data: bytes) -> None:
    """Write to a temp file in the same directory, then rename over ``path``."""
    path = Path(path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as e:
        raise OutputError(f"cannot write {path}: {e.strerror or e}") from None
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except OSError as e:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise OutputError(f"cannot write {path}: {e.strerror or e}") from None
