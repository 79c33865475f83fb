"""Benchmark suites run by ``lopt bench SUITE``; results go under ``benchmarks/``."""

# Suites that reproduce the seeds' experiments: run(out, quick=..., command=...) with a
# --quick size that finishes in minutes.
SEED_SUITES = {
    "zoo": ("lopt.bench.zoo", "every learned rule meta-trained on one split of task families, "
                              "tested on unseen families: IQM, profiles, speedup, step time"),
}

SUITES = {**SEED_SUITES,
    "estimators": ("lopt.bench.estimators",
                   "meta-gradient variance vs samples, and meta-training throughput, per estimator"),
    "tasks": ("lopt.bench.tasks", "every registered offline task under tuned Adam: "
                                  "normalization reference, test accuracy, speed"),
    "mixture": ("lopt.bench.mixture", "compile and step time of meta-training on a mixture "
                                      "against its families alone"),
}
