"""Benchmark suites run by ``lopt bench SUITE``; results go under ``benchmarks/``."""

SUITES = {
    "estimators": ("lopt.bench.estimators",
                   "meta-gradient variance vs samples, and meta-training throughput, per estimator"),
    "tasks": ("lopt.bench.tasks", "every registered offline task under tuned Adam: "
                                  "normalization reference, test accuracy, speed"),
    "mixture": ("lopt.bench.mixture", "compile and step time of meta-training on a mixture "
                                      "against its families alone"),
}
