"""The benchmark suites ``lopt bench SUITE`` runs, registered by import: a misspelt module
fails here, when the registry loads, not when someone runs that suite.

Every suite module has ``SIZES`` (``"full"`` and ``"quick"``) and
``run(out, quick=False, command=..., progress=True) -> results.md path``
(tests/bench/test_registry.py); those of ``LONG_SUITES`` also take ``interim=True`` (report
the stages cached so far, computing nothing), ``cache=FOLDER`` and ``reverse=True`` (a second
worker sharing another run's cache, computing from the other end)."""
from __future__ import annotations

from lopt.bench import (
    diagnosis,
    drop_in,
    estimators,
    history,
    hyperadam,
    l2l,
    metz,
    mixture,
    mulo,
    multiscale,
    pretrained,
    soak,
    step_scale,
    tasks,
    zoo,
)
from lopt.bench.perf import (
    accelerator,
    conv_loop,
    cores,
    lo_side_by_side,
    overview,
    regression,
    step_cost,
    tensor_parallel,
    throughput,
    torch_step,
)

# Suites that reproduce the papers' experiments, each with a --quick size that finishes in
# minutes (tests/bench/test_suites.py runs them).
PAPER_SUITES = {
    "metz": (metz, "Metz et al. 2019: ES vs reparameterization variance, TBPTT bias vs PES, train "
                   "vs validation objective, more tasks generalize better"),
    "multiscale": (multiscale, "Shahid 2017: Multiscale Adam LWA_a/b/c, MLP, RNN_a/b; learned "
                               "weight tables, input Adams, step-size heatmap"),
    "history": (history, "Shahid 2017: k-timesteps and k-momentums rules vs Adam and RMSProp; the "
                         "learned Δx table for k = 5"),
    "hyperadam": (hyperadam, "Wang, Sun & Xu 2019: HyperAdam, DMoptimizer and RNNprop "
                             "meta-trained on an MNIST MLP; Tables 1-3, depth, T = 2000"),
    "l2l": (l2l, "Andrychowicz et al. 2016: LSTM optimizer on quadratics and an MNIST MLP, its "
                 "generalization rows and the width x depth sweep"),
    "mup": (mulo, "Thérien et al. 2026 (μLO): adafac meta-trained at one width with and without "
                  "μP, and Adam tuned there, tested at widths 32-2048"),
    "zoo": (zoo, "every learned rule meta-trained on one split of task families, tested on unseen "
                 "families: IQM, profiles, speedup, step time"),
}

SUITES = {
    **PAPER_SUITES,
    "estimators": (estimators, "meta-gradient variance vs samples, and meta-training throughput, "
                               "per estimator"),
    "tasks": (tasks, "every registered offline task under tuned Adam: normalization reference, "
                     "test accuracy, speed"),
    "mixture": (mixture, "compile and step time of meta-training on a mixture against its "
                         "families alone"),
    "pretrained": (pretrained, "the shipped general-purpose learned optimizers on an "
                               "out-of-distribution meta-test set vs default, globally tuned and "
                               "per-task tuned Adam/AdamW"),
    "diagnosis": (diagnosis, "why adafac_tiny trails tuned Adam in distribution: controlled "
                             "meta-trainings, one change each"),
    "drop_in": (drop_in, "why celo2_broad fails as a drop-in: weight norms and step RMS on "
                         "deep/wide/long regressions, schedules, weight decay, grafted magnitude; "
                         "step cost; adafac_tiny's drift"),
    "step_cost": (step_cost, "a drop-in learned optimizer's whole training step against "
                             "optax.adam on a 3x256 MLP and a small conv net, under nnx.jit and "
                             "jax.jit"),
    "step_scale": (step_scale, "the celo2 recipes' learning rates (and celo2_graft_v2's "
                               "weight decay), chosen on their meta-training families' tuning "
                               "instances"),
    "accelerator": (accelerator, "for a lent GPU/TPU: every learned rule's update at 1M-100M "
                                 "parameters, peak memory, meta-training and bigger-task step "
                                 "times"),
    "conv_loop": (conv_loop, "convolution gradients inside lax.scan on XLA:CPU: lopt's loop_conv "
                             "against lax's, and the conv tasks before and after"),
    "soak": (soak, "a 100k-step lopt train with its resident memory sampled: flat within 5% after "
                   "warm-up"),
    "tensor_parallel": (tensor_parallel,
                        "meta-training a tensor-parallel transformer on runs x model meshes (needs "
                        ">= 2 devices)"),
    "throughput": (throughput, "meta-training inner steps/s of the whole outer step on tiny "
                               "tasks, in turns against an earlier commit"),
    "perf": (overview, "per-update time vs optax.adam and the FLOP floor, meta-training "
                       "throughput, TBPTT memory, state bytes"),
    "cores": (cores, "one core or both, one process or two at once: PES on small tasks and a "
                     "2.1M-parameter update (needs >= 2 cores)"),
    "regression": (regression, "every update and meta-training throughput figure of perf and "
                               "throughput, in turns against an earlier commit: what got "
                               "slower"),
    "lo_side_by_side": (lo_side_by_side, "lopt's per-parameter and Adafactor MLP updates beside "
                                         "learned_optimization's in one process, in turns "
                                         "(needs learned_optimization importable)"),
    "torch_step": (torch_step, "lopt.torch's update time against torch.optim.AdamW and "
                               "lopt's JAX update of the same rule, 1M and 10M parameters "
                               "(needs the torch extra)"),
}

# Suites long enough (hours to days) that a report of their cached stages is worth having
# while they still run, and a second worker on the same cache.
LONG_SUITES = {"pretrained"}
