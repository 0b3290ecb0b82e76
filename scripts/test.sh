#!/usr/bin/env bash
# The whole test suite: lint, types, tests. Creates its own virtual environment.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$ROOT/scripts/bootstrap.sh"
# Test-only installs, which the demo never makes: the [test] extra (pytest, hypothesis, ruff, mypy,
# playwright, ...) and, as root with apt, SiliconDust's hdhomerun-config for the emulator test.
echo "ec-node: test set-up: the [test] extra (pytest, hypothesis, ruff, mypy, playwright, m3u8, PyJWT) into ${VENV/#$ROOT\//./}" >&2
"$VENV/bin/python" -m pip install -qq --disable-pip-version-check -e "$ROOT[test]"
if ! command -v hdhomerun_config >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "ec-node: test set-up: installing hdhomerun-config with apt-get (for the emulator test)" >&2
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq hdhomerun-config) >/dev/null 2>&1 \
    || echo "ec-node: could not install hdhomerun-config; its test will be skipped" >&2
fi
# Chromium for the browser tests (tests/support/browser.py); installed where we can (root + apt),
# otherwise those tests skip. Only the test command does this: the demo never installs system packages.
CHROMIUM="${EC_NODE_CHROMIUM:-/usr/bin/chromium}"
if [ ! -x "$CHROMIUM" ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "ec-node: test set-up: installing chromium with apt-get (for the browser tests)" >&2
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) >/dev/null 2>&1 \
    || echo "ec-node: could not install chromium; the browser tests will be skipped" >&2
  CHROMIUM=/usr/bin/chromium
fi
if [ -x "$CHROMIUM" ]; then
  export EC_NODE_CHROMIUM="$CHROMIUM"
fi
bash "$ROOT/scripts/interop_venv.sh" || true  # aiomoqt (Python >= 3.12) for tests/interop; skips if absent
cd "$ROOT"
ruff check src tests bench
ruff format --check src tests bench
mypy
exec python -m pytest "$@"
