"""lopt.torch's rules equal the JAX rules: every update of every step of a fixture the JAX rule
wrote (tests/fixtures/torch/make_fixtures.py), replayed through the torch rule from the same
.lopt file, agrees to 1e-5 of the tensor's largest update (float32)."""
import os

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="lopt.torch needs the torch extra: "
                                             "pip install -e '.[torch]'")

from lopt.torch import RULES, Optimizer, load  # noqa: E402

HERE = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "fixtures", "torch")
LEAVES = ("matrix", "tall", "conv", "vector", "scalar")
NUM_STEPS = 30
# The largest |torch − JAX| over a tensor's update, relative to that update's largest element.
TOLERANCE = {"celo2_graft": 1e-5, "celo2_random": 1e-5, "celo2_base_random": 1e-5,
             "adafac_tiny": 1e-5, "adafac_random": 1e-5, "celo_released": 1e-5}

pytestmark = pytest.mark.torch


def _t(x):
    return torch.from_numpy(np.array(x, dtype=np.float32))


def _source(name):
    path = os.path.join(HERE, f"{name}.lopt")
    return path if os.path.exists(path) else name


def _follow(fixture, params: dict, step, steps: int, reset: bool = False,
            roundings: float = 1e-7) -> None:
    """Give ``params`` (leaf -> Parameter) the fixture's gradients, call ``step()`` and check the
    parameters land on the JAX run's next ones (after the last step: p + u) within 1e-5 of the
    step plus ``roundings`` of the parameters' size; with ``reset`` each step starts from the
    JAX run's parameters."""
    n = len(fixture["loss"])
    for t in range(steps):
        for leaf, p in params.items():
            if reset:
                with torch.no_grad():
                    p.copy_(_t(fixture[f"p_{leaf}"][t]))
            p.grad = _t(fixture[f"g_{leaf}"][t])
        step()
        for leaf, p in params.items():
            want = fixture[f"p_{leaf}"][t + 1] if t + 1 < n else \
                fixture[f"p_{leaf}"][t] + fixture[f"u_{leaf}"][t]
            size = np.max(np.abs(fixture[f"u_{leaf}"][t]))
            np.testing.assert_allclose(p.detach().numpy(), want, rtol=0,
                                       atol=1e-5 * size + roundings * np.max(np.abs(want)),
                                       err_msg=f"{leaf} step {t}")


@pytest.mark.parametrize("name", sorted(TOLERANCE))
def test_every_update_of_every_step_equals_the_jax_rules(name):
    fixture = np.load(os.path.join(HERE, f"{name}.npz"))
    rule_name, config, theta = load(_source(name))
    rule = RULES[rule_name](theta, config, rule_name)
    steps = len(fixture["loss"])
    contexts = [{}] * steps  # a rule with a shared scheduler: its output each step
    if hasattr(rule, "init_shared"):
        shared = rule.init_shared(NUM_STEPS)
        for t in range(steps):
            context, shared = rule.schedule(shared, float(fixture["loss"][t]), NUM_STEPS)
            contexts[t] = {"context": context}
    worst = 0.0
    for leaf in LEAVES:
        p0 = _t(fixture[f"p_{leaf}"][0])
        acc = rule.init(p0)
        for t in range(steps):
            p = _t(fixture[f"p_{leaf}"][t])
            g = _t(fixture[f"g_{leaf}"][t])
            update, acc = rule.update(p, g, acc, t, NUM_STEPS, **contexts[t])
            want = fixture[f"u_{leaf}"][t]
            scale = float(np.max(np.abs(want)))
            if scale == 0:  # the schedule's first step (warm-up from 0): exactly zero too
                assert float(update.abs().max()) == 0.0, (leaf, t)
                continue
            error = float(np.max(np.abs(update.numpy() - want))) / scale
            worst = max(worst, error)
            assert error <= TOLERANCE[name], (leaf, t, error)
    print(f"{name}: worst relative difference {worst:.2e}")


def test_the_optimizer_moves_parameters_by_the_same_updates():
    """Through torch.optim: parameters set to the fixture's before every step, gradients
    given, ``step()``; the parameters move by the JAX updates (to one float32 addition: left
    to follow their own trajectory they drift by an ulp or two over 24 additions)."""
    fixture = np.load(os.path.join(HERE, "celo2_graft.npz"))
    params = {leaf: torch.nn.Parameter(_t(fixture[f"p_{leaf}"][0])) for leaf in LEAVES}
    opt = Optimizer(params.values(), "celo2_graft", num_steps=NUM_STEPS, layout="as_is")
    _follow(fixture, params, opt.step, len(fixture["loss"]), reset=True)


def test_mulo_param_groups_and_finite_gradients_are_the_jax_mulo_chain():
    """lopt.mup.mulo_chain over an adafac_mlp file (per-tensor μP multipliers, NaN gradients
    zeroed) is the torch Optimizer with one param group per tensor at its multiplier and
    finite_gradients=True: the parameters follow the JAX run (tests/fixtures/torch, mulo_random;
    the multipliers as lopt.mup.mup_lr_multipliers gives them for these flax-layout tensors)."""
    fixture = np.load(os.path.join(HERE, "mulo_random.npz"))
    assert np.isnan(fixture["g_matrix"][5]).any()
    multipliers = {"matrix": 2.0 / 6, "tall": 1.0, "conv": 1.0, "vector": 1.0, "scalar": 1.0}
    params = {leaf: torch.nn.Parameter(_t(fixture[f"p_{leaf}"][0])) for leaf in LEAVES}
    opt = Optimizer([{"params": [params[leaf]], "lr": multipliers[leaf]} for leaf in LEAVES],
                    os.path.join(HERE, "adafac_random.lopt"), layout="as_is",
                    finite_gradients=True)
    _follow(fixture, params, opt.step, len(fixture["loss"]) - 1)


def test_mup_param_groups_give_hidden_layers_hidden_lr_mult_over_fan_in():
    from lopt.torch import mup_param_groups

    def mlp(width):
        return torch.nn.Sequential(torch.nn.Linear(10, width), torch.nn.ReLU(),
                                   torch.nn.Linear(width, 2 * width), torch.nn.ReLU(),
                                   torch.nn.Linear(2 * width, 3))

    groups = mup_param_groups(mlp(64), mlp(16), hidden_lr_mult=2.0)
    lrs = [g["lr"] for g in groups]
    # input weight (one axis fixed), its bias, hidden weight [128, 64], bias, output, bias
    assert lrs == [1.0, 1.0, 2.0 / 64, 1.0, 1.0, 1.0]


def test_celo2_chain_is_the_jax_celo2_chain():
    """lopt.celo2_chain (the learned direction × lr on weights, AdamW at 20× on the vector and
    the scalar, decoupled weight decay 0.1) and lopt.torch.Celo2Chain move the parameters the
    same way over the fixture's run (celo2_chain_random)."""
    from lopt.torch import Celo2Chain

    fixture = np.load(os.path.join(HERE, "celo2_chain_random.npz"))
    params = {leaf: torch.nn.Parameter(_t(fixture[f"p_{leaf}"][0])) for leaf in LEAVES}
    chain = Celo2Chain(params.items(), os.path.join(HERE, "celo2_random.lopt"), lr=0.01,
                       weight_decay=0.1, layout="as_is")
    # Each step from the JAX run's parameters (the decay and the step round in another order),
    # within 1e-5 of the step and 2 float32 roundings of the parameter.
    _follow(fixture, params, chain.step, len(fixture["loss"]) - 1, reset=True, roundings=2.4e-7)
