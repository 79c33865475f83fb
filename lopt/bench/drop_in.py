"""``lopt bench drop_in``: why ``celo2_broad`` fails as a drop-in optimizer (issue 35's
diagnosis), measured on problems of our own that no meta-training or meta-test set holds.

Deep and wide ReLU MLPs and a tanh MLP regress the standardized diabetes target (at its own
scale and 10x it), each trained from a user's point of view: ``lopt.as_optax`` in a plain
jitted loop of minibatch steps, several seeds. Every run records, every step, the loss, the
step's RMS on a hidden square matrix, the update/parameter norm ratio and the Frobenius norm of
the hidden square matrices. Optimizers: Adam at 1e-3, ``celo2_broad`` as shipped (its step RMS
is β whatever the gradients say: Celo2's per-tensor RMS normalization), ``celo2_broad`` under
a warm-up + cosine schedule, with decoupled weight decay, with both, and Celo2's direction with
Adam's per-tensor step magnitude grafted on (Agarwal et al. 2020) with and without
Newton–Schulz. Then the cost of each part of the step on a 3x256 MLP, and why ``adafac_tiny``'s
updates moved on 2026-12-01 (its golden inputs under both feature semantics).
"""
from __future__ import annotations

import contextlib
import dataclasses
import importlib
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from lopt.bench.suite import Suite
from lopt.evaluation import plots
from lopt.optax_adapter.chains import rule_and_theta, scale_by_celo2
from lopt.optax_adapter.transformation import as_optax
from lopt.pretrained import PRETRAINED
from lopt.rules import make_rule
from lopt.tasks import datasets

SHIPPED = "celo2_broad"
BATCH = 64
WEIGHT_DECAY = 0.1
RECORD_EVERY = 5
# Newton-Schulz's FLOPs per coordinate grow with a matrix's shorter side k (about 30 k for
# five iterations): up to 128 it costs about what the per-coordinate network does on this CPU
CHEAP_NS = 128


@dataclasses.dataclass(frozen=True)
class Problem:
    name: str
    width: int
    depth: int
    steps: int
    activation: str = "relu"
    target_scale: float = 1.0


@dataclasses.dataclass(frozen=True)
class Size:
    problems: tuple
    seeds: int
    timing_repeats: int


PROBLEMS = (Problem("relu 4x256, 300 steps", 256, 4, 300),
            Problem("relu 4x64, 300 steps", 64, 4, 300),
            Problem("relu 2x256, 300 steps", 256, 2, 300),
            Problem("relu 4x256, 1000 steps", 256, 4, 1000),
            Problem("relu 4x256, target x10, 300 steps", 256, 4, 300, target_scale=10.0),
            Problem("tanh 2x64, 400 steps", 64, 2, 400, activation="tanh"))
SIZES = {"full": Size(PROBLEMS, 3, 20),
         "quick": Size((Problem("relu 2x32, 20 steps", 32, 2, 20),), 1, 2)}


def _mlp_init(key, sizes):
    keys = jax.random.split(key, len(sizes) - 1)
    return [{"w": jax.random.normal(k, (a, b)) * jnp.sqrt(2.0 / a), "b": jnp.zeros((b,))}
            for k, a, b in zip(keys, sizes[:-1], sizes[1:])]


def _mlp_apply(params, x, activation):
    act = jax.nn.relu if activation == "relu" else jnp.tanh
    for layer in params[:-1]:
        x = act(x @ layer["w"] + layer["b"])
    return x @ params[-1]["w"] + params[-1]["b"]


def optimizers(steps: int) -> dict:
    """name -> optax transformation: the shipped optimizer and the variants of the diagnosis."""
    rule, theta = rule_and_theta(SHIPPED)
    beta = rule.config["step_scale"]
    schedule = optax.warmup_cosine_decay_schedule(0.0, beta, max(1, steps // 20), steps, 0.0)
    direction = scale_by_celo2(SHIPPED)

    def graft(name, schedule="constant"):
        settings = {k: v for k, v in rule.config.items() if k != "orthogonalize_matrices"}
        grafted = make_rule(name, **{**settings, "magnitude": "adam", "schedule": schedule})
        return as_optax(grafted, theta, num_steps=steps)

    return {
        "adam (lr 1e-3)": optax.adam(1e-3),
        SHIPPED: as_optax(SHIPPED),
        "+ cosine": optax.chain(direction, optax.scale_by_learning_rate(schedule)),
        f"+ weight decay {WEIGHT_DECAY:g}": optax.chain(
            direction, optax.add_decayed_weights(WEIGHT_DECAY), optax.scale_by_learning_rate(beta)),
        "+ cosine + weight decay": optax.chain(
            direction, optax.add_decayed_weights(WEIGHT_DECAY),
            optax.scale_by_learning_rate(schedule)),
        "Adam magnitude grafted": graft("celo2"),
        "Adam magnitude grafted, no Newton-Schulz": graft("celo2_base"),
        # the third generation's form (recipe celo2_graft): the schedule inside the rule
        "grafted + cosine": graft("celo2", "cosine"),
        "grafted + cosine, no Newton-Schulz": graft("celo2_base", "cosine"),
        # and the third generation as shipped, once it is: its own meta-trained theta and β
        **({"celo2_graft (shipped)": as_optax("celo2_graft", num_steps=steps)}
           if "celo2_graft" in PRETRAINED else {}),
        # its second version (beta chosen over 300- and 2,000-step runs) and that version with
        # Newton-Schulz only where it is cheap (the step-cost knob, lopt bench step_cost)
        **({"celo2_graft_v2 (shipped)": as_optax("celo2_graft_v2", num_steps=steps),
            f"celo2_graft_v2, Newton-Schulz up to {CHEAP_NS}": as_optax(cheap_ns(
                "celo2_graft_v2"), rule_and_theta("celo2_graft_v2")[1], num_steps=steps)}
           if "celo2_graft_v2" in PRETRAINED else {}),
    }


def cheap_ns(name: str):
    """The shipped celo2 rule ``name`` with Newton-Schulz only on matrices whose shorter side
    is at most CHEAP_NS."""
    rule = rule_and_theta(name)[0]
    return make_rule(rule.name, **{**rule.config, "orthogonalize_max_dim": CHEAP_NS})


def _run(problem: Problem, tx, seeds: int) -> dict:
    """Traces of ``seeds`` runs (vmapped) of ``tx`` on ``problem``, every RECORD_EVERY steps."""
    data = datasets.load("diabetes")
    x = jnp.asarray(data.train_x)
    y = jnp.asarray(data.train_y) * problem.target_scale
    sizes = [x.shape[1]] + [problem.width] * problem.depth + [1]
    square = [i for i in range(len(sizes) - 1) if sizes[i] == sizes[i + 1]]

    def loss(params, idx):
        pred = _mlp_apply(params, x[idx], problem.activation)[:, 0]
        return jnp.mean(jnp.square(pred - y[idx]))

    def one(seed):
        params = _mlp_init(jax.random.PRNGKey(seed), sizes)
        batches = jax.random.randint(jax.random.PRNGKey(seed + 1000), (problem.steps, BATCH), 0,
                                     x.shape[0])

        def step(carry, idx):
            params, state = carry
            value, grads = jax.value_and_grad(loss)(params, idx)
            updates, state = tx.update(grads, state, params, value=value)
            norm = lambda t: jnp.sqrt(sum(jnp.sum(jnp.square(a)) for a in jax.tree.leaves(t)))
            middle = updates[square[len(square) // 2]]["w"] if square else updates[0]["w"]
            record = {"loss": value, "step_rms": jnp.sqrt(jnp.mean(jnp.square(middle))),
                      "update_over_params": norm(updates) / norm(params),
                      "square_norm": (jnp.mean(jnp.stack([jnp.linalg.norm(params[i]["w"])
                                                          for i in square]))
                                      if square else norm(params))}
            return (optax.apply_updates(params, updates), state), record

        (params, _), trace = jax.lax.scan(step, (params, tx.init(params)), batches)
        final = loss(params, jnp.arange(x.shape[0]))
        return final, jax.tree.map(lambda a: a[::RECORD_EVERY], trace)

    finals, traces = jax.jit(jax.vmap(one))(jnp.arange(seeds))
    out = {k: np.asarray(v, np.float64).tolist() for k, v in traces.items()}
    out["final"] = np.asarray(finals, np.float64).tolist()
    return out


def _timing(repeats: int) -> dict:
    """Milliseconds per update (jitted, best of ``repeats`` rounds of 10) on a 196-256-256-256-10
    MLP's parameters: Adam, the shipped step, the same without Newton-Schulz, the grafted one,
    and the shipped rule's first layer as one matmul per feature group (its old form)."""
    params = _mlp_init(jax.random.PRNGKey(0), [196, 256, 256, 256, 10])
    grads = jax.tree.map(lambda p: 1e-2 * jax.random.normal(jax.random.PRNGKey(1), p.shape),
                         params)
    txs = optimizers(100)
    rule, theta = rule_and_theta(SHIPPED)
    no_ns = make_rule("celo2_base", **{k: v for k, v in rule.config.items()
                                        if k != "orthogonalize_matrices"})
    cases = {"adam": txs["adam (lr 1e-3)"], SHIPPED: txs[SHIPPED],
             f"{SHIPPED}, first layer one matmul per group (before issue 35)": txs[SHIPPED],
             "no Newton-Schulz": as_optax(no_ns, theta),
             "grafted, no Newton-Schulz": txs["Adam magnitude grafted, no Newton-Schulz"]}
    out = {}
    for name, tx in cases.items():
        state = tx.init(params)
        update = jax.jit(lambda g, s, p, tx=tx: tx.update(g, s, p, value=1.0))
        with _old_first_layer() if "per group" in name else contextlib.nullcontext():
            jax.block_until_ready(update(grads, state, params))  # traced here
        best = np.inf
        for _ in range(repeats):
            start = time.perf_counter()
            for _ in range(10):
                jax.block_until_ready(update(grads, state, params))
            best = min(best, (time.perf_counter() - start) / 10)
        out[name] = best * 1e3
    return out


def _per_group_first_layer(mlp: dict, groups: list) -> jax.Array:
    """``celo2.apply_split_mlp`` as lopt computed it until issue 35: one matmul per feature
    group (the same sum, other float association)."""
    out = mlp["first"]["b"]
    for x, w in zip(groups, mlp["first"]["w"]):
        out = out + x @ w
    for layer in mlp["layers"]:
        out = jax.nn.relu(out) @ layer["w"] + layer["b"]
    return out


def _per_group_outputs(mlp: dict, groups: list, ndim: int, eps: float = 1e-9,
                       outputs: int = 2) -> tuple:
    """``celo2.mlp_outputs`` as lopt computed it until issue 35: the row and column groups
    broadcast, every group normalized and written out, then ``_per_group_first_layer``."""
    celo2 = importlib.import_module("lopt.rules.celo2")  # lopt.rules.celo2 is the function
    full = jnp.broadcast_shapes(*(x.shape[:-1] for x in groups))
    groups = [celo2.normalize_last_two_axes(jnp.broadcast_to(x, full + x.shape[-1:]), ndim, eps)
              for x in groups]
    out = _per_group_first_layer(mlp, groups)
    return tuple(out[..., i] for i in range(outputs))


@contextlib.contextmanager
def _old_first_layer():
    """Within the block, celo2 rules traced anew use ``_per_group_outputs`` (the update calls
    ``mlp_outputs``; patching ``apply_split_mlp``, which the update no longer calls since the
    first layer was restructured, would time today's code under the old name)."""
    module = importlib.import_module("lopt.rules.celo2")
    saved = module.mlp_outputs
    module.mlp_outputs = _per_group_outputs
    try:
        yield
    finally:
        module.mlp_outputs = saved


def _semantics_drift(tasks: tuple, steps: int, instances: int) -> dict:
    """``adafac_tiny`` and ``celo_tiny`` under the feature semantics they were meta-trained under
    ("lopt_v1") and under today's reference ones: the relative change of each step's update on a
    small pytree (gradient scales 1 ... 1e-6 by step), and the mean final loss on ``tasks``."""
    from lopt.evaluation import loss_curves
    from lopt.files.rule_file import load
    from lopt.pretrained import path
    from lopt.tasks import make_family

    out = {}
    params = {"w": jax.random.normal(jax.random.PRNGKey(0), (6, 5)), "b": jnp.zeros((5,))}
    for name in ("adafac_tiny", "celo_tiny"):
        rule, theta = load(path(name))
        moved = make_rule(rule.name, **{**rule.config, "feature_semantics": "reference"})
        updates = {}
        for label, r in (("shipped", rule), ("reference", moved)):
            tx = as_optax(r, theta, num_steps=100)
            state, rows = tx.init(params), []
            for t in range(12):
                g = jax.tree.map(lambda p: 10.0 ** -(t % 7) * jax.random.normal(  # noqa: B023
                    jax.random.PRNGKey(t), p.shape), params)  # noqa: B023
                u, state = tx.update(g, state, params, value=1.0 + 0.1 * t)
                rows.append(np.concatenate([np.ravel(a) for a in jax.tree.leaves(u)]))
            updates[label] = np.stack(rows)
        diff = (np.abs(updates["reference"] - updates["shipped"]).max(axis=1)
                / np.abs(updates["shipped"]).max(axis=1))
        finals = {}
        for task in tasks:
            family = make_family(task)
            for label, r in (("shipped", rule), ("reference", moved)):
                curves = loss_curves(r, theta, family, jax.random.PRNGKey(12345),
                                     num_tasks=instances, num_steps=steps)
                finals[f"{task} {label}"] = float(np.nanmean(np.asarray(curves[-1])))
        out[name] = {"step_relative_change": diff.tolist(), "final_loss": finals}
    return out


def run(out: str, quick: bool = False, command: str = "lopt bench drop_in",
        progress: bool = True) -> str:
    sz = SIZES["quick" if quick else "full"]
    names = list(optimizers(10))
    suite = Suite("drop_in", out, sz, command, len(sz.problems) * len(names) + 2, progress)
    traces = {p.name: {n: suite.cached(
        f"run_{i}_{j}", lambda p=p, n=n: _run(p, optimizers(p.steps)[n], sz.seeds),
        {"problem": dataclasses.asdict(p), "optimizer": n, "seeds": sz.seeds})
        for j, n in enumerate(names)} for i, p in enumerate(sz.problems)}
    timing = suite.cached("timing", lambda: _timing(sz.timing_repeats),
                          {"repeats": sz.timing_repeats})
    drift_tasks = ("digits_mlp_3x32", "breast_cancer_mlp")
    drift = suite.cached("semantics", lambda: _semantics_drift(
        drift_tasks, 30 if quick else 300, 2 if quick else 8),
        {"tasks": list(drift_tasks), "quick": quick})
    _report(suite, sz, names, traces, timing, drift)
    suite.payload.update({"traces": traces, "timing_ms": timing, "semantics": drift})
    return suite.finish(
        "Why celo2_broad fails as a drop-in optimizer (issue 35)",
        f"{sz.seeds} seeds per problem, minibatches of {BATCH} from the standardized diabetes "
        f"train split (310 x 10), He-initialized MLPs, every optimizer through optax in a "
        f"jitted loop as a user runs it. Schedules: linear warm-up over 5% of the run, then "
        f"cosine to 0, peak at celo2_broad's β; weight decay {WEIGHT_DECAY:g} decoupled, on "
        "the learned step before the learning rate (Celo2's harness).")


def _cell(values) -> str:
    v = np.asarray(values, np.float64)
    return f"{np.median(v):.3g} [{v.min():.3g}, {v.max():.3g}]"


def _report(suite, sz, names, traces, timing, drift) -> None:
    lines = ["| optimizer | " + " | ".join(p.name for p in sz.problems) + " |",
             "|---" * (len(sz.problems) + 1) + "|"]
    for n in names:
        lines.append(f"| {n} | " + " | ".join(_cell(traces[p.name][n]["final"])
                                               for p in sz.problems) + " |")
    suite.section("Final full-batch training loss", "Median [min, max] over seeds; Adam at "
                  "1e-3 is the bar a drop-in optimizer must not fall far behind.\n\n"
                  + "\n".join(lines) + "\n")
    lines = ["| optimizer | " + " | ".join(p.name for p in sz.problems) + " |",
             "|---" * (len(sz.problems) + 1) + "|"]
    for n in names:
        cells = []
        for p in sz.problems:
            t = traces[p.name][n]
            norms, rms = np.asarray(t["square_norm"]), np.asarray(t["step_rms"])
            cells.append(f"{norms[:, 0].mean():.0f} → {norms[:, -1].mean():.0f}; "
                         f"RMS {rms[:, 0].mean():.1e} → {rms[:, -1].mean():.1e}")
        lines.append(f"| {n} | " + " | ".join(cells) + " |")
    suite.section("Hidden weight norms and step size over the run",
                  "Mean Frobenius norm of the hidden square matrices at the first and last "
                  "step, and the RMS of the step on the middle one (mean over seeds).\n\n"
                  + "\n".join(lines) + "\n")
    lines = ["| update on a 196-256-256-256-10 MLP | ms | / adam |", "|---|---|---|"]
    lines += [f"| {k} | {v:.2f} | {v / timing['adam']:.1f} |" for k, v in timing.items()]
    suite.section("Where the step's time goes", "Jitted update alone (no forward or backward "
                  "pass), best of the rounds of 10; the second row runs the shipped rule with "
                  "its MLP's first layer as lopt computed it until issue 35 (one matmul per "
                  "feature group instead of one of the concatenated groups).\n\n"
                  + "\n".join(lines) + "\n")
    lines = ["| file | largest relative change of a step | " + " | ".join(
        next(iter(drift.values()))["final_loss"]) + " |",
             "|---" * (2 + len(next(iter(drift.values()))["final_loss"])) + "|"]
    for name, d in drift.items():
        lines.append(f"| {name} | {max(d['step_relative_change']):.3g} | "
                     + " | ".join(f"{v:.4g}" for v in d["final_loss"].values()) + " |")
    suite.section("Why adafac_tiny moved", "The shipped files under the feature semantics they "
                  "were meta-trained under (shipped: lopt_v1) and under the reference "
                  "semantics the code switched to on 2026-12-01: the largest per-step change "
                  "of the update relative to its size, and the mean final loss on two "
                  "meta-test tasks (8 instances, 300 steps).\n\n" + "\n".join(lines) + "\n")
    first = sz.problems[0]
    for key, label in (("square_norm", "hidden matrix Frobenius norm"), ("loss", "loss")):
        summaries = [{"name": n, "mean_curve": np.mean(traces[first.name][n][key], 0).tolist(),
                      "q25_curve": None, "q75_curve": None, "learning_rate": None,
                      "diverged": 0}
                     for n in names]
        plots.curves_with_spread(summaries, suite.figure(f"{key}.png"),
                                 f"{first.name}: {label} (every {RECORD_EVERY}th step)", label)
