"""μP task families: the coordinate check of Tensor Programs V (a few sign steps — Adam's
first steps — scaled by the model's multipliers move activations and logits by amounts that do
not grow with width, where standard parameterization's grow), the multipliers as values, and
the width names and samplers."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from lopt.outer.mup_rule import task_multipliers
from lopt.tasks import make_family, sample_spec
from lopt.tasks.models import MLP
from lopt.tasks.mup import (
    MuMLP,
    MuTransformerLM,
    StepMultipliers,
    mup_multipliers,
    mup_transformer_multipliers,
)
from lopt.tasks.sequence import TransformerLM

BASE = 32
LR = 0.02


def _sign_steps(apply, params, multipliers, x, y, steps=3):
    """``steps`` signSGD steps (Adam's first steps) with the μP multipliers, on one batch;
    returns (RMS change of the logits, RMS change of the features ``apply`` also returns)."""
    def loss(p):
        logits, _ = apply(p, x)
        return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

    def changes(params):
        def step(_, params):
            g = jax.grad(loss)(params)
            return jax.tree.map(lambda p, g, m: p - LR * m * jnp.sign(g), params, g,
                                multipliers)

        start = apply(params, x)
        params = jax.lax.fori_loop(0, steps, step, params)
        return [jnp.sqrt(jnp.mean(jnp.square(b - a))) for a, b in zip(apply(params, x), start)]

    return [float(c) for c in jax.jit(changes)(params)]


def _mlp_changes(width, mup):
    hidden = (width, width)
    x = jax.random.normal(jax.random.PRNGKey(0), (64, 16))
    y = jax.random.randint(jax.random.PRNGKey(1), (64,), 0, 10)
    module = MuMLP(hidden, 10, base_width=BASE) if mup else MLP(hidden, 10, "relu")
    params = module.init(jax.random.PRNGKey(2), x, False)["params"]

    def apply(p, x):
        # with the second hidden layer's pre-activations, as Tensor Programs V's check reads
        out, seen = module.apply({"params": p}, x, False,
                                 capture_intermediates=lambda m, _: m.name == "Dense_1")
        return out, seen["intermediates"]["Dense_1"]["__call__"][0]

    mult = mup_multipliers(params, BASE) if mup else jax.tree.map(lambda _: 1.0, params)
    return _sign_steps(apply, params, mult, x, y)


def test_mup_mlp_passes_the_coordinate_check_and_standard_mlp_does_not():
    # Widths 2x and 16x the base (at the base itself finite-width terms still show).
    mu = np.array([_mlp_changes(w, True) for w in (2 * BASE, 16 * BASE)])
    sp = np.array([_mlp_changes(w, False) for w in (2 * BASE, 16 * BASE)])
    # logits and hidden features: μP's change stays put over 8x the width (measured 1.0 and
    # 1.2); standard parameterization's grows with it (6.0 and 5.4)
    assert np.all(mu[1] / mu[0] < 1.4) and np.all(mu[1] / mu[0] > 0.7), mu
    assert np.all(sp[1] / sp[0] > 3.0), sp


def _transformer_change(width, mup):
    x = jax.random.randint(jax.random.PRNGKey(0), (4, 16), 0, 50)
    y = jnp.roll(x, -1, axis=1)
    module = MuTransformerLM(50, width, 2, base_width=BASE) if mup else \
        TransformerLM(50, width, 2)
    params = module.init(jax.random.PRNGKey(2), x, False)["params"]

    def apply(p, x):
        logits = module.apply({"params": p}, x, False)
        return logits, logits

    mult = mup_transformer_multipliers(params, BASE) if mup else \
        jax.tree.map(lambda _: 1.0, params)
    return _sign_steps(apply, params, mult, x, y)[0]


def test_mup_transformer_passes_the_coordinate_check_and_standard_does_not():
    # over 4x the width: μP's logit change measured 0.87x, standard's 2.0x
    mu = _transformer_change(8 * BASE, True) / _transformer_change(2 * BASE, True)
    sp = _transformer_change(8 * BASE, False) / _transformer_change(2 * BASE, False)
    assert 0.7 < mu < 1.4 and sp > 1.6, (mu, sp)


def test_multipliers_are_values_shared_within_a_parameterization():
    assert StepMultipliers("mlp", 64) == StepMultipliers("mlp", 64) != StepMultipliers("mlp", 1)
    w32, w128 = make_family("mup_mlp_w32"), make_family("mup_mlp_w128")
    task = w128.build(w128.sample(jax.random.PRNGKey(0)))
    params = task.init(jax.random.PRNGKey(1))
    m = task.step_multipliers(params)
    assert m["Dense_1"]["kernel"] == 64 / 128 and m["Dense_0"]["kernel"] == 1.0
    assert m["Dense_2"]["kernel"] == m["Dense_1"]["bias"] == 1.0
    from lopt.tasks import Mixture
    assert task_multipliers(Mixture((w32, w128))) == StepMultipliers("mlp", 64)
    with pytest.raises(ValueError, match="one μP parameterization"):
        task_multipliers(Mixture((w32, make_family("mup_transformer_w32"))))
    with pytest.raises(ValueError, match="has no μP step multipliers"):
        task_multipliers(make_family("digits_mlp"))


def test_transformer_multipliers_scale_exactly_the_hidden_kernels():
    family = make_family("mup_transformer_w128")
    task = family.build(family.sample(jax.random.PRNGKey(0)))
    params = task.init(jax.random.PRNGKey(1))
    m = task.step_multipliers(params)
    for name, leaves in m.items():
        for kind, value in leaves.items():
            hidden = kind == "kernel" and name.rsplit("_", 1)[0] in (
                "query", "key", "value", "attention_out", "mlp_in", "mlp_out")
            assert value == (64 / params[name][kind].shape[0] if hidden else 1.0), (name, kind)
    assert np.all(np.asarray(params["readout"]["kernel"]) == 0)
    assert np.all(np.asarray(params["query_0"]["kernel"]) == 0)


def test_width_is_the_samplers_axis():
    widths = {sample_spec("mup_mlp", s).kwargs()["width"] for s in range(60)}
    assert widths == {32, 64, 128, 256, 512, 1024, 2048, 4096}
    spec = sample_spec("mup_transformer", 0)
    assert spec.family().name == spec.name
