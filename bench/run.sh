#!/usr/bin/env bash
# make bench: every benchmark under bench/, as ratios measured in one run.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v wrk >/dev/null || { echo "bench: wrk is missing (make deps)" >&2; exit 1; }
perl bench/bench.pl "$@"
perl bench/workers.pl
