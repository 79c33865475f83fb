"""The tiny tensor-parallel tasks shared by the test and its worker: a one-block transformer
(whose Megatron layout the test checks leaf by leaf) and the MLP the worker meta-trains on a
runs × model mesh (column- then row-parallel: the same two layouts, a far cheaper compile)."""
from lopt.outer import PES
from lopt.rules import make_rule
from lopt.tasks.mlp import mlp_family
from lopt.tasks.sequence import transformer_lm_family
from lopt.tasks.tensor_parallel import tensor_parallel

RULE = make_rule("per_parameter_mlp", hidden=8)
FAMILY = tensor_parallel(transformer_lm_family(layers=1, d_model=16, heads=2, seq_len=8,
                                               batch_size=4))
MESH_FAMILY = tensor_parallel(mlp_family("digits", hidden=(128,), batch_size=32))
# Megatron-LM §3 on the MLP: its widening first matrix splits its outputs (with its bias),
# its narrowing second one its inputs.
MESH_SPLIT = {"Dense_0/kernel": (None, "model"), "Dense_0/bias": ("model",),
              "Dense_1/kernel": ("model", None)}
EST = PES(num_runs=4, truncation=3, horizon=6)
