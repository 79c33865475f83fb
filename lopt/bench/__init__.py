"""Benchmark suites run by ``lopt bench SUITE``; results go under ``benchmarks/``."""

SUITES = {
    "estimators": ("lopt.bench.estimators",
                   "meta-gradient variance vs samples, and meta-training throughput, per estimator"),
    "tasks": ("lopt.bench.tasks", "every registered offline task under tuned Adam: "
                                  "normalization reference, test accuracy, speed"),
}
