"""Antithetic evolution strategies on truncations or full horizons, and PES."""
from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from lopt.outer.base import Estimator, option
from lopt.outer.common import (
    PerturbedOptions,
    antithetic_thetas,
    masked_mean,
    pair_halves,
    perturbations,
    run_metrics,
    scale_per_run,
)
from lopt.outer.unroll import InnerState, init_inner, truncated_unroll
from lopt.rules.base import UpdateRule
from lopt.tasks.base import TaskFamily


def antithetic_unroll(opts: PerturbedOptions, rule, family, theta, eps, pos, neg,
                      reset_nonfinite=True):
    """Unroll positive runs with θ + σε and negative runs with θ − σε, pairs reset together.
    Returns both new halves, the per-step terms of each half and the pairs' ok flags."""
    n = pos.step.shape[0]
    batch = jax.tree.map(lambda a, b: jnp.concatenate([a, b]), pos, neg)
    # Nothing differentiates these unrolls: no remat to choose.
    forward = dataclasses.replace(opts, remat="none")
    new, out = truncated_unroll(rule, family, antithetic_thetas(theta, eps, opts.sigma), batch,
                                forward, second_derivatives=True, paired=True,
                                reset_nonfinite=reset_nonfinite)
    terms = opts.step_terms(out)
    ok = out.finite[:, :n].all(axis=0) & out.finite[:, n:].all(axis=0)
    first = jax.tree.map(lambda x: x[:n], new)
    second = jax.tree.map(lambda x: x[n:], new)
    return first, second, terms[:, :n], terms[:, n:], out, ok


@dataclasses.dataclass(frozen=True)
class ES(PerturbedOptions):
    """Antithetic ES: g = (1/N) Σ_i ε_i (L(θ + σε_i) − L(θ − σε_i)) / (2σ), ε_i ~ N(0, I).

    An unbiased estimate of the gradient of the Gaussian-smoothed meta-loss E_ε[L(θ + σε)] (Metz et
    al. 2019) of one truncation. Both halves of a pair start from the same run state and the
    positive half's state is carried to the next truncation. ``full_horizon=True`` sets the
    truncation to the whole horizon and builds fresh runs from each run's key at the start of every
    estimate, so every estimate covers complete inner runs from initialization (no truncation bias),
    whatever happened to the runs before: a run that turns non-finite is left out of its estimate
    and cannot shift the phase of later ones.
    """

    full_horizon: bool = option(False, flag="every estimate over whole inner runs from "
                                            "initialization (truncation = horizon)")

    def __post_init__(self):
        super().__post_init__()
        if self.full_horizon:
            if self.max_horizon not in (None, self.horizon):
                raise ValueError("full_horizon needs a fixed horizon (max_horizon unset)")
            object.__setattr__(self, "unroll", dataclasses.replace(
                self.unroll, truncation=self.horizon, stagger=False))

    def build(self, rule: UpdateRule, family: TaskFamily, axis_name=None) -> Estimator:
        def init(key, theta):
            return self.init_runs(rule, family, theta, key)

        def grad(theta, runs: InnerState, key):
            del key
            if self.full_horizon:
                runs = jax.vmap(lambda k: init_inner(rule, family, theta, k, self.horizon_spec))(
                    runs.key)
            eps = perturbations(theta, runs.key)
            pos, _, t_pos, t_neg, out, ok = antithetic_unroll(
                self, rule, family, theta, eps, runs, runs,
                reset_nonfinite=not self.full_horizon)
            v_pos, v_neg = t_pos.sum(0), t_neg.sum(0)
            per_pair = scale_per_run(eps, (v_pos - v_neg) / (2 * self.sigma))
            meta_grad, _ = masked_mean(per_pair, ok, axis_name)
            metrics = run_metrics(pair_halves((v_pos + v_neg) / 2), out, pair_halves(ok), axis_name)
            return meta_grad, pos, metrics

        return Estimator(init=init, grad=grad, name="es")


class PESState(NamedTuple):
    """PES carries both halves of every pair and the perturbation accumulated along each run."""

    pos: Any
    neg: Any
    xi: Any


@dataclasses.dataclass(frozen=True)
class PES(PerturbedOptions):
    """Persistent ES (Vicol et al. 2021): g = (1/N) Σ_i ξ_i (L_i⁺ − L_i⁻) / (2σ), ξ_i = Σ ε.

    The positive and negative runs of a pair are carried separately across truncations, each with
    its own perturbation every truncation, and ξ_i accumulates those perturbations since the run
    started, so the sum of the estimates over a whole run is an unbiased estimate of the
    full-horizon smoothed gradient: the answer to the truncation bias of Metz et al. 2019. A run
    that ends inside a truncation is handled step by step: its remaining terms use only the new
    run's perturbation, and ξ restarts with the run.
    """

    def build(self, rule: UpdateRule, family: TaskFamily, axis_name=None) -> Estimator:
        def init(key, theta):
            runs = self.init_runs(rule, family, theta, key)
            xi = jax.tree.map(lambda t: jnp.zeros((self.num_runs,) + jnp.shape(t),
                                                  jnp.result_type(t)), theta)
            # Distinct buffers for the two halves: the train step donates its whole state.
            return PESState(runs, jax.tree.map(jnp.copy, runs), xi)

        def grad(theta, state: PESState, key):
            del key
            eps = perturbations(theta, state.pos.key)
            pos, neg, t_pos, t_neg, out, ok = antithetic_unroll(
                self, rule, family, theta, eps, state.pos, state.neg)
            n = t_pos.shape[1]
            k = t_pos.shape[0]
            delta = (t_pos - t_neg) / (2 * self.sigma)                   # [K, N]
            reset = out.reset[:, :n]
            earlier_reset = jnp.cumsum(reset, axis=0) - reset            # resets before step t
            same_run = earlier_reset == 0
            all_steps, same_run_steps = delta.sum(0), jnp.where(same_run, delta, 0).sum(0)
            per_pair = jax.tree.map(
                lambda e, x: (e * all_steps.reshape((-1,) + (1,) * (e.ndim - 1))
                              + x * same_run_steps.reshape((-1,) + (1,) * (x.ndim - 1))),
                eps, state.xi)
            meta_grad, _ = masked_mean(per_pair, ok, axis_name)

            any_reset = reset.any(axis=0)
            last_reset = (k - 1) - jnp.argmax(reset[::-1], axis=0)
            keep_old = ~any_reset
            keep_eps = any_reset & (last_reset < k - 1)

            def new_xi(e, x):
                shape = (-1,) + (1,) * (e.ndim - 1)
                return jnp.where(keep_old.reshape(shape), x + e,
                                 jnp.where(keep_eps.reshape(shape), e, jnp.zeros_like(e)))

            xi = jax.tree.map(new_xi, eps, state.xi)
            values = pair_halves((t_pos.sum(0) + t_neg.sum(0)) / 2)
            metrics = run_metrics(values, out, pair_halves(ok), axis_name)
            return meta_grad, PESState(pos, neg, xi), metrics

        return Estimator(init=init, grad=grad, name="pes")
