#!/usr/bin/env bash
# The default `pytest` from a clean clone with empty caches, N times (issue 38, item 8):
# a fresh clone of HEAD, jax's persistent compilation cache and lopt's normalization cache
# emptied before each run, the repo's own virtual environment (its editable install is
# pointed at the clone through PYTHONPATH). Writes times.jsonl beside this script.
# Usage: benchmarks/test_time/measure.sh [N]  (nothing else may run on the machine meanwhile)
set -euo pipefail
repo="$(cd "$(dirname "$0")/../.." && pwd)"
n="${1:-3}"
out="$repo/benchmarks/test_time/times.jsonl"

for i in $(seq 1 "$n"); do
  clone="$(mktemp -d)/lopt"
  git clone -q "$repo" "$clone"
  commit="$(git -C "$clone" rev-parse --short HEAD)"
  rm -rf "${TMPDIR:-/tmp}/lopt-tests-xla-cache-$(id -u)"
  cache="$(mktemp -d)"
  start=$(date +%s.%N)
  set +e
  (cd "$clone" && LOPT_CACHE_DIR="$cache" PYTHONPATH="$clone" "$repo/.venv/bin/python" -m pytest \
     -p no:cacheprovider > "$clone/pytest.log" 2>&1)
  rc=$?
  set -e
  end=$(date +%s.%N)
  seconds=$(python3 -c "print(round($end - $start, 1))")
  echo "{\"run\": $i, \"commit\": \"$commit\", \"seconds\": $seconds, \"rc\": $rc, \"cores\": $(nproc), \"date\": \"$(date -u +%F' '%H:%M' UTC')\"}" | tee -a "$out"
  tail -3 "$clone/pytest.log"
  rm -rf "$clone" "$cache"
done
