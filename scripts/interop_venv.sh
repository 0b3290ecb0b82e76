#!/usr/bin/env bash
# The IETF moq-transport interop peer (tests/interop): aiomoqt, pinned, in its own venv .venv-interop.
# aiomoqt needs Python >= 3.12 while the project runs on 3.11, so it cannot share .venv.
# Never fails: without a Python >= 3.12 or when the install fails it prints one warning and exits 0,
# and the interop tests skip with that reason.
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv-interop"
PINS=(aiomoqt==0.13.3 aiopquic==0.6.1)
STAMP="$VENV/.ec-node-pins"

warn() {
  echo "ec-node: $*; the IETF interop tests will be skipped" >&2
  exit 0
}

# Already set up with these exact pins: nothing to do.
if [ "$(cat "$STAMP" 2>/dev/null)" = "${PINS[*]}" ] && "$VENV/bin/python" -c 'import aiomoqt' >/dev/null 2>&1; then
  exit 0
fi

# A Python >= 3.12 that really runs (pyenv shims exist for versions that are not selected, and fail).
PY=""
for cand in python3.12 python3.13 "$HOME"/.pyenv/versions/3.12*/bin/python "$HOME"/.pyenv/versions/3.13*/bin/python; do
  if command -v "$cand" >/dev/null 2>&1 \
    && "$cand" -c 'import sys, venv; sys.exit(0 if sys.version_info >= (3, 12) else 1)' >/dev/null 2>&1; then
    PY="$cand"
    break
  fi
done
[ -n "$PY" ] || warn "no Python >= 3.12 found (python3.12/3.13 on PATH or ~/.pyenv/versions/3.1[23]*) for aiomoqt"

rm -rf "$VENV"
"$PY" -m venv "$VENV" >/dev/null 2>&1 || { rm -rf "$VENV"; warn "could not create $VENV with $PY"; }
"$VENV/bin/python" -m pip install -q --disable-pip-version-check "${PINS[@]}" >/dev/null 2>&1 \
  || { rm -rf "$VENV"; warn "could not pip-install ${PINS[*]} into $VENV"; }
"$VENV/bin/python" -c 'import aiomoqt' >/dev/null 2>&1 \
  || { rm -rf "$VENV"; warn "aiomoqt does not import in $VENV"; }
echo "${PINS[*]}" >"$STAMP"
