"""End to end: a torch MLP and a torch conv net (nn.Linear, nn.Conv2d) trained by
lopt.torch.Optimizer from the same weights on the same minibatches as a flax-layout JAX model
trained by the JAX rule (tests/fixtures/torch/make_curves.py) follow the same loss curve."""
import os

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="lopt.torch needs the torch extra: "
                                             "pip install -e '.[torch]'")
from sklearn.datasets import load_digits  # noqa: E402

from lopt.torch import Optimizer  # noqa: E402

pytestmark = pytest.mark.torch
HERE = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "fixtures", "torch")
RULES = {"celo2_graft": "celo2_graft", "celo2_random": os.path.join(HERE, "celo2_random.lopt"),
         "adafac_tiny": "adafac_tiny", "celo_released": "celo_released",
         "celo_tiny": "celo_tiny", "velo_trainable": os.path.join(HERE, "velo_trainable.lopt")}
# The largest |torch − JAX| over the 100 losses, relative to the loss: float32 differences
# between the two frameworks' kernels, carried through 100 steps of training. celo_released's
# conv curve parts in jumps (measured 1.4e-4; 6e-6 on the MLP) though every single update is
# equal to 1.3e-6 given the same inputs (test_equal_to_jax.py): the rule amplifies last-bit
# differences on that run, its own JAX curve as much (the last test here).
TOLERANCE = {"celo2_graft": 1e-4, "celo2_random": 1e-4, "adafac_tiny": 1e-4,
             "celo_released": 5e-4, "celo_tiny": 1e-4, "velo_trainable": 1e-4}


def _model(kind, f):
    t = lambda k: torch.from_numpy(np.array(f[f"init_{k}"]))
    if kind == "mlp":
        model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 32), torch.nn.ReLU(),
                                    torch.nn.Linear(32, 10))
        layers = {1: ("w1", "b1"), 3: ("w2", "b2")}
    else:
        model = torch.nn.Sequential(torch.nn.Unflatten(1, (1, 8)), torch.nn.Conv2d(1, 4, 3),
                                    torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.Linear(144, 10))
        layers = {1: ("k1", "c1"), 4: ("w2", "b2")}
    with torch.no_grad():
        for i, (w, b) in layers.items():
            kernel = t(w)
            # flax [in, out] / [h, w, in, out] -> torch [out, in] / [out, in, h, w]
            weight = kernel.T if kernel.ndim == 2 else kernel.permute(3, 2, 0, 1)
            model[i].weight.copy_(weight)
            model[i].bias.copy_(t(b))
    return model


def _curve(name, kind, layout="torch"):
    f = np.load(os.path.join(HERE, f"curve_{name}_{kind}.npz"))
    data = load_digits()
    images = torch.from_numpy((data.images / 16.0).astype(np.float32))
    labels = torch.from_numpy(data.target.astype(np.int64))
    model = _model(kind, f)
    steps = len(f["loss"])
    opt = Optimizer(model.parameters(), RULES[name], num_steps=steps, layout=layout)
    losses = []
    for b in f["batches"]:
        b = torch.from_numpy(b.astype(np.int64))
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(images[b]), labels[b])
        loss.backward()
        opt.step(loss=loss)  # read by celo_released's scheduler, ignored by the others
        losses.append(loss.item())
    return f["loss"], np.array(losses)


@pytest.mark.parametrize("kind", ["mlp", "conv"])
@pytest.mark.parametrize("name", sorted(RULES))
def test_the_loss_curve_is_the_jax_runs(name, kind):
    want, got = _curve(name, kind)
    error = np.max(np.abs(got - want) / want)
    print(f"{name} {kind}: loss {want[0]:.3f} -> {want[-1]:.3f}, worst relative "
          f"difference {error:.1e}")
    assert error <= TOLERANCE[name]


def test_without_the_layout_mapping_a_conv_net_trains_differently():
    """The rules normalize a kernel over its last two axes (channels in flax, the window in
    torch): shown the torch layout as is, the conv net leaves the JAX curve."""
    want, got = _curve("celo2_graft", "conv", layout="as_is")
    assert np.max(np.abs(got - want) / want) > 100 * TOLERANCE["celo2_graft"]


def test_celo_released_conv_curve_moves_as_much_under_a_last_bit_change_of_its_own_jax_run():
    """Why celo_released's conv bound is looser: its own JAX run, started from weights
    perturbed by 1e-7 of their size, leaves the unperturbed JAX curve by as much as the torch
    run does (the rule, not lopt.torch), while celo2_graft's stays at float32 rounding."""
    import sys

    import jax

    sys.path.insert(0, HERE)
    import make_curves

    plain = make_curves.init

    def nudged(model):
        return jax.tree.map(
            lambda x: x * (1 + 1e-7 * jax.random.normal(jax.random.PRNGKey(9), x.shape)),
            plain(model))

    def spread(name):
        base = make_curves.run(name, "conv")["loss"]
        make_curves.init = nudged
        try:
            moved = make_curves.run(name, "conv")["loss"]
        finally:
            make_curves.init = plain
        return np.max(np.abs(moved - base) / base)

    assert spread("celo_released") > 2e-5  # measured 1.4e-4, the torch gap's size
    assert spread("celo2_graft") < 1e-5  # measured 1.0e-6
