"""Shared, session-scoped synthetic media (generated once, cached under <repo>/.media-cache/).

Every fixture returns a Path to a small ATSC-like transport stream with PSIP on 0x1FFB (channel
"WSYN-HD" 7.1, TSID 0x0801, program 3; PMT 0x30, video 0x31, audio 0x34). Files are keyed by a hash of
their SynthOptions, so changing options regenerates them; concurrent test processes are safe.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from ec_node.devkit.media_cache import cached_media
from ec_node.devkit.synth import SynthOptions, preset_options

from support.tinyts import make_ts

# Small MPEG-2 + AC-3, 29.97 progressive 320x180, GOP 16 frames (closed) / 15 (open), null-stripped.
MPEG2_OPTS: SynthOptions = preset_options("small", "mpeg2", duration_s=12.0)
MPEG2_OPEN_GOP_OPTS: SynthOptions = preset_options("small", "mpeg2", duration_s=12.0, closed_gop=False)
# Same as MPEG2_OPTS but CBR with null padding kept (muxrate = SynthResult.muxrate).
MPEG2_CBR_OPTS: SynthOptions = preset_options("small", "mpeg2", duration_s=12.0, null_padding=True)
# Small H.264 + AAC, closed GOP of 15 frames, null-stripped.
H264_OPTS: SynthOptions = preset_options("small", "h264", duration_s=10.0)


@pytest.fixture(scope="session")
def media_mpeg2() -> Path:
    return cached_media(MPEG2_OPTS)


@pytest.fixture(scope="session")
def media_mpeg2_open_gop() -> Path:
    return cached_media(MPEG2_OPEN_GOP_OPTS)


@pytest.fixture(scope="session")
def media_mpeg2_cbr() -> Path:
    return cached_media(MPEG2_CBR_OPTS)


@pytest.fixture(scope="session")
def media_h264() -> Path:
    return cached_media(H264_OPTS)


@pytest.fixture(scope="session")
def hdhr_media(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny MPEG-2 + AC-3 TS without PSIP (the emulator falls back to channel 7.1 "WSYN-HD")."""
    return make_ts(tmp_path_factory.mktemp("hdhr_media") / "tiny.ts")
