"""lopt.bench.perf.profile's pieces: operations sorted into kinds by the primitive they came
from, and a traced function's time split by kind (a real jax.profiler trace of a small jitted
function with a matmul, an RNG draw and elementwise work)."""
import jax
import jax.numpy as jnp

from lopt.bench.perf.profile import _trace_ops, op_kind


def test_op_kinds_come_from_the_source_primitive():
    assert op_kind("ynn_fusion.3", "jit(f)/dot_general") == "matmul"
    assert op_kind("fusion.2", "jit(f)/threefry2x32/shift_right_logical") == "rng"
    assert op_kind("bitcast_dynamic-update-slice_fusion", "jit(f)/dynamic_update_slice") == \
        "data movement"
    assert op_kind("reduce.1", "jit(f)/reduce_sum") == "reduction"
    assert op_kind("add_divide_fusion", "jit(f)/div") == "elementwise"


def test_a_trace_is_split_by_kind():
    def f(x, key):
        noise = jax.random.normal(key, x.shape)
        return jnp.tanh((x @ x) * 1.5 + noise).sum()

    out = _trace_ops(jax.jit(f), (jnp.ones((256, 256)), jax.random.PRNGKey(0)), calls=2)
    kinds = {k["kind"]: k for k in out["kinds"]}
    assert "matmul" in kinds and "rng" in kinds
    assert all(k["ms_per_call"] >= 0 and k["ops_per_call"] >= 1 for k in out["kinds"])
    traced = out["ops"][1]["ms_per_call"]
    assert abs(sum(k["ms_per_call"] for k in out["kinds"]) - traced) <= 1e-6 + 1e-9 * traced
