"""The tiny tensor-parallel meta-training run shared by the test and its worker."""
from lopt.outer import PES
from lopt.rules import make_rule
from lopt.tasks.sequence import transformer_lm_family
from lopt.tasks.tensor_parallel import tensor_parallel

RULE = make_rule("per_parameter_mlp", hidden=8)
FAMILY = tensor_parallel(transformer_lm_family(layers=1, d_model=16, heads=2, seq_len=8,
                                               batch_size=4))
EST = PES(num_tasks=4, truncation=3, horizon=6)
