#!/usr/bin/env bash
# make bench: every benchmark under bench/, as ratios measured in one run.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v wrk >/dev/null || { echo "bench: wrk is missing (make deps)" >&2; exit 1; }
# the peer's packages, pinned by bench/peer/package-lock.json
if [ ! -d bench/peer/node_modules ] || [ bench/peer/package-lock.json -nt bench/peer/node_modules ]; then
    (cd bench/peer && { npm ci --ignore-scripts --no-audit --no-fund >/dev/null 2>&1 \
        || npm install --ignore-scripts --no-audit --no-fund --loglevel=error; } \
        && touch node_modules)
fi
perl bench/bench.pl "$@"
perl bench/workers.pl
