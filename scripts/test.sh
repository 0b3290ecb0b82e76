#!/usr/bin/env bash
# The whole test suite: lint, types, tests. Creates its own virtual environment.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$ROOT/scripts/bootstrap.sh"
cd "$ROOT"
ruff check src tests bench
ruff format --check src tests bench
mypy
exec python -m pytest "$@"
