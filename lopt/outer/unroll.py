"""Truncated inner unrolls: one ``lax.scan`` over K inner steps of a vmapped batch of inner runs.

Every run carries its own PRNG key, step counter and horizon, so a run's trajectory does not
depend on which other runs share its batch or device. A run that reaches its horizon (or whose
loss turns non-finite) is replaced in place by a fresh one. Each run may use its own
meta-parameters (a leading run axis on theta): that is how perturbed runs (ES, PES,
reparameterization) and per-run meta-gradients share this one machinery.
"""
from __future__ import annotations

import dataclasses
import warnings
from typing import Any, NamedTuple, Optional

import jax
import jax.numpy as jnp
import optax

from lopt.outer.base import FlatHeldOptions, held, option
from lopt.outer.scan import REMAT, scan_steps, segment_length  # noqa: F401 (API)
from lopt.rules.base import UpdateRule
from lopt.tasks.base import TaskFamily

OBJECTIVES = ("train", "valid")
# lopt 0.1 called the validation objective "eval"; it means "valid" until lopt 0.4 removes it.
OBJECTIVE_ALIASES = {"eval": "valid"}
WEIGHTINGS = ("mean", "last")


@dataclasses.dataclass(frozen=True)
class Horizon:
    """Inner-run length: ``length`` steps, or log-uniform in [length, max_length] per run."""

    length: int
    max_length: Optional[int] = None

    def __post_init__(self):
        if not isinstance(self.length, int) or self.length < 1:
            raise ValueError(f"horizon must be an integer in [1, 2**31); got {self.length!r}")
        if self.max_length is not None and (not isinstance(self.max_length, int)
                                            or self.max_length < self.length):
            raise ValueError(f"max_horizon must be an integer >= horizon ({self.length}), "
                             f"got {self.max_length!r}")

    def sample(self, key) -> jax.Array:
        if self.max_length is None or self.max_length == self.length:
            return jnp.asarray(self.length, jnp.int32)
        lo, hi = jnp.log(self.length), jnp.log(self.max_length + 1)
        h = jnp.floor(jnp.exp(jax.random.uniform(key, (), minval=lo, maxval=hi)))
        return jnp.clip(h, self.length, self.max_length).astype(jnp.int32)


def as_horizon(horizon) -> Horizon:
    """A Horizon from a Horizon or a plain number of steps."""
    return horizon if isinstance(horizon, Horizon) else Horizon(int(horizon))


class InnerState(NamedTuple):
    """One inner training run (batched along a leading run axis)."""

    cfg: Any
    params: Any
    rule_state: Any
    step: jax.Array
    horizon: jax.Array
    key: jax.Array
    task_state: Any = {}  # state the task carries between steps (batch norm statistics)


class StepOutput(NamedTuple):
    """Per inner step of each run.

    ``loss``: f(θ_t) on the step's minibatch; ``meta_loss``: the meta-objective at θ_{t+1}
    (training or validation loss); ``reset``: the run ended after this step (horizon reached or
    non-finite) and was replaced; ``finite``: both losses were finite.
    """

    loss: jax.Array
    meta_loss: jax.Array
    reset: jax.Array
    finite: jax.Array


def broadcast_runs(theta, num_runs: int):
    """theta with a leading run axis: the same meta-parameters for every run."""
    return jax.tree.map(lambda x: jnp.broadcast_to(x, (num_runs,) + jnp.shape(x)), theta)


def init_inner(rule: UpdateRule, family: TaskFamily, theta, key, horizon: Horizon) -> InnerState:
    """A fresh inner run: a sampled task instance, its initial parameters and the rule's state."""
    horizon = as_horizon(horizon)
    k_cfg, k_params, k_horizon, k_run = jax.random.split(key, 4)
    cfg = family.sample(k_cfg)
    task = family.build(cfg)
    params = task.init(k_params)
    # A key derived from k_params leaves every other random stream as it was.
    task_state = task.new_state(jax.random.fold_in(k_params, 1))
    length = horizon.sample(k_horizon)
    return InnerState(cfg, params, rule.start(theta, params, length), jnp.zeros((), jnp.int32),
                      length, k_run, task_state)


def init_inner_batch(rule: UpdateRule, family: TaskFamily, theta, key, num_runs: int,
                     horizon: Horizon, stagger: bool = True) -> InnerState:
    """``num_runs`` fresh inner runs. With ``stagger`` each run's step counter starts uniformly
    in [0, its horizon), so first runs are shorter and resets spread over truncations."""
    horizon = as_horizon(horizon)
    k_init, k_offset = jax.random.split(key)
    batch = jax.vmap(lambda k: init_inner(rule, family, theta, k, horizon))(
        jax.random.split(k_init, num_runs))
    if stagger:
        u = jax.random.uniform(k_offset, (num_runs,))
        batch = batch._replace(step=jnp.floor(u * batch.horizon).astype(jnp.int32))
    return batch


def canonical_objective(objective: str) -> str:
    """``objective`` checked against OBJECTIVES, with the deprecated name "eval" as "valid"."""
    if objective in OBJECTIVE_ALIASES:
        warnings.warn(f"objective {objective!r} is now called "
                      f"{OBJECTIVE_ALIASES[objective]!r}; the old name is removed in lopt 0.4",
                      DeprecationWarning, stacklevel=3)
        return OBJECTIVE_ALIASES[objective]
    if objective not in OBJECTIVES:
        raise ValueError(f"objective must be one of {', '.join(OBJECTIVES)}; got {objective!r}")
    return objective


# Options renamed since lopt 0.2, old name -> (new name, the release that removes the old one).
RENAMED = {"num_tasks": ("num_runs", "0.4")}


class _TakesOldNames(type):
    """Metaclass letting ``UnrollOptions(num_tasks=...)`` (lopt ≤ 0.2) mean ``num_runs``, with
    a DeprecationWarning naming the removal."""

    def __call__(cls, *args, **kwargs):
        return super().__call__(*args, **renamed_options(kwargs))


def renamed_options(kwargs: dict) -> dict:
    """``kwargs`` with every old option name of ``RENAMED`` replaced by its new one (a
    DeprecationWarning each; the old name's value wins, as ``dataclasses.replace`` passes it
    beside the current value)."""
    out = dict(kwargs)
    for old, (new, removal) in RENAMED.items():
        if old in out:
            warnings.warn(f"{old} is now called {new}; the old name is removed in lopt "
                          f"{removal}", DeprecationWarning, stacklevel=3)
            out[new] = out.pop(old)
    return out


@dataclasses.dataclass(frozen=True)
class UnrollOptions(metaclass=_TakesOldNames):
    """Options of the truncated inner runs behind every estimator.

    ``num_runs`` inner runs (antithetic pairs for the perturbation-based estimators) of
    ``horizon`` steps (log-uniform in [horizon, max_horizon] per run when ``max_horizon`` is
    set), advanced ``truncation`` steps per meta-gradient, staggered at the start. The meta-loss
    of a run is Σ_t w_t ℓ_t over the truncation, where ℓ_t is the training (``objective="train"``)
    or validation (``"valid"``) loss at θ_{t+1}, clipped at ``loss_clip`` when given, and w_t = 1/K
    (``weighting="mean"``) or all weight on the last step (``"last"``). ``remat`` is what
    backpropagation through the unroll stores (``lopt.outer.scan.scan_steps``): the default
    ``"auto"`` stores everything while that is small and keeps memory near-flat in the
    truncation when it is not (benchmarks/perf); it changes no value.
    """

    num_runs: int = option(32, flag="inner runs per meta-gradient (for ES, PES and reparam: "
                                    "antithetic pairs, two runs each; a run samples a new task "
                                    "instance each time it restarts)")
    truncation: int = option(20, flag="inner steps per meta-gradient (the unroll length K)")
    horizon: int = option(100, flag="inner steps of a run before it restarts")
    max_horizon: Optional[int] = option(None, type=int, flag="when set, each run's horizon is "
                                        "log-uniform in [horizon, max_horizon]")
    stagger: bool = True
    objective: str = option("train", flag="the meta-loss: the training or validation loss")
    weighting: str = option("mean", flag="mean over the truncation's steps, or the last step")
    loss_clip: Optional[float] = option(None, type=float, flag="clip each step's loss here")
    remat: str = option("auto", flag="what backprop through an unroll stores: auto, none, step "
                                     "or nested")

    def __post_init__(self):
        for field in ("num_runs", "truncation", "horizon"):
            value = getattr(self, field)
            # Step counters are int32 on the device.
            if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value < 2**31:
                raise ValueError(f"{field} must be an integer in [1, 2**31); got {value!r}")
        Horizon(self.horizon, self.max_horizon)
        if self.weighting not in WEIGHTINGS:
            raise ValueError(f"weighting must be one of {', '.join(WEIGHTINGS)}; got "
                             f"{self.weighting!r}")
        object.__setattr__(self, "objective", canonical_objective(self.objective))
        if self.remat not in REMAT:
            raise ValueError(f"remat must be one of {', '.join(REMAT)}; got {self.remat!r}")
        # Beyond 1e30 the clip overflows float32; below 1e-6 it is no loss at all.
        if self.loss_clip is not None and not 1e-6 <= self.loss_clip <= 1e30:
            raise ValueError(f"loss_clip must be a number in [1e-06, 1e+30]; got "
                             f"{self.loss_clip!r}")

    @property
    def num_tasks(self) -> int:
        """``num_runs`` by its lopt 0.2 name (removed in 0.4)."""
        warnings.warn("num_tasks is now called num_runs; the old name is removed in lopt 0.4",
                      DeprecationWarning, stacklevel=2)
        return self.num_runs

    @property
    def horizon_spec(self) -> Horizon:
        return Horizon(self.horizon, self.max_horizon)

    def init_runs(self, rule, family, theta, key, stagger=None):
        return init_inner_batch(rule, family, theta, key, self.num_runs, self.horizon_spec,
                                self.stagger if stagger is None else stagger)

    def step_terms(self, out) -> jax.Array:
        """w_t ℓ_t for every step and run, [K, runs]; non-finite steps contribute 0."""
        k = out.meta_loss.shape[0]
        if self.weighting == "mean":
            w = jnp.full((k,), 1.0 / k)
        else:
            w = jnp.zeros((k,)).at[-1].set(1.0)
        ell = out.meta_loss
        if self.loss_clip is not None:
            ell = jnp.minimum(ell, self.loss_clip)
        return jnp.where(out.finite, ell, 0.0) * w[:, None].astype(ell.dtype)


UnrollOptions.RENAMED = RENAMED  # the old names it takes (FlatHeldOptions reads them)


@dataclasses.dataclass(frozen=True)
class WithUnroll(metaclass=FlatHeldOptions):
    """Base of every estimator config: it holds its ``UnrollOptions`` (``unroll``), whose
    flags it offers as its own (``lopt.outer.base.options_of``), which may be given flat
    (``TBPTT(num_runs=8, truncation=5)``) and read flat (``est.num_runs``,
    ``est.init_runs(...)``): the held object answers, so one place validates them."""

    unroll: UnrollOptions = held(UnrollOptions)

    def __post_init__(self):
        """Nothing to check here (``UnrollOptions`` checked itself); present so that every
        estimator's ``__post_init__`` can call its parent's."""

    def __getattr__(self, name):
        # Only reached for names the estimator itself lacks; "unroll" missing means the
        # object is still being built (copy, pickle), where forwarding would recurse.
        if name == "unroll" or name.startswith("__"):
            raise AttributeError(name)
        return getattr(self.unroll, name)


def inner_step(rule: UpdateRule, family: TaskFamily, theta, inst: InnerState, *,
               second_derivatives: bool = True, objective: str = "train",
               reset_nonfinite: bool = True):
    """One inner step θ_{t+1} = θ_t + U(∇f(θ_t)) of one run. Returns the advanced run, its
    StepOutput and the key a replacement run would be built from.

    A run whose loss turns non-finite ends (``reset``) unless ``reset_nonfinite`` is off:
    evaluation keeps a diverged run diverged instead of scoring a fresh instance.

    Without ``second_derivatives`` the gradient and loss fed to the rule are constants to the
    meta-gradient (∂∇_t/∂φ = 0, Andrychowicz et al. 2016's dropped dashed edges).
    """
    key, k_train, k_meta, k_reset = jax.random.split(inst.key, 4)
    task = family.build(inst.cfg)
    (loss, task_state), grads = jax.value_and_grad(task.train_loss, has_aux=True)(
        inst.params, inst.task_state, k_train)
    rule_loss = loss
    if rule.wants_valid_loss and task.has_validation:
        # A key derived from k_meta leaves every other random stream as it was.
        rule_loss = {"train": loss, "valid": task.validation_loss(
            inst.params, inst.task_state, jax.random.fold_in(k_meta, 1))}
    if not second_derivatives:
        grads = jax.lax.stop_gradient(grads)
        rule_loss = jax.lax.stop_gradient(rule_loss)
    updates, rule_state = rule.update(theta, inst.rule_state, grads, inst.params, rule_loss)
    params = optax.apply_updates(inst.params, updates)
    probe = params if rule.eval_params is None else rule.eval_params(rule_state, params)
    if canonical_objective(objective) == "valid":
        meta_loss = task.validation_loss(probe, task_state, k_meta)
    else:
        # The post-update loss is a probe: it must not advance the task state a second time.
        meta_loss, _ = task.train_loss(probe, task_state, k_meta)
    meta_loss = task.meta_view(meta_loss)
    finite = jnp.isfinite(loss) & jnp.isfinite(meta_loss)
    step = inst.step + 1
    done = (step >= inst.horizon) | (~finite if reset_nonfinite else False)
    new = InnerState(inst.cfg, params, rule_state, step, inst.horizon, key, task_state)
    return new, StepOutput(loss, meta_loss, done, finite), k_reset


def reset_finished(rule: UpdateRule, family: TaskFamily, thetas, batch: InnerState, done,
                   keys, horizon: Horizon) -> InnerState:
    """Replace the runs flagged in ``done`` by fresh ones built from their ``keys``; the
    fresh runs are only built (one ``lax.cond`` for the batch) when some run is done."""
    num_runs = done.shape[0]

    def reset(batch):
        fresh = jax.vmap(lambda th, k: init_inner(rule, family, th, k, horizon))(thetas, keys)

        def pick(f, a):
            return jnp.where(done.reshape((num_runs,) + (1,) * (a.ndim - 1)), f, a)

        return jax.tree.map(pick, fresh, batch)

    return jax.lax.cond(done.any(), reset, lambda b: b, batch)


def truncated_unroll(rule: UpdateRule, family: TaskFamily, thetas, batch: InnerState,
                     opts: UnrollOptions, *, second_derivatives: bool = True,
                     paired: bool = False, reset_nonfinite: bool = True):
    """Advance every run of ``batch`` by ``opts.truncation`` inner steps in one ``lax.scan``.

    ``thetas`` has a leading run axis (``broadcast_runs`` for shared meta-parameters). From
    ``opts``: the horizon a finished run is restarted with, the ``objective`` whose loss the
    StepOutput's ``meta_loss`` holds, and ``remat``, what reverse mode keeps of the unroll (see
    ``scan_steps``). With ``paired`` the batch is [positive runs; negative runs] of antithetic
    pairs that share keys: a pair is reset together whenever either half ends, so its halves
    stay on the same instance. ``reset_nonfinite=False`` lets a non-finite run go on
    (evaluation; see ``inner_step``). Returns the new batch and a StepOutput whose fields have
    shape [truncation, num_runs].
    """
    horizon, objective = opts.horizon_spec, opts.objective

    def one_step(theta, inst):
        return inner_step(rule, family, theta, inst, second_derivatives=second_derivatives,
                          objective=objective, reset_nonfinite=reset_nonfinite)

    step_runs = jax.vmap(one_step)
    if family.sequential_runs and jax.default_backend() == "cpu":
        step_runs = lambda th, runs: jax.lax.map(lambda a: one_step(*a), (th, runs))  # noqa: E731

    def body(carry, _):
        carry, out, reset_keys = step_runs(thetas, carry)
        done = out.reset
        if paired:
            half = done.shape[0] // 2
            either = done[:half] | done[half:]
            done = jnp.concatenate([either, either])
            out = out._replace(reset=done)
        carry = reset_finished(rule, family, thetas, carry, done, reset_keys, horizon)
        return carry, out

    return scan_steps(body, batch, opts.truncation, opts.remat)
