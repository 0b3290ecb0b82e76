"""Generate synthetic media once and reuse it: files keyed by a hash of the options and generator version.

Why: tests across the suite (and the demo) need the same few clips; encoding them on every run wastes
seconds. Safe under concurrent test processes: each writer renders in memory and publishes with
os.replace, and generation is deterministic, so a race only costs duplicate work.
"""

from __future__ import annotations

import functools
import hashlib
import os
from pathlib import Path

from ec_node.devkit.synth import SynthOptions, synthesize

# Bump to force regeneration; edits to the generator's source files also change the key (see _source_digest).
GENERATOR_VERSION = 1
CACHE_ENV = "EC_NODE_MEDIA_CACHE"


def default_cache_dir() -> Path:
    """$EC_NODE_MEDIA_CACHE, else <repo>/.media-cache for a source checkout, else ~/.cache/ec-node/media."""
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env)
    repo = Path(__file__).resolve().parents[3]
    if (repo / "pyproject.toml").is_file():
        return repo / ".media-cache"
    return Path.home() / ".cache" / "ec-node" / "media"


@functools.cache
def _source_digest() -> str:
    """Digest of the modules whose code determines the output bytes, so editing them invalidates the cache."""
    from ec_node.devkit import psip_insert, synth
    from ec_node.ts import crc, psip, section

    h = hashlib.sha256()
    for mod in (synth, psip_insert, psip, section, crc):
        if mod.__file__:
            h.update(Path(mod.__file__).read_bytes())
    return h.hexdigest()


def cache_key(opts: SynthOptions) -> str:
    """Short hash naming the cached file: generator version, PyAV build, generator sources and options."""
    import av  # the encoder build is part of what determines the bytes

    text = f"{GENERATOR_VERSION}|{av.__version__}|{_source_digest()}|{opts!r}"
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def cached_media(opts: SynthOptions, cache_dir: Path | None = None) -> Path:
    """Path to a file made with ``opts``, generating it on first use."""
    d = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    path = d / f"{opts.codec}-{opts.width}x{opts.height}-{cache_key(opts)}.ts"
    if path.is_file() and path.stat().st_size > 0:
        return path
    return synthesize(path, opts)
