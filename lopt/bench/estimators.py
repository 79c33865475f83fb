"""Estimator benchmark: meta-gradient variance against number of samples, and throughput.

The fixed problem is Andrychowicz et al. 2016's: the L2L LSTM (at the shipped, meta-trained theta)
on random 10×10 quadratics, truncations of 20 steps in runs of 100. For every estimator:

* variance: the total variance (summed over theta's coordinates) of the meta-gradient estimate
  with n samples (inner runs, or antithetic pairs), measured over independent repeats after a
  warm-up of a few truncations. For TBPTT, ES, PES and the reparameterization gradient the
  estimate with n samples is the mean of n independent one-sample estimates, so all n are
  measured from one set of single-sample estimates grouped n at a time. The mixed estimator
  weighs by variances estimated within its batch, so it is run at every n separately, with
  cross-fitted weights (``mixed``) and with same-sample weights (``mixed_same``).
* bias and mean squared error against the exact smoothed gradient, on the problem of
  ``lopt.outer.smoothed_exact`` (Gauss–Hermite quadrature), at two σ.
* throughput: inner steps per second of one whole outer step (estimate + meta-update),
  counting runs × truncation (×2 for antithetic pairs), and its ratio to merely unrolling the
  same runs for the same steps with no meta-gradient, timed in the same process.
"""
from __future__ import annotations

import dataclasses
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from matplotlib.figure import Figure

from lopt.bench.suite import Suite
from lopt.files.rule_file import load
from lopt.outer import ES, PES, TBPTT, Mixed, Reparam
from lopt.outer import smoothed_exact as exact
from lopt.outer.train import TrainState, make_outer_step
from lopt.outer.unroll import broadcast_runs, truncated_unroll
from lopt.pretrained import path as pretrained_path
from lopt.tasks import quadratic_family

TRUNCATION, HORIZON, SIGMA = 20, 100, 0.01
SAMPLE_COUNTS = (1, 2, 4, 8, 16, 32)


def estimators(num_tasks):
    common = dict(num_runs=num_tasks, truncation=TRUNCATION, horizon=HORIZON)
    return {
        "tbptt": TBPTT(**common, second_derivatives=False),
        "es": ES(**common, sigma=SIGMA),
        "pes": PES(**common, sigma=SIGMA),
        "reparam": Reparam(**common, sigma=SIGMA),
        "mixed": Mixed(**common, sigma=SIGMA),
        "mixed_same": Mixed(**common, sigma=SIGMA, cross_fit=False),
    }


def _flat(tree):
    return jnp.concatenate([jnp.ravel(x) for x in jax.tree.leaves(tree)])


def _estimates(estimator, rule, family, theta, groups, warmup, seed):
    """One flattened estimate per group of ``estimator.num_runs`` samples, after ``warmup``."""
    est = estimator.build(rule, family)

    @jax.jit
    def run(keys):
        def one(key):
            state = est.init(key, theta)
            for _ in range(warmup):
                _, state, _ = est.grad(theta, state, None)
            g, _, _ = est.grad(theta, state, None)
            return _flat(g)
        return jax.vmap(one)(keys)

    keys = jax.random.split(jax.random.PRNGKey(seed), groups)
    return np.asarray(run(keys), np.float64)


def total_variance(samples):
    return float(samples.var(axis=0, ddof=1).sum())


def measure_variance(rule, family, theta, repeats, warmup, counts=SAMPLE_COUNTS, seed=0):
    rows = {}
    for name, single in estimators(1).items():
        if name.startswith("mixed"):
            continue
        samples = _estimates(single, rule, family, theta, repeats * max(counts), warmup, seed)
        rows[name] = {}
        for n in counts:
            means = samples[: repeats * n].reshape(repeats, n, -1).mean(axis=1)
            rows[name][n] = total_variance(means)
        rows[name]["mean_norm"] = float(np.linalg.norm(samples.mean(axis=0)))
    for name in ("mixed", "mixed_same"):
        rows[name] = {}
        for n in counts:
            if n < 2:
                continue
            samples = _estimates(estimators(n)[name], rule, family, theta, repeats, warmup, seed)
            rows[name][n] = total_variance(samples)
    return rows


BIAS_SIGMAS, BIAS_PAIRS, BIAS_CALLS = (0.05, 0.1), 8, 1000


def measure_bias(calls: int = BIAS_CALLS):
    """Bias and MSE of ES, reparameterization and both mixes against the exact smoothed
    gradient of ``lopt.outer.smoothed_exact``, from ``BIAS_CALLS`` estimates of
    ``BIAS_PAIRS`` pairs each (float64)."""
    rows = {}
    with jax.enable_x64(True):
        for sigma in BIAS_SIGMAS:
            target = exact.smoothed_gradient(sigma)
            kw = dict(num_runs=BIAS_PAIRS, truncation=exact.H, horizon=exact.H, stagger=False,
                      sigma=sigma)
            for name, est in (("es", ES(**kw)), ("reparam", Reparam(**kw)),
                              ("mixed", Mixed(**kw)),
                              ("mixed_same", Mixed(**kw, cross_fit=False))):
                stats = exact.bias_and_mse(exact.estimates(est, calls), target)
                rows[f"{name} σ={sigma}"] = dict(stats, sigma=sigma, estimator=name)
    return rows


def _time(fn, args, calls):
    out = fn(*args)
    jax.block_until_ready(out)
    start = time.perf_counter()
    for _ in range(calls):
        out = fn(*args)
    jax.block_until_ready(out)
    return (time.perf_counter() - start) / calls


def measure_throughput(rule, family, theta, num_tasks, calls):
    rows = {}
    meta_opt = optax.adam(1e-3)
    for name, estimator in estimators(num_tasks).items():
        if name == "mixed_same":
            continue  # the same computation as mixed
        est = estimator.build(rule, family)
        state = TrainState(theta, meta_opt.init(theta), est.init(jax.random.PRNGKey(0), theta),
                           jax.random.PRNGKey(1), jnp.zeros((), jnp.int32))
        outer = jax.jit(make_outer_step(est, meta_opt))
        seconds = _time(lambda s: outer(s)[1]["meta_loss"], (state,), calls)  # noqa: B023
        runs = num_tasks * (1 if name == "tbptt" else 2)
        inner_steps = runs * TRUNCATION

        batch = estimator.init_runs(rule, family, theta, jax.random.PRNGKey(0))
        batch = jax.tree.map(lambda x: jnp.concatenate([x] * (runs // num_tasks)), batch)  # noqa: B023
        unroll = dataclasses.replace(estimator, remat="none")  # a forward unroll: nothing to remat
        plain = jax.jit(lambda b: truncated_unroll(
            rule, family, broadcast_runs(theta, runs), b, unroll)[1].meta_loss)  # noqa: B023
        plain_seconds = _time(plain, (batch,), calls)
        rows[name] = {"runs": runs, "inner_steps_per_outer_step": inner_steps,
                      "seconds_per_outer_step": seconds,
                      "inner_steps_per_second": inner_steps / seconds,
                      "unroll_only_inner_steps_per_second": inner_steps / plain_seconds,
                      "ratio_to_unroll_only": plain_seconds / seconds}
    return rows


@dataclasses.dataclass(frozen=True)
class Size:
    repeats: int = 32  # independent repeats per variance point
    warmup: int = 3  # truncations before an estimate is taken
    counts: tuple = SAMPLE_COUNTS
    throughput_tasks: int = 32
    calls: int = 10  # timed calls per throughput point
    bias_calls: int = BIAS_CALLS


SIZES = {"full": Size(), "quick": Size(repeats=4, warmup=1, counts=(1, 2, 4),
                                       throughput_tasks=4, calls=2, bias_calls=50),
         "tiny": Size(repeats=2, warmup=0, counts=(1,), throughput_tasks=2, calls=1,
                      bias_calls=10)}


def run(out: str, quick: bool = False, command: str = "lopt bench estimators",
        progress: bool = True) -> str:
    sz = SIZES["quick" if quick else "full"]
    suite = Suite("estimators", out, sz, command, 3, progress)
    rule, theta = load(pretrained_path("l2l_lstm_quadratic"))
    family = quadratic_family()
    variance = suite.cached("variance", lambda: _str_keys(measure_variance(
        rule, family, theta, sz.repeats, sz.warmup, sz.counts)))
    bias = suite.cached("bias", lambda: measure_bias(sz.bias_calls))
    throughput = suite.cached("throughput", lambda: measure_throughput(
        rule, family, theta, sz.throughput_tasks, sz.calls))
    suite.payload.update(variance=variance, bias=bias, throughput=throughput)
    _variance_section(suite, variance)
    _bias_section(suite, bias, sz)
    _throughput_section(suite, throughput)
    return suite.finish("Estimator benchmark",
                        f"The L2L LSTM at the shipped theta (`l2l_lstm_quadratic`) on "
                        f"{family.name}, "
                        f"truncations of {TRUNCATION} steps in runs of {HORIZON}, σ = {SIGMA}, "
                        f"{sz.repeats} repeats per variance point after {sz.warmup} warm-up "
                        f"truncations, {sz.throughput_tasks} runs and {sz.calls} timed calls per "
                        "throughput point.")


def _str_keys(rows: dict) -> dict:
    """Sample counts as JSON keys (strings), as the cache stores them."""
    return {name: {str(k): v for k, v in row.items()} for name, row in rows.items()}


def _variance_section(suite, variance) -> None:
    counts = sorted({int(n) for row in variance.values() for n in row if n.isdigit()})
    lines = ["| estimator | " + " | ".join(f"n={n}" for n in counts) + " |",
             "|---|" + "---|" * len(counts)]
    for name, row in variance.items():
        cells = [f"{row[str(n)]:.3g}" if str(n) in row else "–" for n in counts]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += ["", "`mixed` weighs each half of the pairs by variances estimated on the other half; "
              "`mixed_same` by variances estimated on the samples it weighs."]
    suite.section("Total variance of the meta-gradient against samples per estimate",
                  "\n".join(lines))
    fig = Figure(figsize=(6.4, 4.2), dpi=120)
    ax = fig.subplots()
    for name, row in variance.items():
        ns = sorted(int(k) for k in row if k.isdigit())
        ax.plot(ns, [row[str(n)] for n in ns], marker="o", label=name)
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("samples per estimate (inner runs or antithetic pairs)")
    ax.set_ylabel("total variance of the meta-gradient")
    ax.set_title("L2L LSTM on 10x10 quadratics, truncation 20, horizon 100")
    ax.grid(alpha=0.3, which="both")
    ax.legend()
    fig.tight_layout()
    fig.savefig(suite.figure("variance.png"))


def _bias_section(suite, bias, sz) -> None:
    lines = ["| estimator | σ | bias (lr, mom) in SE | MSE | MSE / better of ES, reparam |",
             "|---|---|---|---|---|"]
    for row in bias.values():
        parts = [bias[f"{n} σ={row['sigma']}"]["mse"] for n in ("es", "reparam")]
        b = ", ".join(f"{x:+.2f}" for x in row["bias_in_se"])
        lines.append(f"| {row['estimator']} | {row['sigma']} | {b} | {row['mse']:.4g} | "
                     f"{row['mse'] / min(parts):.3f} |")
    suite.section("Bias and mean squared error against the exact smoothed gradient",
                  "`lopt.outer.smoothed_exact`: momentum SGD's (lr, momentum) on a 2-D "
                  f"quadratic, 8 steps; {sz.bias_calls} estimates of {BIAS_PAIRS} antithetic "
                  "pairs each, against E_ε[∇L(θ + σε)] from Gauss–Hermite quadrature. Bias in "
                  "standard errors of the mean of the estimates; MSE summed over both "
                  "coordinates.\n\n" + "\n".join(lines))


def _throughput_section(suite, throughput) -> None:
    lines = ["| estimator | runs | inner steps / s | unroll only, inner steps / s | ratio |",
             "|---|---|---|---|---|"]
    for name, row in throughput.items():
        lines.append(f"| {name} | {row['runs']} | {row['inner_steps_per_second']:.0f} | "
                     f"{row['unroll_only_inner_steps_per_second']:.0f} | "
                     f"{row['ratio_to_unroll_only']:.2f} |")
    suite.section("Meta-training throughput (one outer step: estimate + meta-update)",
                  "\n".join(lines))
