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
TOLERANCE = {"celo2_graft": 1e-5, "celo2_graft_v2": 1e-5, "celo2_random": 1e-5,
             "celo2_base_random": 1e-5, "celo2_options_random": 1e-5,
             "adafac_tiny": 1e-5, "adafac_random": 1e-5, "celo_released": 1e-5,
             "celo_tiny": 1e-5, "celo_random": 1e-5, "velo_random": 1e-5,
             "velo_bugged_random": 5e-5, "velo_trainable": 1e-5}
# VeLO's per-parameter MLP weights are 100x a mix of its stacked MLPs, so float32 rounding
# reaches its outputs amplified: on velo_bugged_random (its LSTM state frozen, as HyperV2's
# use_bugged_next_lstm_state) one scalar's update parts by 3.4e-5. That is float32's own
# limit, not the port's: the JAX rule in float32 is 9.2e-5 from itself in float64 on the same
# inputs (2.1e-3 on velo_random), while the two ports agree to 1e-13 in float64
# (test_velo_in_float64_equals_the_jax_rule_in_x64_mode).

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
    worst = 0.0
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
            allowed = 1e-5 * size + roundings * np.max(np.abs(want))
            np.testing.assert_allclose(p.detach().numpy(), want, rtol=0, atol=allowed,
                                       err_msg=f"{leaf} step {t}")
            worst = max(worst, float(np.max(np.abs(p.detach().numpy() - want))) / allowed)
    return worst


@pytest.mark.parametrize("name", sorted(TOLERANCE))
def test_every_update_of_every_step_equals_the_jax_rules(name):
    worst = _replay(name, np.load(os.path.join(HERE, f"{name}.npz")), TOLERANCE[name])
    assert 0 <= worst <= TOLERANCE[name]


@pytest.mark.parametrize("name", ["velo_random", "velo_bugged_random"])
def test_velo_in_float64_equals_the_jax_rule_in_x64_mode(name):
    """Beyond float32's rounding (where VeLO's 100x-mixed MLP weights and raw linear step
    multiplier bound the agreement, TOLERANCE): in float64 the torch rule and the JAX rule under
    x64 (tests/fixtures/torch, NAME.float64.npz) agree to 1e-10 of every update."""
    fixture = np.load(os.path.join(HERE, f"{name}.float64.npz"))
    assert fixture["u_matrix"].dtype == np.float64
    assert 0 <= _replay(name, fixture, 1e-10, dtype=torch.float64) <= 1e-10


def _replay(name, fixture, tolerance, dtype=torch.float32):
    rule_name, config, theta = load(_source(name))
    rule = RULES[rule_name](theta, config, rule_name) if dtype == torch.float32 else \
        RULES[rule_name](theta, config, rule_name, dtype=dtype)
    steps = len(fixture["loss"])
    as_tensor = lambda x: torch.from_numpy(np.array(x)).to(dtype)
    p = {leaf: [as_tensor(x) for x in fixture[f"p_{leaf}"]] for leaf in LEAVES}
    g = {leaf: [as_tensor(x) for x in fixture[f"g_{leaf}"]] for leaf in LEAVES}
    acc = {leaf: rule.init(p[leaf][0]) for leaf in LEAVES}
    shared = rule.init_shared(NUM_STEPS) if hasattr(rule, "init_shared") else None
    worst = 0.0
    for t in range(steps):
        # a rule with a scheduler: its output this step (one for all tensors, or one each
        # from every tensor's state, as lopt.torch.Optimizer.step calls it)
        contexts = {leaf: {} for leaf in LEAVES}
        if getattr(rule, "tensor_scheduler", False):
            out, shared = rule.schedule_tensors(
                shared, float(fixture["loss"][t]), NUM_STEPS,
                [(p[leaf][t], g[leaf][t], acc[leaf]) for leaf in LEAVES])
            contexts = {leaf: {"context": c} for leaf, c in zip(LEAVES, out)}
        elif shared is not None:
            context, shared = rule.schedule(shared, float(fixture["loss"][t]), NUM_STEPS)
            contexts = {leaf: {"context": context} for leaf in LEAVES}
        for leaf in LEAVES:
            update, acc[leaf] = rule.update(p[leaf][t], g[leaf][t], acc[leaf], t, NUM_STEPS,
                                            **contexts[leaf])
            want = fixture[f"u_{leaf}"][t]
            scale = float(np.max(np.abs(want)))
            if scale == 0:  # the schedule's first step (warm-up from 0): exactly zero too
                assert float(update.abs().max()) == 0.0, (leaf, t)
                continue
            error = float(np.max(np.abs(update.numpy() - want))) / scale
            worst = max(worst, error)
            assert error <= tolerance, (leaf, t, error)
    print(f"{name} ({dtype}): worst relative difference {worst:.2e}")
    return worst


def test_the_optimizer_moves_parameters_by_the_same_updates():
    """Through torch.optim: parameters set to the fixture's before every step, gradients
    given, ``step()``; the parameters move by the JAX updates (to one float32 addition: left
    to follow their own trajectory they drift by an ulp or two over 24 additions)."""
    fixture = np.load(os.path.join(HERE, "celo2_graft.npz"))
    params = {leaf: torch.nn.Parameter(_t(fixture[f"p_{leaf}"][0])) for leaf in LEAVES}
    opt = Optimizer(params.values(), "celo2_graft", num_steps=NUM_STEPS, layout="as_is")
    assert _follow(fixture, params, opt.step, len(fixture["loss"]), reset=True) <= 1.0


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
    assert _follow(fixture, params, opt.step, len(fixture["loss"]) - 1) <= 1.0


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
    assert _follow(fixture, params, chain.step, len(fixture["loss"]) - 1, reset=True,
                   roundings=2.4e-7) <= 1.0
