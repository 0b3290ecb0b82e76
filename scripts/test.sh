#!/usr/bin/env bash
# The whole test suite: lint, types, tests. Creates its own virtual environment.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$ROOT/scripts/bootstrap.sh"
# Chromium for the browser tests (tests/support/browser.py); installed where we can (root + apt),
# otherwise those tests skip. Only the test command does this: the demo never installs system packages.
CHROMIUM="${EC_NODE_CHROMIUM:-/usr/bin/chromium}"
if [ ! -x "$CHROMIUM" ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
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
