#!/usr/bin/env bash
# Wall time of every paper suite's --quick size from nothing cached (fresh output and
# LOPT_CACHE_DIR): writes benchmarks/quick.md. Usage: bash benchmarks/quick.sh [SCRATCH_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
scratch=${1:-$(mktemp -d)}
export LOPT_CACHE_DIR="$scratch/cache"
table() {
python - "$scratch" > benchmarks/quick.md <<'PY'
import json, sys
from lopt.files.provenance import markdown_line
rows = []
import os
for suite in ("l2l", "hyperadam", "multiscale", "history", "metz", "zoo"):
    path = f"{sys.argv[1]}/{suite}/results.json"
    if not os.path.exists(path):
        rows.append(f"| `lopt bench {suite} --quick` | not run yet | — |")
        continue
    with open(path) as f:
        p = json.load(f)["provenance"]
    rows.append(f"| `lopt bench {suite} --quick` | {p['wall_s']:.0f} | {'yes' if p['wall_s'] < 300 else 'no'} |")
print("# `--quick` wall times\n")
print("Made by `bash benchmarks/quick.sh`: each suite's quick size from an empty output folder "
      "and an empty `LOPT_CACHE_DIR` (datasets and normalization references built from "
      f"scratch), one after another. Record of the last suite run: {markdown_line(p)}\n")
print("| command | wall s | under 5 minutes |\n|---|---|---|")
print("\n".join(rows))
PY
}
for suite in l2l hyperadam multiscale history metz zoo; do
  rm -rf "${scratch:?}/$suite"
  lopt bench "$suite" --quick --out "$scratch/$suite" --no-progress > /dev/null
  table  # after each suite, so a stopped run keeps what it measured
done
cat benchmarks/quick.md
