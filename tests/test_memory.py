"""The allocator settings apply on glibc and leave explicit environment settings alone."""

from __future__ import annotations

import subprocess
import sys
import types

import pytest

from ec_node import memory


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc only")
def test_tune_malloc_applies_on_glibc() -> None:
    code = "from ec_node.memory import tune_malloc; print(tune_malloc())"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "True"


def test_environment_settings_win(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[int, int]] = []

    def mallopt(param: int, value: int) -> int:  # stands in for glibc's
        calls.append((param, value))
        return 1

    fake_libc = types.SimpleNamespace(mallopt=mallopt)
    monkeypatch.setattr(memory.sys, "platform", "linux")
    monkeypatch.setattr(memory.ctypes.util, "find_library", lambda name: "libc.so.6")
    monkeypatch.setattr(memory.ctypes, "CDLL", lambda name: fake_libc)
    monkeypatch.setenv("MALLOC_ARENA_MAX", "8")
    monkeypatch.delenv("MALLOC_MMAP_THRESHOLD_", raising=False)
    monkeypatch.delenv("MALLOC_TRIM_THRESHOLD_", raising=False)
    assert memory.tune_malloc()
    assert (memory._M_ARENA_MAX, 2) not in calls and (memory._M_MMAP_THRESHOLD, 1 << 20) in calls
