"""Record one channel for a fixed time with the device's own ``?duration=`` query (ECP-0032's short capture).

Writes to a temporary file next to the output and renames it into place only on success,
so a failed capture never leaves a partial file behind.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ec_node.atomic import output_mode
from ec_node.errors import ConfigError, OutputError
from ec_node.hdhr.api import duration_query
from ec_node.hdhr.client import HdhrClient


@dataclass(frozen=True)
class CaptureSummary:
    """What :func:`capture` recorded; ``ec-node hdhr capture`` prints it as one JSON line."""

    output: str
    channel: str
    device_id: str
    resource: str | None  # tuner the device used
    bytes: int
    seconds: float  # wall-clock time from request to end of stream
    end_reason: str | None

    def to_json(self) -> dict[str, Any]:
        """Plain dict of every field, for the JSON summary line."""
        return asdict(self)


def capture(
    host: str,
    channel: str,
    duration_s: float,
    out: Path,
    *,
    timeout_s: float = 10.0,
    busy_retries: int = 5,
    backoff_s: float = 1.0,
) -> CaptureSummary:
    """Capture ``channel`` from ``host[:port]`` for ``duration_s`` seconds into ``out``."""
    duration_query(duration_s)  # validate before touching the network or the disk
    out = Path(out)
    client = HdhrClient(host, timeout_s=timeout_s)
    info = client.discover()
    if out.is_dir():
        raise OutputError(f"output {out} is a directory")
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".part", dir=out.parent)
    except OSError as e:
        raise OutputError(f"cannot write output {out}: {e.strerror or e}") from e
    tmp = Path(tmp_name)
    ok = False
    try:
        try:
            f = os.fdopen(fd, "wb")
        except OSError as e:
            os.close(fd)
            raise OutputError(f"cannot write output {out}: {e.strerror or e}") from e
        with f:
            os.fchmod(fd, output_mode())  # a capture is an output: it honours the umask, like HLS
            t0 = time.monotonic()
            with client.open_stream(channel, duration_s, busy_retries=busy_retries, backoff_s=backoff_s) as stream:
                for chunk in stream:
                    try:
                        f.write(chunk)
                    except OSError as e:
                        raise OutputError(f"cannot write output {out}: {e.strerror or e}") from e
                try:
                    f.flush()
                except OSError as e:
                    raise OutputError(f"cannot write output {out}: {e.strerror or e}") from e
                seconds = time.monotonic() - t0
                total = stream.bytes_read
                summary = CaptureSummary(
                    output=str(out),
                    channel=channel,
                    device_id=info.device_id,
                    resource=stream.resource,
                    bytes=total,
                    seconds=round(seconds, 3),
                    end_reason=stream.end_reason,
                )
        if total == 0:
            raise ConfigError(f"channel {channel} on {client.where} sent no data (no video data)")
        try:
            os.replace(tmp, out)
        except OSError as e:
            raise OutputError(f"cannot write output {out}: {e.strerror or e}") from e
        ok = True
        return summary
    finally:
        if not ok:
            with contextlib.suppress(OSError):
                tmp.unlink()
