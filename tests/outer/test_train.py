import json
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lopt.files.checkpoints import Checkpoints
from lopt.files.errors import FileFormatError
from lopt.files.pytree_file import read_metadata, save_pytree
from lopt.outer import TBPTT, Estimator, default_meta_optimizer, train
from lopt.rules import l2l_lstm
from lopt.tasks import quadratic_family

RULE = l2l_lstm(hidden=4, layers=1)
FAMILY = quadratic_family(dim=3)
EST = TBPTT(num_runs=4, truncation=3, horizon=8)


def _run(tmp_path, name, num_steps, **kw):
    return train(RULE, FAMILY, EST, num_steps=num_steps, seed=7, progress=False,
                 meta_optimizer=default_meta_optimizer(1e-2),
                 checkpoint_path=str(tmp_path / name), log_path=str(tmp_path / f"{name}.jsonl"),
                 **kw)


def test_resume_reproduces_an_uninterrupted_run_exactly(tmp_path):
    full = _run(tmp_path, "full", 8, checkpoint_every=100)
    _run(tmp_path, "split", 5, checkpoint_every=100)  # the "interrupted" run stops after 5 steps
    resumed = _run(tmp_path, "split", 8, checkpoint_every=100)
    assert len(resumed.history) == 3
    for a, b in zip(jax.tree.leaves(full.state), jax.tree.leaves(resumed.state)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    full_log = [json.loads(item) for item in open(tmp_path / "full.jsonl")]
    split_log = [json.loads(item) for item in open(tmp_path / "split.jsonl")]
    assert [r["step"] for r in split_log] == list(range(8))
    assert full_log == split_log
    assert full.history[-1]["meta_loss"] != full.history[0]["meta_loss"]


def test_resume_after_a_log_written_past_the_checkpoint(tmp_path):
    """A crash between checkpoints leaves log lines the resumed run recomputes; none are doubled."""
    _run(tmp_path, "crash", 6, checkpoint_every=4)
    assert Checkpoints(str(tmp_path / "crash")).latest_step() == 6
    # Simulate the crash: the step-6 checkpoint was never written, only the one at step 4.
    shutil.rmtree(tmp_path / "crash" / "6")
    resumed = _run(tmp_path, "crash", 6, checkpoint_every=4)
    steps = [json.loads(item)["step"] for item in open(tmp_path / "crash.jsonl")]
    assert steps == list(range(6)) and len(resumed.history) == 2


def test_non_finite_meta_gradient_skips_the_step():
    base = EST.build(RULE, FAMILY)

    def grad(theta, state, key):
        g, state, metrics = base.grad(theta, state, key)
        poisoned = jax.random.uniform(key) < 2.0  # always true, but traced
        g = jax.tree.map(lambda x: jnp.where(poisoned, jnp.nan, x), g)
        return g, state, metrics

    result = train(RULE, FAMILY, Estimator(base.init, grad), num_steps=2, seed=7, progress=False)
    theta0 = RULE.init_meta(jax.random.split(jax.random.PRNGKey(7), 3)[0])
    for a, b in zip(jax.tree.leaves(theta0), jax.tree.leaves(result.theta)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert [h["skipped"] for h in result.history] == [1, 1]


def test_checkpoint_for_another_rule_is_refused(tmp_path):
    _run(tmp_path, "a", 1)
    other = l2l_lstm(hidden=4, layers=1, output_scale=0.2)
    object.__setattr__(other, "name", "something_else")
    with pytest.raises(ValueError, match="holds rule"):
        train(other, FAMILY, EST, num_steps=2, progress=False,
              checkpoint_path=str(tmp_path / "a"))


def test_checkpoint_structure_mismatch_is_a_clear_error(tmp_path):
    result = _run(tmp_path, "b", 1)
    wrong = result.state._replace(theta={"theta": jnp.zeros(3)})
    with pytest.raises(FileFormatError, match="does not hold this run's state"):
        Checkpoints(str(tmp_path / "b")).restore(wrong)
    assert result.state.step == 1


def test_only_the_last_checkpoints_are_kept_and_a_legacy_npz_run_goes_on(tmp_path):
    """orbax keeps the last two; a run begun by lopt 0.1 (one .npz file) resumes from that
    file, bit for bit, and keeps writing it."""
    full = _run(tmp_path, "keep", 6, checkpoint_every=1)
    assert Checkpoints(str(tmp_path / "keep")).all_steps() == [5, 6]
    old = str(tmp_path / "old.npz")
    first = _run(tmp_path, "first", 3)
    save_pytree(old, first.state, {"rule": RULE.name, "config": RULE.config, "step": 3})
    resumed = train(RULE, FAMILY, EST, num_steps=6, seed=7, progress=False,
                    meta_optimizer=default_meta_optimizer(1e-2), checkpoint_path=old)
    for a, b in zip(jax.tree.leaves(full.state), jax.tree.leaves(resumed.state)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert read_metadata(old)["step"] == 6


def test_meta_validation_is_logged_on_schedule_and_never_changes_training(tmp_path):
    from lopt.evaluation import loss_curves, meta_validation
    from lopt.evaluation.protocol import META_VALID_SEED

    validate = meta_validation(RULE, FAMILY, num_tasks=3, num_steps=4)
    plain = _run(tmp_path, "plain", 5)
    checked = _run(tmp_path, "checked", 5, validate=validate, validate_every=3)
    for a, b in zip(jax.tree.leaves(plain.state), jax.tree.leaves(checked.state)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    log = [json.loads(item) for item in open(tmp_path / "checked.jsonl")]
    assert [r["step"] for r in log if "valid/mean" in r] == [2, 4]  # every 3rd and the last
    curves = np.asarray(loss_curves(RULE, checked.theta, FAMILY, jax.random.PRNGKey(
        META_VALID_SEED), num_tasks=3, num_steps=4))
    np.testing.assert_allclose(log[-1]["valid/mean"], curves[-1].mean(), rtol=1e-6)
    assert log[-1][f"valid/{FAMILY.name}"] == log[-1]["valid/mean"]
    assert log[-1]["valid/diverged"] == 0
    with pytest.raises(ValueError, match="validate_every"):
        _run(tmp_path, "bad", 1, validate=validate, validate_every=0)
