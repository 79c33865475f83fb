"""Named meta-training recipes: the ``lopt train`` settings that made each shipped general-purpose
learned optimizer (``lopt train --recipe NAME``; flags given beside it override its values).

Both recipes follow Celo's compute diet (Moudgil et al. 2025): a handful of tiny image tasks
(three MLPs at 8×8 and 14×14 and a small conv net) under a global parameter reparameterization
(every instance sees its gradients scaled by up to 30× either way), PES over random horizons,
losses normalized per task (1 at initialization, 0 at tuned Adam's best) so no task dominates
the meta-gradient, and the validation loss as the meta-objective. Each is sized to finish within
three hours on a 2-core CPU and checkpoints every 100 outer steps, so a stopped run resumes.
"""
from __future__ import annotations

_COMMON = {
    "task": "mixture:tiny_images",
    "estimator": "pes",
    "num_runs": 32,  # 8 runs (4 antithetic pairs) per family
    "truncation": 20,
    "horizon": 100,
    "max_horizon": 1000,
    "sigma": 0.01,
    "normalize": True,
    "objective": "valid",
    "meta_lr": 1e-3,
    "clip_grad_norm": 1.0,
    "checkpoint_every": 100,
    # The comparison `lopt train` runs after meta-training: evaluation instances of the
    # training families at the median horizon (the OOD test is `lopt bench pretrained`).
    "eval_tasks": 16,
    "eval_steps": 300,
    "tune_tasks": 8,
    "baselines": ("adam",),
}

RECIPES = {
    "celo_tiny": ("celo (RMS-normalized Adafactor-feature MLP + learned LSTM scheduler) meta-"
                  "trained with PES on mixture:tiny_images, normalized validation losses",
                  {**_COMMON, "rule": "celo", "steps": 2000}),
    # Started from the paper's random MLP, PES settled on taking no steps at all (normalized
    # meta-loss 0.97 flat over 1,000 outer steps); started Adam-like it fell to ~0.3 within
    # 100 (short runs of each on the training mixture, measured before this recipe was fixed).
    "adafac_tiny": ("adafac_mlp (small_fc_lopt, started as normalized momentum) meta-trained "
                    "with PES on mixture:tiny_images, normalized validation losses",
                    {**_COMMON, "rule": "adafac_mlp", "rule_config": '{"init": "momentum"}',
                     "steps": 2000}),
    # The second generation (issue 24; benchmarks/pretrained/diagnosis.md): Celo2's step, its
    # scale beta at the learning rate the untrained rule does best with on this mixture's
    # tuning instances (lopt bench step_scale, fixed before meta-training), the training loss
    # as the meta-objective, seven kinds of task on data no meta-test task uses, horizons up
    # to 2,000 steps, and meta-validation on held-out instances every 100 outer steps. 400
    # outer steps (33 minutes on 2 cores): meta-validation went from 0.17 at the start to 0.20-0.24
    # by step 300 (benchmarks/pretrained/runs/celo2_broad/train_log.jsonl), so more steps of
    # this recipe were not where the remaining budget went.
    "celo2_broad": ("celo2 (Celo2's normalized, orthogonalized step, started as Muon) meta-"
                    "trained with PES on mixture:broad (image MLP and conv net, autoencoder, "
                    "regression, tabular, char LSTM, tiny transformer), normalized training "
                    "losses",
                    {**_COMMON, "task": "mixture:broad", "rule": "celo2",
                     "rule_config": '{"init": "momentum", "step_scale": 0.00701703828670383}',
                     "num_runs": 28,  # 4 runs (2 antithetic pairs) per family
                     "max_horizon": 2000, "objective": "train", "checkpoint_every": 50,
                     "validate_every": 100, "validate_tasks": 8, "validate_steps": 300,
                     "eval_tasks": 8, "tune_tasks": 4, "steps": 400}),
    # The third generation (issue 35; benchmarks/pretrained/diagnosis_v3.md): celo2_broad's
    # step RMS is beta whatever the gradients say, so on deep or long runs its weights grow
    # until the loss is thousands of times Adam's. Here the normalized, orthogonalized step's
    # per-tensor size is grafted from Adam's (magnitude "adam") and decays with a warm-up +
    # cosine schedule over the run's length inside the rule (schedule "cosine": the diagnosis
    # measured the pair 10-100x below Adam at 1e-3 where celo2_broad ended 100-1000x above);
    # the start is celo2_broad's theta (--init-from), and the mixture adds the kinds of problem
    # that broke celo2_broad. Horizons log-uniform in [100, 2,000] as celo2_broad's, each run
    # told its own: the schedule makes the rule's behaviour relative to the run's length, which
    # is how the meta-test's 3,000-10,000-step rows are reached. A first run with horizons to
    # 10,000 (PES then draws most truncations from the longest runs) and meta-lr 1e-3 saw its
    # 300-step meta-validation worsen at every check (0.049, 0.056, 0.067 at outer steps 99,
    # 199, 299); it was stopped (log in benchmarks/pretrained/runs/abandoned/), and the
    # warm-started rule now takes meta-lr 3e-4, validated every 50 steps. beta: the value
    # lopt bench step_scale chose for celo2 on mixture:broad's tuning instances (mixture:robust
    # holds mixture:broad); no meta-test task tuned it.
    "celo2_graft": ("celo2 with Adam's per-tensor step magnitude grafted on and a warm-up + "
                    "cosine schedule over the run, warm-started from celo2_broad, meta-trained "
                    "with PES on mixture:robust (mixture:broad plus deep, wide and loss-scaled "
                    "MLPs and a 2-layer transformer), horizons up to 2,000, normalized "
                    "training losses",
                    {**_COMMON, "task": "mixture:robust", "rule": "celo2",
                     "rule_config": ('{"init": "momentum", "magnitude": "adam", '
                                     '"schedule": "cosine", '
                                     '"step_scale": 0.00701703828670383}'),
                     "init_from": "celo2_broad",
                     "num_runs": 44,  # 4 runs (2 antithetic pairs) per family
                     "max_horizon": 2000, "meta_lr": 3e-4, "objective": "train",
                     "checkpoint_every": 25, "validate_every": 50, "validate_tasks": 4,
                     "validate_steps": 300,
                     "eval_tasks": 8, "tune_tasks": 4, "steps": 800}),
}


def recipe_config(name: str) -> dict:
    """The TrainConfig fields of recipe ``name`` (one line naming the allowed names if unknown)."""
    if name not in RECIPES:
        raise ValueError(f"recipe must be one of {', '.join(RECIPES)}; got {name!r}")
    return dict(RECIPES[name][1], recipe=name, out=f"runs/{name}")
