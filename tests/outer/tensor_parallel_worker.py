"""Meta-training a tensor-parallel MLP on a 2 × 2 (runs × model) mesh of forced CPU devices,
beside the same run on one device. Run by tests/outer/test_tensor_parallel.py; prints
one JSON line."""
import json
import os
import re
import sys

os.environ["XLA_FLAGS"] = os.environ.get("XLA_FLAGS", "") + \
    " --xla_force_host_platform_device_count=4"

import jax  # noqa: E402
import numpy as np  # noqa: E402

sys.path.insert(0, os.path.dirname(__file__))
from tensor_parallel_setup import EST, RULE  # noqa: E402
from tensor_parallel_setup import MESH_FAMILY as FAMILY

from lopt.outer import default_meta_optimizer, train  # noqa: E402
from lopt.outer.placement import Placement  # noqa: E402
from lopt.outer.train import RunOptions, _build, _initial_state, make_outer_step  # noqa: E402

COLLECTIVE = re.compile(r"= \(?(\w+)\[[0-9,]*\][^ ]* (all-gather|all-reduce|all-to-all|"
                        r"collective-permute|reduce-scatter)(?:-start)?\(")


def main():
    one = train(RULE, FAMILY, EST, num_steps=2, seed=3, progress=False)
    # The same two outer steps as train compiles them, on the runs × model mesh.
    place = Placement(jax.devices(), EST.num_tasks, model=2)
    est = _build(EST, RULE, FAMILY, place)
    meta_opt = default_meta_optimizer()
    state = _initial_state(RULE, est, RunOptions(num_steps=2, seed=3), meta_opt, place)
    step = place.compile(make_outer_step(est, meta_opt), state)
    state = place.to_devices(state)
    hlo = step.lower(state).compile().as_text()
    losses = []
    for _ in range(2):
        state, metrics = step(state)
        losses.append(float(place.first(metrics["meta_loss"])))
    theta_diff = max(float(np.max(np.abs(np.asarray(a) - np.asarray(b)))) for a, b in
                     zip(jax.tree.leaves(one.theta), jax.tree.leaves(place.to_host(state).theta)))
    layout = {jax.tree_util.keystr(path): [None if a is None else str(a) for a in s.spec]
              for path, s in jax.tree_util.tree_leaves_with_path(place._layout.est_state)}
    kept = all(x.sharding == s for x, s in zip(jax.tree.leaves(state.est_state),
                                                jax.tree.leaves(place._layout.est_state)))
    print(json.dumps({
        "theta_diff": theta_diff, "meta_loss": [[h["meta_loss"] for h in one.history], losses],
        "layout": layout, "kept": kept,
        "collectives": sorted({m.group(2) for m in COLLECTIVE.finditer(hlo)}),
        "compiles": step._cache_size()}))


if __name__ == "__main__":
    main()
