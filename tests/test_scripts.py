"""scripts/: the demo's set-up installs only what the demo needs; test-only installs are the test command's.

The scripts run for real on a copy of scripts/ under a temporary root, with stand-ins for pip (the venv's
python), npm, apt-get, id (as root) and the commands they end with, each recording how it was called.
Nothing is installed.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

SCRIPTS = Path(__file__).parents[1] / "scripts"

RECORDER = """#!/bin/sh
echo "$(basename "$0") $*" >> "{log}"
{extra}
exit 0
"""


NPM_CI = '[ "$1" = ci ] && mkdir -p "$3/node_modules/hls.js/dist" && touch "$3/node_modules/hls.js/dist/hls.min.js"'


def _stub(path: Path, log: Path, extra: str = "") -> None:
    path.write_text(RECORDER.format(log=log, extra=extra))
    path.chmod(path.stat().st_mode | stat.S_IXUSR)


@pytest.fixture
def sandbox(tmp_path: Path) -> tuple[Path, dict[str, str], Path]:
    """A root with a copy of scripts/, a ready venv of stand-ins, and a PATH of stand-ins and a few tools."""
    root = tmp_path / "root"
    (root / "scripts").mkdir(parents=True)
    for name in ("bootstrap.sh", "demo.sh", "test.sh"):
        shutil.copy(SCRIPTS / name, root / "scripts" / name)
    (root / "web").mkdir()
    (root / "web" / "package-lock.json").write_text("{}")
    log = tmp_path / "calls.log"
    log.touch()
    _stub(root / "scripts" / "interop_venv.sh", log)
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    for name in ("python", "ec-node", "ruff", "mypy"):
        _stub(venv / "bin" / name, log)
    stubs = tmp_path / "bin"
    stubs.mkdir()
    _stub(stubs / "apt-get", log)
    _stub(
        stubs / "npm",
        log,
        extra=NPM_CI,
    )
    _stub(stubs / "id", log, extra="echo 0")  # as root: where the old set-up ran apt-get
    _stub(stubs / "chromium", log)
    for tool in ("dirname", "basename", "cmp", "cp", "cat", "mkdir", "touch"):
        found = shutil.which(tool)
        assert found is not None
        (stubs / tool).symlink_to(found)
    # no hdhomerun_config on this PATH, so a set-up that installs it would call apt-get
    env = {"PATH": str(stubs), "EC_NODE_VENV": str(venv), "EC_NODE_CHROMIUM": str(stubs / "chromium"),
           "HOME": str(tmp_path), "PYTHON": str(venv / "bin" / "python")}  # fmt: skip
    return root, env, log


def _run(root: Path, env: dict[str, str], script: str) -> subprocess.CompletedProcess[str]:
    bash = shutil.which("bash")
    assert bash is not None
    return subprocess.run([bash, str(root / "scripts" / script)], env=env, capture_output=True, text=True, timeout=60)


def test_the_demo_set_up_installs_the_package_without_test_extras_and_no_system_packages(
    sandbox: tuple[Path, dict[str, str], Path],
) -> None:
    root, env, log = sandbox
    r = _run(root, env, "demo.sh")
    assert r.returncode == 0, r.stderr
    calls = log.read_text().splitlines()
    assert f"python -m pip install -qq --disable-pip-version-check -e {root}" in calls
    assert not [c for c in calls if "[test]" in c]  # no pytest, ruff, mypy, ...
    assert not [c for c in calls if c.startswith("apt-get")]  # run as root, still no apt-get
    assert any(c.startswith("npm ci --prefix") for c in calls)  # the watch page's packages
    assert calls[-1] == "ec-node demo"
    said = [ln for ln in r.stderr.splitlines() if ln.startswith("ec-node: set-up:")]
    assert len(said) == 1 and "pinned Python dependencies" in said[0] and "npm" in said[0], r.stderr


def test_the_test_command_adds_the_test_extra_and_says_it_installs_hdhomerun_config_with_apt(
    sandbox: tuple[Path, dict[str, str], Path],
) -> None:
    root, env, log = sandbox
    r = _run(root, env, "test.sh")
    assert r.returncode == 0, r.stderr
    calls = log.read_text().splitlines()
    assert f"python -m pip install -qq --disable-pip-version-check -e {root}[test]" in calls
    assert "apt-get install -y -qq hdhomerun-config" in calls
    assert "ec-node: test set-up: installing hdhomerun-config with apt-get (for the emulator test)" in r.stderr
    assert "[test] extra" in r.stderr
    assert calls[-1] == "python -m pytest"  # and then the suite itself


def test_demo_sh_sources_only_the_shared_set_up() -> None:
    text = (SCRIPTS / "bootstrap.sh").read_text()
    assert "[test]" not in text and "apt-get" not in text
    assert os.access(SCRIPTS / "demo.sh", os.X_OK) and os.access(SCRIPTS / "test.sh", os.X_OK)
