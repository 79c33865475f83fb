"""Every learned rule's update on parameters sharded over a 2- and a 4-device mesh, beside the
same update unsharded. Run by tests/rules/test_sharded_updates.py in a process with 4 forced
CPU devices; prints one JSON line per (rule, mesh size).
usage: sharded_worker.py MESH_SIZE [MESH_SIZE ...]"""
import json
import os
import re
import sys

os.environ["XLA_FLAGS"] = os.environ.get("XLA_FLAGS", "") + \
    " --xla_force_host_platform_device_count=4"

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from jax.sharding import Mesh, NamedSharding  # noqa: E402
from jax.sharding import PartitionSpec as P  # noqa: E402

import lopt  # noqa: E402
from lopt.rules import LEARNED, make_rule  # noqa: E402

COLLECTIVE = re.compile(r"= (\w+)\[([0-9,]*)\][^ ]* (all-gather|all-reduce|all-to-all|"
                        r"collective-permute|reduce-scatter)(?:-start)?\(")
# A column-split and a row-split matrix (tensor parallelism's two layouts) and a split bias.
SPECS = {"w1": P(None, "model"), "w2": P("model", None), "b": P("model")}


def tree():
    rng = np.random.default_rng(0)
    shapes = {"w1": (64, 48), "w2": (48, 32), "b": (32,)}
    params = {k: jnp.asarray(0.1 * rng.standard_normal(s), jnp.float32) for k, s in shapes.items()}
    grads = {k: jnp.asarray(rng.standard_normal(s), jnp.float32) for k, s in shapes.items()}
    return params, grads


def main():
    params, grads = tree()
    for name in sorted(LEARNED):
        rule = make_rule(name)
        tx = lopt.as_optax(rule, rule.init_meta(jax.random.PRNGKey(0)), num_steps=100)

        def two_steps(p, g, s):
            # Two updates: the second reads the state the first wrote on the shards.
            u, s = tx.update(g, s, p, value=jnp.float32(1.0))  # noqa: B023
            p = jax.tree.map(jnp.add, p, u)
            u, s = tx.update(g, s, p, value=jnp.float32(0.9))  # noqa: B023
            return jax.tree.map(jnp.add, p, u), s

        reference, _ = jax.jit(two_steps)(params, grads, tx.init(params))
        for size in [int(a) for a in sys.argv[1:]]:
            mesh = Mesh(np.array(jax.devices()[:size]), ("model",))
            shardings = {k: NamedSharding(mesh, s) for k, s in SPECS.items()}
            ps = jax.device_put(params, shardings)
            gs = jax.device_put(grads, shardings)
            state = jax.jit(tx.init)(ps)
            # One compile serves both the run and the program text.
            step = jax.jit(two_steps).lower(ps, gs, state).compile()
            out, _ = step(ps, gs, state)
            hlo = step.as_text()
            collectives = [(kind, [int(d) for d in dims.split(",") if d])
                           for _, dims, kind in COLLECTIVE.findall(hlo)]
            print(json.dumps({
                "rule": name, "devices": size,
                "error": max(float(jnp.max(jnp.abs(a - b)) / jnp.max(jnp.abs(b)))
                             for a, b in zip(jax.tree.leaves(out), jax.tree.leaves(reference))),
                "kept": {k: out[k].sharding.is_equivalent_to(shardings[k], out[k].ndim)
                         for k in SPECS},
                "collectives": collectives}), flush=True)


if __name__ == "__main__":
    main()
