#!/usr/bin/env bash
# The main job: the whole split-source mesh on this machine, output under ./ec-demo/.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$ROOT/scripts/bootstrap.sh"
exec ec-node demo "$@"
