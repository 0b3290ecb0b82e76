"""Whole-file writes: a reader (a player, a peer, a second process) never sees half a file.

Outputs honour the umask (0644 under the usual 022), so a web server running as another user can
serve them; ``tempfile.mkstemp`` alone would leave every file 0600. Secrets (keys, TLS identities)
never come through here: :mod:`ec_node.integrity.keys` and :mod:`ec_node.transport.identity` write
them 0600 themselves.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

from ec_node.errors import OutputError


def _read_umask() -> int:
    mask = os.umask(0o022)  # the only way to read it is to set it: put it straight back
    os.umask(mask)
    return mask


#: read once at import, before any thread starts (reading it means briefly changing it)
_UMASK = _read_umask()


def output_mode() -> int:
    """The mode a newly created output file gets: 0666 narrowed by the process umask."""
    return 0o666 & ~_UMASK


def write_atomic(path: Path, data: bytes) -> None:
    """Write to a temp file in the same directory, give it the output mode, then rename over ``path``."""
    path = Path(path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as e:
        raise OutputError(f"cannot write {path}: {e.strerror or e}") from None
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), output_mode())
            f.write(data)
        os.replace(tmp, path)
    except OSError as e:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise OutputError(f"cannot write {path}: {e.strerror or e}") from None
