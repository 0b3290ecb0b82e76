"""The fuzz kit (fuzz/): every seed is accepted or rejected as its decoder documents, and a short
coverage-guided run (atheris, a fixed seed and a fixed number of executions per target) finds nothing.
The longer campaign is ``python fuzz/run.py all --seconds 60 --keep-going`` (fuzz/README.md)."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]
FUZZ = ROOT / "fuzz"
SHORT_RUNS = 2000  # executions per target (seeds included): a smoke run, the campaign is documented


def _load_targets() -> ModuleType:
    spec = importlib.util.spec_from_file_location("ec_fuzz_targets", FUZZ / "targets.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look the module up while the class is built
    spec.loader.exec_module(mod)
    return mod


targets = _load_targets()
NAMES = sorted(targets.TARGETS)


@pytest.mark.parametrize("name", NAMES)
def test_seeds_are_accepted_or_rejected_as_documented(name: str) -> None:
    t = targets.TARGETS[name]
    seeds = sorted(targets.corpus_dir(name).iterdir())
    assert seeds, f"no seed corpus for {name}: run python fuzz/make_corpus.py"
    accepted = 0
    for path in seeds:
        data = path.read_bytes()
        assert len(data) <= t.max_len, f"{path.name} is longer than the target's max_len"
        try:
            t.run(data)
        except t.expected:
            continue
        except BaseException as e:  # noqa: BLE001 - anything undocumented is the finding this test exists for
            pytest.fail(f"{name}/{path.name}: {type(e).__name__}: {e}")
        accepted += 1
    assert accepted, f"every seed of {name} is rejected: the fuzzer would start from nothing valid"


def test_every_target_has_a_dictionary_that_exists() -> None:
    for t in targets.TARGETS.values():
        d = targets.dict_path(t)
        assert d is None or d.is_file(), f"{t.name}: missing {d}"


def test_short_fuzz_run_finds_nothing(tmp_path: Path) -> None:
    try:
        import atheris  # noqa: F401
    except ImportError:
        pytest.skip("atheris is not installed (pip install -e '.[test]'): no coverage-guided run")
    cmd = [sys.executable, str(FUZZ / "run.py"), "all", "--runs", str(SHORT_RUNS), "--seed", "1"]
    cmd += ["--jobs", str(min(4, os.cpu_count() or 1)), "--json", "--artifacts", str(tmp_path)]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path)
    results = {r["target"]: r for r in map(json.loads, proc.stdout.splitlines())}
    assert set(results) == set(NAMES), proc.stderr[-3000:]
    problems = []
    for name, r in sorted(results.items()):
        if r["error"]:
            problems.append(f"{name}: runner error: {r['error']}")
        for f in r["findings"]:
            head = f"{name}: {f['kind']} {f['signature']}"
            problems.append(f"{head}\ninput (hex): {f['input_hex'][:400]}\n{f['traceback']}")
        if r["executions"] < SHORT_RUNS:
            problems.append(f"{name}: only {r['executions']} executions")
    assert not problems, "\n\n".join(problems)
    assert proc.returncode == 0, proc.stderr[-3000:]
