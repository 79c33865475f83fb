"""lopt.torch.Optimizer as a PyTorch citizen: it imports no JAX, param groups and schedulers
act through ``lr``, a closure's loss comes back, parameters without gradients are skipped,
state_dict round trips exactly, low-precision parameters keep float32 state, and what it
refuses is one line."""
import copy
import os
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="lopt.torch needs the torch extra: "
                                             "pip install -e '.[torch]'")

from lopt.files.errors import UsageError  # noqa: E402
from lopt.torch import Optimizer  # noqa: E402

pytestmark = pytest.mark.torch


def _model(seed=0):
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(6, 12), torch.nn.ReLU(), torch.nn.Linear(12, 3))


def _batch(t):
    g = torch.Generator().manual_seed(100 + t)
    return torch.randn(32, 6, generator=g), torch.randn(32, 3, generator=g)


def _train(model, opt, steps, start=0):
    losses = []
    for t in range(start, start + steps):
        x, y = _batch(t)
        opt.zero_grad()
        loss = ((model(x) - y) ** 2).mean()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


def test_importing_lopt_torch_imports_no_jax():
    code = ("import sys, torch, lopt.torch as lt; "
            "lt.Optimizer(torch.nn.Linear(3, 2).parameters(), 'celo2_graft', num_steps=5); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('jax', 'jaxlib', "
            "'flax', 'optax', 'orbax')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == "[]"


def test_state_dict_round_trip_continues_bit_exactly():
    a = _model()
    opt_a = Optimizer(a.parameters(), "celo2_graft", num_steps=20)
    _train(a, opt_a, 6)
    b = copy.deepcopy(a)
    opt_b = Optimizer(b.parameters(), "celo2_graft", num_steps=20)
    opt_b.load_state_dict(copy.deepcopy(opt_a.state_dict()))
    assert _train(a, opt_a, 4, start=6) == _train(b, opt_b, 4, start=6)
    for p, q in zip(a.parameters(), b.parameters()):
        assert torch.equal(p, q)


def test_lr_is_a_multiplier_that_groups_and_schedulers_set():
    """lr 0 freezes a group; a scheduler's factor multiplies the rule's own step."""
    model = _model()
    frozen = [p.detach().clone() for p in model[0].parameters()]
    opt = Optimizer([{"params": model[0].parameters(), "lr": 0.0},
                     {"params": model[2].parameters()}], "celo2_graft", num_steps=10)
    _train(model, opt, 3)
    assert all(torch.equal(p, q) for p, q in zip(model[0].parameters(), frozen))

    half, full = _model(), _model()
    opt_half = Optimizer(half.parameters(), "celo2_broad")
    opt_full = Optimizer(full.parameters(), "celo2_broad")
    sched = torch.optim.lr_scheduler.LambdaLR(opt_half, lambda step: 0.5)
    before = [p.detach().clone() for p in half.parameters()]
    x, y = _batch(0)
    for model, opt in ((half, opt_half), (full, opt_full)):
        opt.zero_grad()
        ((model(x) - y) ** 2).mean().backward()
        opt.step()
    sched.step()
    for p0, h, f in zip(before, half.parameters(), full.parameters()):
        # to float32 addition: the parameters are O(1), the steps O(1e-3)
        torch.testing.assert_close(h - p0, 0.5 * (f - p0), rtol=1e-5, atol=1e-7)


def test_closure_loss_is_returned_and_parameters_without_gradients_are_skipped():
    model = _model()
    extra = torch.nn.Parameter(torch.ones(4))
    opt = Optimizer(list(model.parameters()) + [extra], "celo2_graft", num_steps=5)
    x, y = _batch(0)

    def closure():
        opt.zero_grad()
        loss = ((model(x) - y) ** 2).mean()
        loss.backward()
        return loss

    loss = opt.step(closure)
    assert torch.is_tensor(loss) and loss.item() > 0
    assert torch.equal(extra, torch.ones(4)) and extra not in opt.state


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
@pytest.mark.parametrize("rule", ["celo2_graft", "adafac_tiny", "celo_tiny"])
def test_low_precision_parameters_keep_float32_state(dtype, rule):
    dtype = getattr(torch, dtype)
    model = _model().to(dtype)
    before = model[0].weight.detach().clone()
    opt = Optimizer(model.parameters(), rule, num_steps=10)
    x, y = _batch(0)
    for _ in range(2):  # celo2_graft's first step is 0 (its warm-up)
        opt.zero_grad()
        ((model(x.to(dtype)) - y.to(dtype)) ** 2).float().mean().backward()
        opt.step(loss=1.0)  # celo_tiny's scheduler reads it, the others ignore it
    state = opt.state[model[0].weight]
    assert state["m"].dtype == torch.float32 and model[0].weight.dtype == dtype
    assert torch.isfinite(model[0].weight.float()).all()
    assert not torch.equal(model[0].weight, before)


@pytest.mark.parametrize("rule", ["celo2_graft", "celo_tiny"])
def test_float64_parameters_train_as_float32_ones_do(rule):
    """The rules compute in float32: a float64 model moves as its float32 copy does, to float32
    roundings (it used to stop at a dtype mismatch in the first matmul)."""
    a = _model().double()
    b = _model()
    opt_a = Optimizer(a.parameters(), rule, num_steps=10)
    opt_b = Optimizer(b.parameters(), rule, num_steps=10)
    for t in range(3):
        x, y = _batch(t)
        for model, opt, dtype in ((a, opt_a, torch.float64), (b, opt_b, torch.float32)):
            opt.zero_grad()
            loss = ((model(x.to(dtype)) - y.to(dtype)) ** 2).mean()
            loss.backward()
            opt.step(loss=loss)
    assert a[0].weight.dtype == torch.float64 and opt_a.state[a[0].weight]["m"].dtype == \
        torch.float32
    for p, q in zip(a.parameters(), b.parameters()):
        np.testing.assert_allclose(p.detach().numpy(), q.detach().double().numpy(), atol=1e-6)


def test_velo_skips_a_parameter_without_gradient_in_its_pooling_and_keeps_its_state():
    """VeLO's scheduler pools over the tensors a step updates: a parameter whose gradient is
    None this step keeps its LSTM state and accumulators unchanged."""
    model = _model()
    opt = Optimizer(model.parameters(), VELO, num_steps=10)
    _train_with_loss(model, opt, 2)
    frozen = model[2].bias
    before = {k: v.clone() if torch.is_tensor(v) else v for k, v in opt.state[frozen].items()}
    h_weight = opt.state[model[0].weight]["h"].clone()
    x, y = _batch(5)
    opt.zero_grad()
    loss = ((model(x) - y) ** 2).mean()
    loss.backward()
    frozen.grad = None
    opt.step(loss=loss)
    after = opt.state[frozen]
    assert all(torch.equal(before[k], after[k]) if torch.is_tensor(before[k])
               else before[k] == after[k] for k in before)
    assert not torch.equal(opt.state[model[0].weight]["h"], h_weight)


@pytest.mark.parametrize("make,says", [
    (lambda p: Optimizer(p, "no_such_rule"), "rule must be a shipped optimizer"),
    (lambda p: Optimizer(p, "l2l_lstm_quadratic"), "has no PyTorch implementation"),
    (lambda p: Optimizer(p, "celo2_graft"), "give num_steps="),
    (lambda p: Optimizer(p, "celo2_broad", lr=-1.0), "lr must be"),
])
def test_what_it_refuses_is_one_line(make, says):
    with pytest.raises(UsageError, match=says) as err:
        make(_model().parameters())
    assert "\n" not in str(err.value)


def test_sparse_gradients_are_refused():
    emb = torch.nn.Embedding(10, 4, sparse=True)
    opt = Optimizer(emb.parameters(), "celo2_broad")
    emb(torch.tensor([1, 2])).sum().backward()
    with pytest.raises(UsageError, match="sparse"):
        opt.step()


def test_a_torch_compiled_training_step_trains_as_the_eager_one():
    """torch.compile of a whole step that calls the optimizer (recompiled per step: the rule
    reads the step count as a Python number, which the compiled step guards on)."""
    losses = {}
    for compiled in (False, True):
        model = _model()
        opt = Optimizer(model.parameters(), "celo2_graft", num_steps=10)

        def step(x, y, model=model, opt=opt):
            opt.zero_grad()
            loss = ((model(x) - y) ** 2).mean()
            loss.backward()
            opt.step()
            return loss

        run = torch.compile(step) if compiled else step
        losses[compiled] = [run(*_batch(t)).item() for t in range(3)]
    np.testing.assert_allclose(losses[True], losses[False], rtol=1e-5)


def _train_with_loss(model, opt, steps, start=0, closure=False):
    losses = []
    for t in range(start, start + steps):
        x, y = _batch(t)

        def compute(x=x, y=y):
            opt.zero_grad()
            loss = ((model(x) - y) ** 2).mean()
            loss.backward()
            return loss

        if closure:
            loss = opt.step(compute)
        else:
            loss = compute()
            opt.step(loss=loss)
        losses.append(loss.item())
    return losses


VELO = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "fixtures", "torch",
                    "velo_trainable.lopt")


@pytest.mark.parametrize("rule", ["celo_released", "celo_tiny", VELO])
def test_a_rule_that_reads_the_loss_takes_it_from_the_closure_or_loss_and_resumes_exactly(rule):
    """celo_released's, celo_tiny's and VeLO's schedulers read the training loss (the last
    two every tensor too): step(closure) and step(loss=...) train identically; without a loss,
    or with a non-finite one, step() refuses in one line; the scheduler's state (and each
    tensor's LSTM state) travels in state_dict() and the next updates are bit-equal after a
    reload into a fresh optimizer."""
    a, b = _model(), _model()
    opt_a = Optimizer(a.parameters(), rule, num_steps=20)
    opt_b = Optimizer(b.parameters(), rule, num_steps=20)
    assert _train_with_loss(a, opt_a, 5) == _train_with_loss(b, opt_b, 5, closure=True)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    with pytest.raises(UsageError, match="reads the training loss"):
        _train(a, opt_a, 1)
    with pytest.raises(UsageError, match="not finite"):
        opt_a.step(loss=float("nan"))
    c = copy.deepcopy(a)
    opt_c = Optimizer(c.parameters(), rule, num_steps=20)
    opt_c.load_state_dict(copy.deepcopy(opt_a.state_dict()))
    assert opt_c.state_dict()["shared"]["count"] == 5
    assert _train_with_loss(a, opt_a, 4, start=5) == _train_with_loss(c, opt_c, 4, start=5)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), c.parameters()))
    with pytest.raises(UsageError, match="another rule"):
        Optimizer(_model().parameters(), "celo2_broad").load_state_dict(opt_a.state_dict())


def _tensors(tree):
    if torch.is_tensor(tree):
        yield tree
    elif isinstance(tree, dict):
        for v in tree.values():
            yield from _tensors(v)
    elif isinstance(tree, (list, tuple)):
        for v in tree:
            yield from _tensors(v)


@pytest.mark.parametrize("rule", ["celo2_graft", "adafac_tiny", "celo_released", "celo_tiny",
                                  VELO])
def test_every_tensor_is_on_the_parameters_device(rule):
    """Device-agnostic: on PyTorch's "meta" device (shapes only; an elementwise op mixing it
    with a CPU tensor raises, as a CUDA one would) every rule steps a conv net, and its
    meta-parameters, constants, per-parameter and shared state are all on that device."""
    with torch.device("meta"):
        model = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.Flatten(),
                                    torch.nn.Linear(4 * 6 * 6, 3))
    opt = Optimizer(model.parameters(), rule, num_steps=10)
    for loss in (1.0, 0.5):
        for p in model.parameters():
            p.grad = torch.zeros_like(p)
        opt.step(loss=loss)
    made = list(_tensors(vars(opt.rule))) + list(_tensors(opt.shared or {})) + \
        [t for state in opt.state.values() for t in _tensors(dict(state))]
    assert made and {t.device.type for t in made} == {"meta"}


def test_parameters_on_two_devices_are_refused_in_one_line():
    params = [torch.nn.Parameter(torch.zeros(2, 2)),
              torch.nn.Parameter(torch.zeros(2, 2, device="meta"))]
    with pytest.raises(UsageError, match="several devices"):
        Optimizer(params, "celo2_graft", num_steps=5)
