import os

# Keep XLA to the cores we have; the suite's compiled functions are shared through fixtures.
os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false")
