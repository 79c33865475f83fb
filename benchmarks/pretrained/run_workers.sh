#!/usr/bin/env bash
# The extended meta-test (`lopt bench pretrained`, ~22 h of compute on this 2-core machine) as
# it is run here: two workers pinned one to a core on the shared, committed stage cache (the
# first from the first task, the second from the last: docs/index.md, "lopt bench"), each in a
# worktree of main's current commit so later commits do not change the code under them, and a
# loop committing the cache every 20 minutes so that a machine reset loses at most that much.
# Run from the repository root, after `pip install -e .` into .venv; it returns at once and
# leaves the logs in /tmp/pretrained_worker{1,2}.log. Stop: pkill -f run_workers; pkill -f "lopt bench pretrained".
set -euo pipefail
root=$(git rev-parse --show-toplevel)
cache="$root/benchmarks/pretrained/cache"
python="$root/.venv/bin/python"
for w in 1 2; do
  tree="$root/../pretrained_worker$w"
  [ -d "$tree" ] || git worktree add -q --detach "$tree" HEAD
  git -C "$tree" checkout -q --detach "$(git rev-parse HEAD)"
done
worker() {  # worker N CORE ARGS...: retried, since a long run may die of memory and resume
  local n=$1 core=$2; shift 2
  cd "$root/../pretrained_worker$n"
  for _ in $(seq 20); do
    PYTHONPATH=. JAX_ENABLE_COMPILATION_CACHE=false nice -n 5 taskset -c "$core" "$python" \
      -m lopt bench pretrained --cache "$cache" --no-progress "$@" \
      >> "/tmp/pretrained_worker$n.log" 2>&1 && break
    sleep 5
  done
}
commit_cache() {
  cd "$root"
  while pgrep -f "m lopt bench pretrained" > /dev/null; do
    sleep 1200
    n=$(find "$cache" -maxdepth 1 -name "*.json" | wc -l)
    git add "$cache" && git commit -q -m "benchmarks/pretrained/cache: $n stages cached so far" \
      -- "$cache" || true
  done
}
(worker 1 0 &) ; (worker 2 1 --out "$root/../pretrained_worker2/benchmarks/pretrained_reverse" \
  --reverse &)
sleep 10
(commit_cache > /dev/null 2>&1 &)
echo "two workers started; the cache is committed every 20 minutes while they run"
