"""Tell glibc's allocator to give memory back: ec-node moves multi-megabyte chunks through many threads.

By default glibc raises its mmap threshold after the first large free (up to 32 MB), so later chunk
buffers come from per-thread heap arenas that fragment and are rarely returned to the system; with
one arena per thread (Python's, and the moq runtime's tokio workers) resident memory grows far past
what is live. Fixing the threshold at 1 MiB (large buffers are mmapped and unmapped when freed),
trimming at 1 MiB and capping arenas at 2 cut a relay's RSS by about 100 MB at 50 subscribers
(docs/BENCHMARKS.md). It costs CPU (every large buffer is faulted in afresh): the split-source path
(publish, verify, write) ran at 52 instead of 85 MB/s with it, so only `ec-node relay`, whose memory
grows with its subscribers, applies it. Environment settings (``MALLOC_*_``) win: they are left alone.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_M_ARENA_MAX = -8
_SETTINGS = {
    "MALLOC_TRIM_THRESHOLD_": (_M_TRIM_THRESHOLD, 1 << 20),
    "MALLOC_MMAP_THRESHOLD_": (_M_MMAP_THRESHOLD, 1 << 20),
    "MALLOC_ARENA_MAX": (_M_ARENA_MAX, 2),
}


def tune_malloc() -> bool:
    """Apply the settings above on glibc (before the moq runtime starts its threads); False elsewhere."""
    if not sys.platform.startswith("linux"):
        return False
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False  # not glibc (e.g. musl has no mallopt)
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    ok = True
    for env, (param, value) in _SETTINGS.items():
        if env not in os.environ:
            ok = bool(mallopt(param, value)) and ok
    return ok
