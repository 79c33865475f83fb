"""The bf16 task augmentation: parameters and activations in bfloat16, losses in float32, and
meta-training on it keeps the inner parameters bf16 and the rule's state float32."""
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lopt.outer import PES, train
from lopt.rules import make_rule
from lopt.tasks import make_family, resolve

KEY = jax.random.PRNGKey(0)


def _task(name):
    family = make_family(name)
    return family, family.build(family.sample(KEY))


def _matmul_result_types(fn, *args):
    hlo = jax.jit(fn).lower(*args).as_text()
    return re.findall(r"stablehlo\.(?:dot_general|convolution).*?-> tensor<[0-9x]*x?(\w+)>", hlo)


@pytest.mark.parametrize("name", ["digits_mlp", "digits_conv_bn", "char_rnn",
                                  "pydocs_transformer_reparam"])
def test_parameters_and_activations_are_bf16_and_the_loss_float32(name):
    family, task = _task(name + "_bf16")
    assert family.name.endswith("_bf16")
    params = jax.jit(task.init)(KEY)
    assert {x.dtype for x in jax.tree.leaves(params)} == {jnp.dtype(jnp.bfloat16)}
    loss, grads = jax.jit(jax.value_and_grad(task.loss))(params, KEY)
    assert loss.dtype == jnp.float32
    assert {x.dtype for x in jax.tree.leaves(grads)} == {jnp.dtype(jnp.bfloat16)}
    # Every matmul and convolution of the forward pass runs in bf16.
    kinds = _matmul_result_types(task.loss, params, KEY)
    assert kinds and set(kinds) == {"bf16"}, kinds
    # The same model in float32 at the same (bf16-representable) parameters: the bf16 loss
    # is its value up to bf16 rounding of the activations.
    _, full = _task(name)
    as_f32 = jax.tree.map(lambda x: x.astype(jnp.float32), params)
    assert set(_matmul_result_types(full.loss, as_f32, KEY)) == {"f32"}
    np.testing.assert_allclose(float(loss), float(jax.jit(full.loss)(as_f32, KEY)), rtol=3e-2)


def test_float32_tasks_stay_float32():
    """The models follow their parameters' dtype, so a float32 task has no bf16 anywhere."""
    for name in ("digits_conv_bn", "pydocs_transformer_reparam"):
        _, task = _task(name)
        params = task.init(KEY)
        assert "bf16" not in jax.jit(task.loss).lower(params, KEY).as_text()


@pytest.mark.slow  # 24 s: in CI's second command (pytest -m slow)
def test_meta_training_on_a_bf16_mixture_keeps_the_dtypes():
    family = make_family("mixture:digits_mlp_bf16+digits_conv_bn_bf16")
    estimator = PES(num_runs=4, truncation=3, horizon=8, sigma=0.01)
    result = train(make_rule("per_parameter_mlp"), family, estimator, num_steps=2,
                   progress=False)
    assert all(np.isfinite(h["meta_loss"]) and not h["skipped"] for h in result.history)
    for runs in result.state.est_state:  # one PES state per family
        assert {x.dtype for x in jax.tree.leaves(runs.pos.params)} == {jnp.dtype(jnp.bfloat16)}
        floats = {x.dtype for x in jax.tree.leaves(runs.pos.rule_state)
                  if jnp.issubdtype(x.dtype, jnp.floating)}
        assert floats == {jnp.dtype(jnp.float32)}
    # Batch norm's running statistics stay float32.
    stats = result.state.est_state[1].pos.task_state
    assert {x.dtype for x in jax.tree.leaves(stats)} == {jnp.dtype(jnp.float32)}


def test_bf16_suffix_names():
    assert make_family("mlp@3_bf16").name.endswith("_bf16")
    with pytest.raises(ValueError, match="_bf16 \\(low precision\\)"):
        resolve("no_such_task_bf16")
