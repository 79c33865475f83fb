"""The recomputed meta-test (benchmarks/pretrained/cache) against the interim report committed
before the machine reset (benchmarks/pretrained/interim/results.json): which per-task learning
rates and step scales the recomputed sweeps choose again, which recomputed rows have bit-identical
raw final losses, each optimizer's catastrophic runs on the recomputed tasks then and now, and the
rows whose normalized finals moved most. Run from the repository root:
.venv/bin/python benchmarks/pretrained/compare_with_interim.py"""
import json
import os

import numpy as np

from lopt.bench.pretrained_report import DEFAULT_ROW, raw_pair
from lopt.bench.pretrained_tuning import best_index, stage_name
from lopt.evaluation.robustness import catastrophic

ROOT = "benchmarks/pretrained"
TUNED = ("adam", "adamw", "celo2_graft", "celo2_graft_v2", "celo2_broad", "adafac_tiny",
         "celo_tiny", "celo_released")


def stage(key):
    path = f"{ROOT}/cache/{key}.json"
    return json.load(open(path))["value"] if os.path.exists(path) else None


def finals(row, key):
    """A row's per-run finals (``key``: "raw_final" or "final"), a diverged run's None as NaN."""
    return np.array([np.nan if x is None else x for x in row[key]], float)


def main():
    interim = json.load(open(f"{ROOT}/interim/results.json"))
    grid = interim["size"]["grid"]
    sweeps = same_lr = rows = same_rows = 0
    moved = []
    worst_case = {}  # row name -> [tasks, catastrophic in the interim, catastrophic now]
    for label, results in interim["results"].items():
        by_name = {r["name"]: r for r in results}
        for opt in TUNED:
            scores = stage(f"sweep_{stage_name(opt)}_{stage_name(label)}")
            row = by_name.get(f"{opt} (per-task lr)")
            if scores is None or row is None:
                continue
            sweeps += 1
            best = grid[best_index(scores)]
            same_lr += best == row["learning_rate"]
        default_now = stage(f"eval_{stage_name(label)}_{stage_name(DEFAULT_ROW)}")
        default_then = raw_pair(by_name[DEFAULT_ROW])
        for name, row in by_name.items():
            value = stage(f"eval_{stage_name(label)}_{stage_name(name)}")
            if value is None:
                continue
            if default_now is not None:
                counts = worst_case.setdefault(name, [0, 0, 0])
                counts[0] += 1
                counts[1] += int(catastrophic(raw_pair(row), default_then).sum())
                counts[2] += int(catastrophic(raw_pair(value), raw_pair(default_now)).sum())
            rows += 1
            a, b = finals(row, "raw_final"), finals(value, "raw_final")
            same_rows += bool(np.array_equal(a, b, equal_nan=True))
            # Ranked by the normalized finals' movement (the suite's common scale): a raw final
            # near 0 (a task fitted exactly) moves by 1e20 relative on a float's worth of change.
            na, nb = finals(row, "final"), finals(value, "final")
            both = np.isfinite(na) & np.isfinite(nb)
            if both.any():  # a run diverged in both: nothing to measure, nothing to rank
                rel = np.max(np.abs(a - b)[both] / np.maximum(np.abs(a[both]), 1e-30))
                moved.append((float(np.max(np.abs(na - nb)[both])), float(rel), label, name,
                              row["diverged"], value["diverged"]))
    print(f"{same_lr} of {sweeps} recomputed sweeps choose the interim's per-task value")
    print(f"{same_rows} of {rows} recomputed rows have bit-identical raw finals")
    print("catastrophic runs on the recomputed tasks, interim -> now (changed rows first):")
    for name, (tasks, was, now) in sorted(worst_case.items(), key=lambda kv: (
            kv[1][1] == kv[1][2], kv[0])):
        print(f"  {name}: {was} -> {now} over {tasks} tasks")
    print("largest moves of a normalized final (raw final's relative move; diverged runs "
          "interim -> now):")
    for norm, rel, label, name, was, now in sorted(moved, reverse=True)[:10]:
        print(f"  {norm:.3g} ({rel:.3g} raw relative; diverged {was} -> {now}): {label}, {name}")


if __name__ == "__main__":
    main()
