#!/usr/bin/env bash
# Creates ./.venv and installs what running ec-node needs: the package with its pinned runtime
# dependencies (no test tools) and the watch page's npm packages (hls.js; npm ci in web/). No system
# packages.
# Sourced by demo.sh and test.sh; test.sh adds the test-only installs itself.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${EC_NODE_VENV:-$ROOT/.venv}"
PY="${PYTHON:-}"
if [ -z "$PY" ]; then
  for c in python3.11 python3.12 python3.13 python3; do
    if command -v "$c" >/dev/null 2>&1 && "$c" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then PY="$c"; break; fi
  done
fi
[ -n "$PY" ] || { echo "ec-node: Python >= 3.11 is required" >&2; exit 1; }
if [ ! -x "$VENV/bin/python" ]; then
  "$PY" -m venv "$VENV"
fi
echo "ec-node: set-up: installing ec-node and its pinned Python dependencies into ${VENV/#$ROOT\//./} and the watch page's npm packages into web/node_modules (npm ci); nothing else" >&2
"$VENV/bin/python" -m pip install -qq --disable-pip-version-check -e "$ROOT"
# hls.js for the watch page (served at /vendor/hls.min.js), pinned by web/package-lock.json.
# The copy of the lock kept in node_modules tells whether the installed tree is the locked one.
WEB="$ROOT/web"
if command -v npm >/dev/null 2>&1; then
  if [ ! -f "$WEB/node_modules/hls.js/dist/hls.min.js" ] || ! cmp -s "$WEB/package-lock.json" "$WEB/node_modules/.ec-node-lock.json"; then
    if npm ci --prefix "$WEB" --no-audit --no-fund --loglevel=error >/dev/null 2>&1; then
      cp "$WEB/package-lock.json" "$WEB/node_modules/.ec-node-lock.json"
    else
      echo "ec-node: npm ci in web/ failed; the watch page will use the browser's native HLS only" >&2
    fi
  fi
else
  echo "ec-node: npm not found; the watch page will use the browser's native HLS only" >&2
fi
export PATH="$VENV/bin:$PATH"
