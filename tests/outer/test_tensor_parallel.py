"""Tensor-parallel tasks (Megatron-LM's layout, lopt.tasks.tensor_parallel): the same losses as
the plain task off a mesh, and meta-training on a runs × model mesh of 4 forced CPU devices
equal to one device, with the inner runs' matrices and the rule's state split over the model
axis between steps and no tensor gathered whole (on an MLP: the transformer's layout is
checked leaf by leaf off the mesh, its meta-training compile costs minutes here)."""
import json
import os
import pathlib
import subprocess
import sys

import jax
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

sys.path.insert(0, os.path.dirname(__file__))
from tensor_parallel_setup import FAMILY, MESH_SPLIT  # noqa: E402

from lopt.tasks import make_family  # noqa: E402
from lopt.tasks.tensor_parallel import constrain, megatron_specs  # noqa: E402

WORKER = str(pathlib.Path(__file__).with_name("tensor_parallel_worker.py"))
ATTN = "MultiHeadDotProductAttention_0"
# Megatron-LM §3 for one pre-norm block (d=16, 2 heads, MLP 64) and its read-out: q/k/v and
# the MLP's first matrix split their outputs (heads / hidden units), the attention output and
# the MLP's second matrix their inputs; embeddings and norms are whole.
SPLIT = {
    f"{ATTN}/query/kernel": (None, "model", None), f"{ATTN}/key/kernel": (None, "model", None),
    f"{ATTN}/value/kernel": (None, "model", None), f"{ATTN}/query/bias": ("model", None),
    f"{ATTN}/key/bias": ("model", None), f"{ATTN}/value/bias": ("model", None),
    f"{ATTN}/out/kernel": ("model", None, None),
    "Dense_0/kernel": (None, "model"), "Dense_0/bias": ("model",),
    "Dense_1/kernel": ("model", None),
    "Dense_2/kernel": (None, "model"), "Dense_2/bias": ("model",),
}


def _name(path) -> str:
    return "/".join(str(getattr(k, "key", k)) for k in path)


def _params(family):
    task = family.build(family.sample(jax.random.PRNGKey(0)))
    return task, jax.eval_shape(task.init, jax.random.PRNGKey(0))


def test_megatron_layout_of_a_transformer_block():
    _, shapes = _params(FAMILY)
    specs = megatron_specs(shapes, 2)
    got = {_name(path): tuple(s) for path, s in
           jax.tree_util.tree_leaves_with_path(specs, is_leaf=lambda s: isinstance(s, P))}
    expected = {name: SPLIT.get(name, ()) for name in got}
    assert got == expected
    # An axis the model axis does not divide stays whole (3 heads over 2 devices).
    three = megatron_specs({ATTN: {"query": {"kernel": jax.ShapeDtypeStruct((12, 3, 4),
                                                                           np.float32)}}}, 2)
    assert tuple(three[ATTN]["query"]["kernel"]) == ()


def test_off_a_mesh_the_tensor_parallel_task_is_the_plain_one():
    plain = make_family("transformer_lm")
    tp = make_family("transformer_lm_tp")
    assert tp.name == plain.name + "_tp"
    cfg = plain.sample(jax.random.PRNGKey(1))
    a, b = plain.build(cfg), tp.build(cfg)
    key = jax.random.PRNGKey(2)
    pa, pb = a.init(key), b.init(key)
    for x, y in zip(jax.tree.leaves(pa), jax.tree.leaves(pb)):
        np.testing.assert_array_equal(x, y)
    assert float(jax.jit(a.loss)(pa, key)) == float(jax.jit(b.loss)(pb, key))
    assert constrain(pa) is pa


@pytest.fixture(scope="module")
def worker():
    proc = subprocess.run([sys.executable, WORKER], env=dict(os.environ), capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads([line for line in proc.stdout.splitlines() if line.startswith("{")][-1])


@pytest.mark.devices
def test_meta_training_on_a_runs_by_model_mesh_equals_one_device(worker):
    assert worker["theta_diff"] < 1e-5
    one, mesh = worker["meta_loss"]
    np.testing.assert_allclose(mesh, one, rtol=1e-5)


@pytest.mark.devices
def test_the_inner_state_stays_split_over_the_model_axis_and_nothing_is_gathered(worker):
    layout = worker["layout"]
    for field in ("params", "rule_state['moms']"):
        for run in ("pos", "neg"):
            prefix = f".{run}.{field}"
            rows = {k[len(prefix):]: v for k, v in layout.items() if k.startswith(prefix + "[")}
            assert rows
            for key, spec in rows.items():
                name = "/".join(part.strip("'") for part in key[1:-1].split("]["))
                want = MESH_SPLIT.get(name, ())
                # Leading axis: the runs; then the model split, trailing whole axes dropped.
                assert spec[0] == "runs" and tuple(spec[1:]) == want[:len(spec) - 1] and \
                    all(a is None for a in want[len(spec) - 1:]), (prefix, name, spec)
    assert worker["kept"] and worker["compiles"] == 1
    # Row-parallel outputs and the meta-gradient are reduced; no tensor is gathered whole.
    assert worker["collectives"] == ["all-reduce"]
