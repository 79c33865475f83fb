"""Benchmark suites run by ``lopt bench SUITE``; results go under ``benchmarks/``."""

# Suites that reproduce the papers' experiments: run(out, quick=..., command=...) with a
# --quick size that finishes in minutes.
PAPER_SUITES = {
    "metz": ("lopt.bench.metz", "Metz et al. 2019: ES vs reparameterization variance, TBPTT bias "
                                "vs PES, "
                                "train vs validation objective, more tasks generalize better"),
    "multiscale": ("lopt.bench.multiscale", "Shahid 2017: Multiscale Adam LWA_a/b/c, MLP, "
                                            "RNN_a/b; learned weight tables, input Adams, "
                                            "step-size heatmap"),
    "history": ("lopt.bench.history", "Shahid 2017: k-timesteps and k-momentums rules vs Adam and "
                                      "RMSProp; the learned Δx table for k = 5"),
    "hyperadam": ("lopt.bench.hyperadam", "Wang, Sun & Xu 2019: HyperAdam, DMoptimizer and RNNprop "
                                          "meta-trained on an MNIST MLP; Tables 1-3, depth, T = "
                                          "2000"),
    "l2l": ("lopt.bench.l2l", "Andrychowicz et al. 2016: LSTM optimizer on quadratics and an "
                              "MNIST MLP, its "
                              "generalization rows and the width x depth sweep"),
    "mup": ("lopt.bench.mulo", "Thérien et al. 2026 (μLO): adafac meta-trained at one width "
                              "with and without μP, and Adam tuned there, tested at widths "
                              "32-2048"),
    "zoo": ("lopt.bench.zoo", "every learned rule meta-trained on one split of task families, "
                              "tested on unseen families: IQM, profiles, speedup, step time"),
}

SUITES = {**PAPER_SUITES,
    "estimators": ("lopt.bench.estimators",
                   "meta-gradient variance vs samples, and meta-training throughput, "
                   "per estimator"),
    "tasks": ("lopt.bench.tasks", "every registered offline task under tuned Adam: "
                                  "normalization reference, test accuracy, speed"),
    "mixture": ("lopt.bench.mixture", "compile and step time of meta-training on a mixture "
                                      "against its families alone"),
    "pretrained": ("lopt.bench.pretrained", "the shipped general-purpose learned optimizers on "
                                            "an out-of-distribution meta-test set vs default, "
                                            "globally tuned and per-task tuned Adam/AdamW"),
    "diagnosis": ("lopt.bench.diagnosis", "why adafac_tiny trails tuned Adam in distribution: "
                                          "controlled meta-trainings, one change each"),
    "drop_in": ("lopt.bench.drop_in", "why celo2_broad fails as a drop-in: weight norms and step "
                                      "RMS on deep/wide/long regressions, schedules, weight "
                                      "decay, grafted magnitude; step cost; adafac_tiny's drift"),
    "step_cost": ("lopt.bench.perf.step_cost", "a drop-in learned optimizer's whole training "
                                                "step against optax.adam on a 3x256 MLP and a "
                                                "small conv net, under nnx.jit and jax.jit"),
    "step_scale": ("lopt.bench.step_scale", "the celo2_broad recipe's one learning rate, "
                                            "chosen on its meta-training families' tuning "
                                            "instances"),
    "accelerator": ("lopt.bench.perf.accelerator", "for a lent GPU/TPU: every learned rule's "
                                                    "update at 1M-100M parameters, peak memory, "
                                                    "meta-training and bigger-task step times"),
    "conv_loop": ("lopt.bench.perf.conv_loop", "convolution gradients inside lax.scan on "
                                                "XLA:CPU: lopt's loop_conv against lax's, "
                                                "and the conv tasks before and after"),
    "soak": ("lopt.bench.soak", "a 100k-step lopt train with its resident memory sampled: "
                                "flat within 5% after warm-up"),
    "tensor_parallel": ("lopt.bench.perf.tensor_parallel", "meta-training a tensor-parallel "
                                                           "transformer on runs x model "
                                                           "meshes (needs >= 2 devices)"),
    "throughput": ("lopt.bench.perf.turns", "meta-training inner steps/s of the whole outer "
                                            "step on tiny tasks, in turns against an "
                                            "earlier commit"),
    "perf": ("lopt.bench.perf.suite", "per-update time vs optax.adam and the FLOP floor, "
                                      "meta-training throughput, TBPTT memory, state bytes"),
}
