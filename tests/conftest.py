import os
import tempfile

# Keep XLA to the cores we have. The suite is compile-bound: LLVM's optimization level 0 makes
# XLA's CPU compiles 2-3x faster (measured on the whole suite: 9.4 → ~6 min on 2 cores) and
# changes no result the tests check; benchmarks and users keep the default level.
os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false "
                                   "--xla_backend_optimization_level=0")
# Workers and the subprocesses of the fault and device tests compile many of the same programs:
# jax's persistent compilation cache, shared by all of them (inherited through the
# environment), cut a sample of the suite from 96 to 76 s starting empty.
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR",
                      os.path.join(tempfile.gettempdir(), f"lopt-tests-xla-cache-{os.getuid()}"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.2")
