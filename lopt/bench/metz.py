"""``lopt bench metz``: Metz et al. 2019 — the variance of ES and reparameterization
meta-gradients as curvature and unroll length grow, the bias of truncated backprop against PES
as a function of truncation length, meta-training on the training vs the validation objective,
and meta-test loss against the number of meta-training tasks.

The first two use the momentum-SGD problem of ``lopt.outer.smoothed_exact`` (θ = learning rate,
momentum on a 2-D quadratic), where the exact gradient and its Gaussian smoothing are known, so
variance and bias are measured, not estimated against another estimator.
"""
from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
from matplotlib.figure import Figure

from lopt.bench.suite import Suite, protocol_line
from lopt.evaluation import evaluate_rule, tables
from lopt.evaluation.protocol import EVAL_SEED
from lopt.evaluation.tables import format_loss
from lopt.outer import ES, PES, TBPTT, Reparam
from lopt.outer import smoothed_exact as exact
from lopt.rules import adam, l2l_lstm, per_parameter_mlp
from lopt.tasks import Task, fixed_family, make_family, pooled_family
from lopt.tasks.mlp import mlp_family


@dataclasses.dataclass(frozen=True)
class Size:
    curvatures: tuple
    lengths: tuple
    repeats: int
    truncations: tuple
    bias_calls: int
    meta_steps: int
    meta_tasks: int
    eval_tasks: int
    tune_tasks: int
    overfit_steps: int
    pools: tuple  # numbers of meta-training tasks; 0 means a fresh task every run


SIZES = {
    "tiny": Size((1.0,), (4,), 8, (1, 8), 16, 2, 2, 2, 2, 5, (1,)),
    "quick": Size((1.0, 4.0), (4, 16), 64, (1, 2, 8), 400, 15, 8, 8, 4, 100, (1, 0)),
    "full": Size((0.5, 1.0, 2.0, 4.0), (4, 8, 16, 32, 64), 128, (1, 2, 4, 8), 4000, 60, 32, 32,
                 16, 200, (1, 4, 16, 0)),
}
SIGMA = 0.05


def run(out: str, quick: bool = False, command: str = "lopt bench metz",
        progress: bool = True) -> str:
    sz = SIZES["quick" if quick else "full"]
    stages = 2 + 2 + 1 + 2 * len(sz.pools) + 1
    suite = Suite("metz", out, sz, command, stages, progress)
    variance = suite.cached("variance", lambda: _variance(sz))
    _variance_report(suite, variance, sz)
    bias = suite.cached("bias", lambda: _bias(sz))
    _bias_report(suite, bias, sz)
    _objectives(suite, sz)
    _more_tasks(suite, sz)
    suite.payload.update({"variance": variance, "bias": bias, "sigma": SIGMA})
    return suite.finish("Metz et al.: estimator variance, truncation bias, objectives, task count "
                        "(Metz et al. 2019)",
                        "Metz et al. 2019: reparameterization gradients explode with curvature and "
                        "unroll length while ES stays bounded; truncated backprop is biased "
                        "towards short horizons, PES is not; meta-training on the validation "
                        "objective avoids overfitting the inner problem; more meta-training "
                        "tasks generalize better.")


def _quadratic(curvature: float):
    w = jnp.asarray(np.sqrt(curvature) * exact.W)
    y = jnp.asarray(np.sqrt(curvature) * exact.Y)
    task = Task(init=lambda key: {"x": jnp.zeros(2)},
                loss=lambda p, key: jnp.sum((w @ p["x"] - y) ** 2))
    return fixed_family(task, f"quadratic2d_x{curvature:g}")


def _variance(sz) -> dict:
    """Total variance of one-pair ES and reparameterization estimates over ``repeats`` draws, on
    the quadratic scaled to each curvature, unrolled for each length (float64)."""

    rows = {}
    with jax.enable_x64(True):
        rule = exact.momentum_rule()
        theta = rule.init_meta(None)
        for kappa in sz.curvatures:
            family = _quadratic(kappa)
            for length in sz.lengths:
                kw = dict(num_tasks=2, truncation=length, horizon=length, stagger=False,
                          sigma=SIGMA)
                for name, est in (("es", ES(**kw)), ("reparam", Reparam(**kw))):
                    built = est.build(rule, family)

                    def one(key, built=built):
                        g, _, _ = built.grad(theta, built.init(key, theta), None)
                        return jnp.stack([g["lr"], g["mom"]])

                    keys = jax.random.split(jax.random.PRNGKey(0), sz.repeats)
                    samples = np.asarray(jax.jit(jax.vmap(one))(keys), np.float64)
                    finite = np.isfinite(samples).all(axis=1)
                    var = float(samples[finite].var(axis=0, ddof=1).sum()) \
                        if finite.sum() > 1 else None
                    rows[f"{name} κ={kappa:g} T={length}"] = {
                        "estimator": name, "curvature": kappa, "length": length,
                        "total_variance": var, "nonfinite": int((~finite).sum())}
    return rows


def _variance_report(suite, rows, sz) -> None:

    lines = ["| curvature × | unroll T | ES variance | reparam variance | reparam / ES |",
             "|---|---|---|---|---|"]
    fig = Figure(figsize=(6.4, 4.2), dpi=110)
    ax = fig.subplots()
    for kappa in sz.curvatures:
        for name, style in (("es", "--"), ("reparam", "-")):
            ys = [rows[f"{name} κ={kappa:g} T={t}"]["total_variance"] for t in sz.lengths]
            ax.plot(sz.lengths, [np.nan if y is None else y for y in ys], style, marker="o",
                    label=f"{name}, curvature ×{kappa:g}")
        for t in sz.lengths:
            es = rows[f"es κ={kappa:g} T={t}"]["total_variance"]
            rp = rows[f"reparam κ={kappa:g} T={t}"]["total_variance"]
            ratio = f"{rp / es:.3g}" if es and rp is not None else "—"
            lines.append(f"| {kappa:g} | {t} | {_g(es)} | {_g(rp)} | {ratio} |")
    ax.set(xscale="log", yscale="log", xlabel="unroll length T", ylabel="total variance",
           title="one-pair meta-gradient variance (σ = %g)" % SIGMA)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(suite.figure("variance.png"))
    suite.section("ES vs reparameterization variance against curvature and unroll length",
                  f"Momentum SGD (θ = lr 0.2, momentum 0.2) on the 2-D quadratic of "
                  f"`lopt.outer.smoothed_exact` with its Hessian scaled by the curvature factor, "
                  f"unrolled T steps; total variance (trace of the covariance) of one antithetic "
                  f"pair's estimate over {sz.repeats} draws, σ = {SIGMA}, float64.\n\n"
                  + "\n".join(lines) + "\n")


def _g(x):
    return "—" if x is None else f"{x:.3g}"


def _bias(sz) -> dict:
    """Relative bias of TBPTT (against the exact gradient) and PES (against the exact smoothed
    gradient) on the H-step momentum problem, for each truncation length."""

    rows = {}
    with jax.enable_x64(True):
        plain = exact.plain_gradient()
        smoothed = exact.smoothed_gradient(SIGMA)
        for k in sz.truncations:
            kw = dict(num_tasks=8, truncation=k, horizon=exact.H, stagger=False)
            calls = sz.bias_calls // (exact.H // k) * (exact.H // k)  # whole horizons
            for name, est, target in (("tbptt", TBPTT(**kw, second_derivatives=True), plain),
                                      ("pes", PES(**kw, sigma=SIGMA), smoothed)):
                samples = exact.estimates(est, calls)
                mean = samples.mean(axis=0)
                se = samples.std(axis=0, ddof=1) / np.sqrt(len(samples))
                rows[f"{name} K={k}"] = {
                    "estimator": name, "truncation": k,
                    "relative_bias": float(np.linalg.norm(mean - target) / np.linalg.norm(target)),
                    "relative_se": float(np.linalg.norm(se) / np.linalg.norm(target)),
                    "mean": mean.tolist(), "target": np.asarray(target).tolist()}
    return rows


def _bias_report(suite, rows, sz) -> None:
    lines = ["| truncation K | TBPTT relative bias | PES relative bias (± s.e.) |",
             "|---|---|---|"]
    for k in sz.truncations:
        t, p = rows[f"tbptt K={k}"], rows[f"pes K={k}"]
        lines.append(f"| {k} | {t['relative_bias']:.3g} | {p['relative_bias']:.3g} "
                     f"(± {p['relative_se']:.2g}) |")
    suite.section("Truncation bias: TBPTT vs PES",
                  f"The H = {exact.H}-step momentum problem, truncations of K steps (H/K per "
                  "horizon), mean of every estimate over whole horizons: ‖mean − target‖ / "
                  "‖target‖, TBPTT (second derivatives kept: only the cut biases it) against "
                  "the exact gradient of the mean loss, PES against the "
                  f"exact gradient of its σ = {SIGMA} smoothing (Gauss–Hermite).\n\n"
                  + "\n".join(lines) + "\n")


def _objectives(suite, sz) -> None:
    """Per-parameter MLP meta-trained on the training loss vs on the validation loss of a small
    MLP that overfits a 64-example subset; both tested on the whole test split."""

    family = mlp_family("digits", (64,), "relu", batch_size=32, subset_size=64,
                        name="digits_mlp_64x1_subset64")
    learned = {}
    for objective in ("train", "valid"):
        rule = per_parameter_mlp()
        est = TBPTT(num_runs=sz.meta_tasks, truncation=20, horizon=sz.overfit_steps,
                    objective=objective)
        learned[f"meta-trained on {objective} loss"] = (
            rule, suite.meta_train(f"objective_{objective}", rule, family, est,
                                   steps=sz.meta_steps))
    results = suite.compare("eval_objectives", learned, {"adam": adam}, family,
                            num_tasks=sz.eval_tasks, tune_tasks=sz.tune_tasks,
                            num_steps=sz.overfit_steps, test_metrics=True)
    names = [s["name"] for s in results]
    suite.section("Training vs validation meta-objective",
                  f"Per-parameter MLP rule meta-trained for {sz.meta_steps} outer steps with "
                  f"horizon {sz.overfit_steps} on a 64-unit ReLU MLP that sees only 64 training "
                  "digits (batch 32), once on the training loss and once on the validation "
                  f"loss. {protocol_line(sz.eval_tasks, sz.tune_tasks, sz.overfit_steps)} "
                  "Final training loss:\n\n" + tables.matrix_table({"digits, 64 examples":
                                                                    results}, names)
                  + "\nLoss on the whole test split after the last step (the quantity a "
                  "validation objective targets):\n\n"
                  + tables.field_table({"digits, 64 examples": results}, names, "test_loss")
                  + "\nTest accuracy:\n\n"
                  + tables.field_table({"digits, 64 examples": results}, names,
                                      "test_accuracy", ".3f"))
    suite.payload["objectives"] = results


def _more_tasks(suite, sz) -> None:
    """L2L LSTM meta-trained on pools of N quadratics (N = 0: a fresh one every run), tested on
    quadratics outside every pool and on its own pool."""

    base = make_family("quadratic")
    est = TBPTT(num_runs=sz.meta_tasks, truncation=20, horizon=100)
    rows = {}
    for n in sz.pools:
        family = base if n == 0 else pooled_family(base, n, jax.random.PRNGKey(2024))
        rule = l2l_lstm()
        theta = suite.meta_train(f"pool_{n or 'fresh'}", rule, family, est, steps=sz.meta_steps)

        def compute(rule=rule, theta=theta, family=family):
            out = {}
            for label, fam in (("meta-test", base), ("own pool", family)):
                r = evaluate_rule(rule, theta, fam, jax.random.PRNGKey(EVAL_SEED),
                                  num_tasks=sz.eval_tasks, num_steps=100)
                s = r.summary()
                out[label] = {k: s[k] for k in ("final_mean", "final_sem", "diverged")}
            return out

        rows[n] = suite.cached(f"pool_{n or 'fresh'}_eval", compute)
    lines = ["| meta-training tasks | meta-test loss (unseen quadratics) | loss on its own pool |",
             "|---|---|---|"]
    for n, r in rows.items():
        lines.append(f"| {n or 'fresh every run'} | {_cell(r['meta-test'])} | "
                     f"{_cell(r['own pool'])} |")
    suite.section("More meta-training tasks generalize better",
                  f"The L2L LSTM meta-trained for {sz.meta_steps} outer steps on a pool of N "
                  "10x10 quadratics (drawn once), then run for 100 steps on "
                  f"{sz.eval_tasks} quadratics from the evaluation seed (outside every pool) and "
                  "on its own pool; final loss, mean ± standard error.\n\n"
                  + "\n".join(lines) + "\n")
    suite.payload["more_tasks"] = {str(n): r for n, r in rows.items()}


def _cell(r) -> str:
    text = format_loss(r)
    return text + (f" ({r['diverged']} diverged)" if r["diverged"] else "")
