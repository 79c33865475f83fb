"""The tiny meta-training run the fault tests interrupt, shared by the test and its worker."""
from lopt.outer import TBPTT, default_meta_optimizer, train
from lopt.rules import l2l_lstm
from lopt.tasks import quadratic_family

RULE = l2l_lstm(hidden=4, layers=1)
FAMILY = quadratic_family(dim=3)
EST = TBPTT(num_runs=4, truncation=3, horizon=8)


def run(folder, num_steps, **kw):
    return train(RULE, FAMILY, EST, num_steps=num_steps, seed=7, progress=False,
                 meta_optimizer=default_meta_optimizer(1e-2), checkpoint_every=1,
                 checkpoint_path=f"{folder}/checkpoints", log_path=f"{folder}/log.jsonl",
                 **kw)
