"""lopt's learned rules as a ``torch.optim.Optimizer``: the update the JAX rule computes for
each parameter tensor, times the group's ``lr`` (a multiplier, 1 by default, so
``torch.optim.lr_scheduler`` schedulers scale the rule's own step), with optional decoupled
weight decay."""
from __future__ import annotations

import math

import torch

from lopt.files.errors import UsageError
from lopt.torch.adafac import AdafacMLP
from lopt.torch.celo import Celo
from lopt.torch.celo2 import Celo2
from lopt.torch.celo_reference import CeloReference
from lopt.torch.names import RULE_NAMES
from lopt.torch.rule_file import load, tree_to
from lopt.torch.velo import Velo

# rule name (a .lopt header's) -> its torch implementation
RULES = {"celo2": Celo2, "celo2_base": Celo2, "adafac_mlp": AdafacMLP,
         "celo_reference": CeloReference, "celo": Celo, "velo": Velo}
assert tuple(RULES) == RULE_NAMES
_ACCUMULATORS = ("m", "v", "row", "col", "full", "h", "c")  # h, c: a per-tensor LSTM


LAYOUTS = ("torch", "as_is")


def to_rule_layout(x, layout: str):
    """A torch weight as the JAX rules see the same weight in flax: a Linear weight
    [out, in] as a Dense kernel [in, out], a ConvNd weight [out, in, *window] as a kernel
    [*window, in, out] (``layout="torch"``); vectors and scalars, and everything under
    ``"as_is"``, unchanged."""
    if layout == "as_is" or x.ndim < 2:
        return x
    return x.permute(*range(2, x.ndim), 1, 0)


def rule_view(x, layout: str):
    """``x`` as the rule computes on it: in its layout, and float64 as float32 (the rules
    compute in float32, as the JAX rules outside x64 mode; lower precisions they promote)."""
    x = to_rule_layout(x, layout)
    return x.float() if x.dtype == torch.float64 else x


def from_rule_layout(x, layout: str):
    """The inverse of ``to_rule_layout``."""
    if layout == "as_is" or x.ndim < 2:
        return x
    n = x.ndim
    return x.permute(n - 1, n - 2, *range(n - 2))


class Optimizer(torch.optim.Optimizer):
    """``Optimizer(params, rule, lr=1.0, weight_decay=0.0, num_steps=None, layout="torch")``.

    ``rule``: a shipped optimizer's name (``"celo2_graft_v2"``) or a ``.lopt`` file. Each step a
    parameter p with a gradient moves by ``lr`` × the rule's update (which already carries the
    rule's own step size, and for rules with a schedule inside, such as ``celo2_graft``, the
    schedule over ``num_steps``); with ``weight_decay`` w, p ← p·(1 − lr·w) first (decoupled,
    as AdamW). A parameter without a gradient is skipped and keeps its state. Parameters of any
    float dtype; the rule computes in float32 (float64 parameters too, as the JAX rules outside
    x64 mode) and keeps float32 state. The rule's state is per parameter (its step
    count too), so ``state_dict()`` / ``load_state_dict()`` resume bit-exactly.

    ``layout="torch"`` (the default) shows the rule every weight of two or more axes as flax
    lays the same weight out (``to_rule_layout``), because the rules normalize and factor over
    particular axes (a 4-D kernel's last two are its channels in JAX, its window in torch): a
    torch model then trains as the same flax model does. ``"as_is"`` shows tensors unchanged.

    ``finite_gradients``: gradients through ``torch.nan_to_num`` first (NaN → 0, ±inf → the
    largest finite float), as μLO feeds its rule; with ``mup_param_groups`` this is
    ``lopt.mup.mulo_chain``. ``step_scale`` replaces the rule's own step size (``celo2_chain``
    sets 1: the step is then ``lr`` × Celo2's direction).

    A rule that reads the training loss (``celo_released``, whose scheduler watches it) takes
    it each step as ``step(closure)`` (the closure's return) or ``step(loss=loss)``; its
    scheduler's state is the optimizer's (``state_dict()["shared"]``)."""

    def __init__(self, params, rule="celo2_graft_v2", lr: float = 1.0, weight_decay: float = 0.0,
                 num_steps=None, layout: str = "torch", finite_gradients: bool = False,
                 step_scale=None):
        name, config, theta = load(rule)
        if name not in RULES:
            raise UsageError(f"rule {name!r} has no PyTorch implementation in lopt.torch; "
                             f"these do: {', '.join(sorted(RULES))}")
        if not (isinstance(lr, (int, float)) and lr >= 0):
            raise UsageError(f"lr must be a number >= 0; got {lr!r}")
        if not (isinstance(weight_decay, (int, float)) and weight_decay >= 0):
            raise UsageError(f"weight_decay must be a number >= 0; got {weight_decay!r}")
        if layout not in LAYOUTS:
            raise UsageError(f"layout must be one of {', '.join(LAYOUTS)}; got {layout!r}")
        super().__init__(params, {"lr": lr, "weight_decay": weight_decay})
        self.layout = layout
        if step_scale is not None:  # Celo2's harness: the learning rate is the user's
            config = {**config, "step_scale": float(step_scale)}
        devices = {p.device for group in self.param_groups for p in group["params"]}
        if len(devices) > 1:
            names = ", ".join(sorted(map(str, devices)))
            raise UsageError(f"the parameters are on several devices ({names}); give each "
                             "device's parameters their own lopt.torch.Optimizer")
        # the rule's meta-parameters and constants live where the parameters are: every
        # tensor the rules make is made under this device
        self.device = devices.pop() if devices else torch.device("cpu")
        with torch.device(self.device):
            self.rule = RULES[name](tree_to(theta, self.device), config, name)
        if self.rule.wants_num_steps and not (isinstance(num_steps, int) and num_steps >= 1):
            raise UsageError(f"rule {rule!r} schedules its step over the run: give "
                             f"num_steps= (a positive integer); got {num_steps!r}")
        self.num_steps = num_steps
        self.finite_gradients = bool(finite_gradients)
        with torch.device(self.device):
            self.shared = self.rule.init_shared(num_steps) \
                if hasattr(self.rule, "init_shared") else None

    def _state_of(self, p) -> dict:
        state = self.state[p]
        if not state:
            state["step"] = 0
            state.update(self.rule.init(rule_view(p, self.layout)))
        return state

    @staticmethod
    def _accumulators(state: dict) -> dict:
        return {k: state[k] for k in _ACCUMULATORS if k in state}

    @torch.no_grad()
    def step(self, closure=None, loss=None):
        """One update of every parameter that has a gradient; returns ``closure()``'s loss
        when a closure is given (it is called with gradients enabled). A rule that reads the
        loss gets the closure's, or ``loss``."""
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        with torch.device(self.device):
            self._step(loss)
        return loss

    def _step(self, loss) -> None:
        todo = []
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                if p.grad.is_sparse:
                    raise UsageError("lopt.torch.Optimizer does not take sparse gradients")
                grad = torch.nan_to_num(p.grad) if self.finite_gradients else p.grad
                todo.append((group, p, rule_view(p, self.layout), rule_view(grad, self.layout),
                             self._state_of(p)))
        contexts = [None] * len(todo)
        if self.shared is not None:
            if loss is None:
                raise UsageError("this rule reads the training loss: call step(closure) with a "
                                 "closure returning it, or step(loss=loss)")
            value = float(loss.detach() if torch.is_tensor(loss) else loss)
            if not math.isfinite(value):
                raise UsageError(f"the loss given to step() is not finite ({value})")
            if getattr(self.rule, "tensor_scheduler", False):
                if todo:  # the scheduler reads every tensor this step updates
                    contexts, self.shared = self.rule.schedule_tensors(
                        self.shared, value, self.num_steps,
                        [(view, g, self._accumulators(state)) for _, _, view, g, state in todo])
            else:
                context, self.shared = self.rule.schedule(self.shared, value, self.num_steps)
                contexts = [context] * len(todo)
        for (group, p, view, grad, state), context in zip(todo, contexts):
            args = (view, grad, self._accumulators(state), state["step"], self.num_steps)
            update, acc = self.rule.update(*args) if context is None else \
                self.rule.update(*args, context=context)
            state.update(acc)
            state["step"] += 1
            if group["weight_decay"]:
                p.mul_(1 - group["lr"] * group["weight_decay"])
            p.add_(from_rule_layout(update, self.layout), alpha=group["lr"])

    def state_dict(self) -> dict:
        out = super().state_dict()
        if self.shared is not None:
            out["shared"] = dict(self.shared)
        return out

    def load_state_dict(self, state_dict: dict) -> None:
        state_dict = dict(state_dict)
        shared = state_dict.pop("shared", None)
        if (shared is None) != (self.shared is None):
            raise UsageError("this state_dict is from an optimizer of another rule")
        super().load_state_dict(state_dict)
        if shared is not None:
            self.shared = tree_to(dict(shared), self.device)


def mup_param_groups(model, base_model, hidden_lr_mult: float = 1.0) -> list:
    """μLO's per-tensor step multipliers (Thérien et al. 2026; ``lopt.mup.mup_lr_multipliers``)
    as param groups: ``model``'s weights whose two axes both differ from ``base_model``'s (a
    hidden layer) get ``lr`` = hidden_lr_mult / fan-in (a torch Linear weight is [out, in]),
    every other parameter 1. ``Optimizer(mup_param_groups(...), rule, finite_gradients=True)``
    is ``lopt.mup.mulo_chain``."""
    groups = []
    for (name, p), (base_name, base) in zip(model.named_parameters(),
                                            base_model.named_parameters()):
        if name != base_name or p.ndim != base.ndim:
            raise UsageError(f"base_model must have model's parameters at other widths; "
                             f"{name} {tuple(p.shape)} vs {base_name} {tuple(base.shape)}")
        hidden = p.ndim == 2 and all(a != b for a, b in zip(p.shape, base.shape))
        groups.append({"params": [p], "lr": hidden_lr_mult / p.shape[1] if hidden else 1.0})
    return groups


EMBEDDING_NAMES = ("embed", "embedding", "wte", "wpe", "tok_embeddings")


class Celo2Chain:
    """Celo2's harness in PyTorch (``lopt.celo2_chain``): the learned direction on weights of two
    or more axes, p ← p·(1 − lr·wd) − lr·s; ``torch.optim.AdamW`` at ``adamw_lr_multiplier`` × lr
    (β = (0.9, 0.95), ε = 1e-8, the same decoupled weight decay) on vectors, scalars and
    embedding tables (a parameter name containing one of ``embedding_names``). Built from a
    model's ``named_parameters()``; ``optimizers`` holds the two, for schedulers (give each its
    own) and state dicts."""

    def __init__(self, named_parameters, source="celo2_broad", lr: float = 1e-3,
                 weight_decay: float = 0.0, adamw_lr_multiplier: float = 20.0,
                 betas=(0.9, 0.95), eps: float = 1e-8, layout: str = "torch",
                 embedding_names=EMBEDDING_NAMES):
        learned, adamw = [], []
        for name, p in named_parameters:
            embedding = any(e in name.lower() for e in embedding_names)
            (adamw if p.ndim < 2 or embedding else learned).append(p)
        self.optimizers = []
        if learned:
            self.optimizers.append(Optimizer(learned, source, lr=lr, weight_decay=weight_decay,
                                             layout=layout, step_scale=1.0))
        if adamw:
            self.optimizers.append(torch.optim.AdamW(adamw, lr=adamw_lr_multiplier * lr,
                                                     betas=betas, eps=eps,
                                                     weight_decay=weight_decay))

    def zero_grad(self, set_to_none: bool = True) -> None:
        for opt in self.optimizers:
            opt.zero_grad(set_to_none=set_to_none)

    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for opt in self.optimizers:
            opt.step()
        return loss

    def state_dict(self) -> list:
        return [opt.state_dict() for opt in self.optimizers]

    def load_state_dict(self, states: list) -> None:
        for opt, state in zip(self.optimizers, states):
            opt.load_state_dict(state)
