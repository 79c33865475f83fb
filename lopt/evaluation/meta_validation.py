"""Meta-validation: a rule's theta scored on held-out instances of its meta-training families
while it meta-trains (the ``validate`` callback of ``lopt.outer.RunOptions``)."""
from __future__ import annotations

from typing import Callable

import jax
import numpy as np

from lopt.evaluation.curves import diverged, loss_curves
from lopt.evaluation.protocol import META_VALID_SEED
from lopt.rules.base import UpdateRule
from lopt.tasks import Mixture


def meta_validation(rule: UpdateRule, family, *, num_tasks: int, num_steps: int,
                    seed: int = META_VALID_SEED) -> Callable[[object], dict]:
    """theta -> {"mean": mean over families of the mean final loss of ``num_tasks`` runs of
    ``num_steps`` steps, "diverged": runs that diverged, and per family FAMILY and
    FAMILY/diverged}. The instances (``seed``) are the same at every call and are never the
    ones meta-training samples, so the numbers trace generalization within the training
    distribution. Losses are as the family reports them (normalized when it is). A family
    whose every run diverged scores NaN, and so does the mean."""
    families = family.families if isinstance(family, Mixture) else (family,)
    key = jax.random.PRNGKey(seed)
    runs = [jax.jit(lambda theta, f=f: loss_curves(rule, theta, f, key, num_tasks=num_tasks,
                                                   num_steps=num_steps)) for f in families]

    def validate(theta) -> dict:
        out, means, bad_total = {}, [], 0
        for f, run in zip(families, runs):
            curves = np.asarray(run(theta), np.float64)
            bad = diverged(curves)
            final = curves[-1][~bad]
            means.append(float(final.mean()) if final.size else float("nan"))
            out[f.name], out[f"{f.name}/diverged"] = means[-1], int(bad.sum())
            bad_total += int(bad.sum())
        return {"mean": float(np.mean(means)), "diverged": bad_total, **out}

    return validate
