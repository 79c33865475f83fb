import json
import os

import jax
import numpy as np
import pytest

from lopt import rules
from lopt.evaluation import lr_sweep
from lopt.evaluation import normalization as normalize_module
from lopt.evaluation.normalization import adam_reference
from lopt.evaluation.protocol import NORMALIZATION_SEED
from lopt.outer.unroll import Horizon, init_inner, inner_step
from lopt.tasks import normalized, quadratic_family

GRID = (1e-2, 1e-1, 3e-1)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    cache = str(tmp_path_factory.mktemp("cache"))
    family = quadratic_family(dim=4)
    return family, cache, adam_reference(family, num_steps=15, num_tasks=3, grid=GRID,
                                         cache_dir=cache)


def test_reference_is_tuned_adams_best_and_the_initial_loss(reference):
    family, _, ref = reference
    # Independently: the same sweep, read off by hand.
    curves = lr_sweep(rules.adam, family, jax.random.PRNGKey(NORMALIZATION_SEED),
                      num_tasks=3, num_steps=15, grid=GRID)
    means = curves.mean(axis=2)
    assert ref.init_loss == pytest.approx(float(means[0, 0]), rel=1e-6)
    assert ref.best_loss == pytest.approx(float(means.min()), rel=1e-6)
    assert ref.learning_rate == GRID[int(np.argmin(means.min(axis=1)))]
    assert ref.init_loss > ref.best_loss


def test_normalization_maps_the_endpoints_to_one_and_zero_and_clips(reference):
    _, _, ref = reference
    assert float(ref.normalize(ref.init_loss)) == pytest.approx(1.0, abs=1e-6)
    assert float(ref.normalize(ref.best_loss)) == pytest.approx(0.0, abs=1e-6)
    span = ref.init_loss - ref.best_loss
    assert float(ref.normalize(ref.best_loss + 0.5 * span)) == pytest.approx(0.5, abs=1e-5)
    assert float(ref.normalize(ref.init_loss + 10 * span)) == 2.0
    assert float(ref.normalize(ref.best_loss - 10 * span)) == -2.0


def test_cache_is_reused_and_rebuilt_when_the_spec_changes(reference, monkeypatch):
    family, cache, ref = reference
    path = normalize_module.cache_path(family, 15, 3, NORMALIZATION_SEED, GRID, cache)
    assert json.load(open(path))["best_loss"] == ref.best_loss

    def no_sweep(*args, **kwargs):
        raise AssertionError("the cached reference should have been used")

    monkeypatch.setattr("lopt.evaluation.normalization.lr_sweep", no_sweep)
    assert adam_reference(family, num_steps=15, num_tasks=3, grid=GRID, cache_dir=cache) == ref
    with pytest.raises(AssertionError, match="cached"):  # another spec is another entry
        adam_reference(quadratic_family(dim=5), num_steps=15, num_tasks=3, grid=GRID,
                       cache_dir=cache)
    monkeypatch.undo()
    other = adam_reference(quadratic_family(dim=5), num_steps=15, num_tasks=3, grid=GRID,
                           cache_dir=cache)
    assert other.family == "quadratic5"
    assert len(os.listdir(os.path.join(cache, "normalization"))) == 2


def test_normalized_family_gives_the_meta_objective_normalized_losses(reference):
    family, _, ref = reference
    norm = normalized(family, ref)
    rule = rules.sgd(0.01)
    key = jax.random.PRNGKey(3)
    raw_run = init_inner(rule, family, {}, key, Horizon(10))
    norm_run = init_inner(rule, norm, {}, key, Horizon(10))
    _, raw_out, _ = inner_step(rule, family, {}, raw_run)
    _, norm_out, _ = inner_step(rule, norm, {}, norm_run)
    assert float(norm_out.loss) == pytest.approx(float(raw_out.loss))  # the rule sees raw loss
    expected = np.clip((float(raw_out.meta_loss) - ref.best_loss) / (ref.init_loss - ref.best_loss),
                       -2, 2)
    assert float(norm_out.meta_loss) == pytest.approx(expected, rel=1e-5)
    with pytest.raises(ValueError, match="reference is for family"):
        normalized(quadratic_family(dim=6), ref)
