"""Estimator options: log-uniform horizons, held-out objective, weighting and loss clipping."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lopt.outer import (
    TBPTT,
    Horizon,
    StepOutput,
    UnrollOptions,
    broadcast_runs,
    init_inner_batch,
    truncated_unroll,
)
from lopt.rules import sgd
from lopt.tasks import Task, TaskFamily, quadratic_family


def test_log_uniform_horizon_covers_its_range_evenly_in_log_space():
    h = Horizon(10, 1000)
    samples = np.asarray(jax.vmap(h.sample)(jax.random.split(jax.random.PRNGKey(0), 20000)))
    assert samples.min() == 10 and samples.max() == 1000
    # log-uniform: a third of the mass in each decade-and-a-half third of [log 10, log 1001]
    edges = np.exp(np.linspace(np.log(10), np.log(1001), 4))
    counts = np.histogram(samples, bins=edges)[0] / len(samples)
    np.testing.assert_allclose(counts, 1 / 3, atol=0.02)
    assert int(Horizon(7).sample(jax.random.PRNGKey(1))) == 7


def test_runs_reset_at_their_own_sampled_horizon():
    rule, family = sgd(0.01), quadratic_family(dim=2)
    horizon = Horizon(3, 9)
    batch = init_inner_batch(rule, family, {}, jax.random.PRNGKey(0), 12, horizon, stagger=False)
    h = np.asarray(batch.horizon)
    assert len(set(h.tolist())) > 2 and h.min() >= 3 and h.max() <= 9
    opts = UnrollOptions(num_runs=12, truncation=12, horizon=horizon.length,
                         max_horizon=horizon.max_length)
    _, out = truncated_unroll(rule, family, broadcast_runs({}, 12), batch, opts)
    first_reset = np.argmax(np.asarray(out.reset), axis=0) + 1
    np.testing.assert_array_equal(first_reset, h)


def _doubled_eval_family():
    base = quadratic_family(dim=3)

    def build(cfg):
        task = base.build(cfg)
        return Task(init=task.init, loss=task.loss,
                    valid_loss=lambda p, k: 2.0 * task.loss(p, k) + 1.0)

    return TaskFamily(sample=base.sample, build=build, name="doubled")


def test_eval_objective_uses_the_held_out_loss():
    rule, family = sgd(0.01), _doubled_eval_family()
    batch = init_inner_batch(rule, family, {}, jax.random.PRNGKey(0), 4, 50)
    outs = {obj: truncated_unroll(rule, family, broadcast_runs({}, 4), batch, UnrollOptions(
        num_runs=4, truncation=5, horizon=50, objective=obj))[1] for obj in ("train", "valid")}
    np.testing.assert_allclose(outs["valid"].meta_loss, 2 * outs["train"].meta_loss + 1,
                               rtol=1e-6)
    np.testing.assert_allclose(outs["valid"].loss, outs["train"].loss)


def test_eval_objective_without_held_out_data_is_an_error():
    rule, family = sgd(0.01), quadratic_family(dim=3)
    batch = init_inner_batch(rule, family, {}, jax.random.PRNGKey(0), 2, 50)
    with pytest.raises(ValueError, match="valid_loss"):
        truncated_unroll(rule, family, broadcast_runs({}, 2), batch,
                         UnrollOptions(num_runs=2, truncation=2, horizon=50, objective="valid"))


def test_weighting_and_loss_clipping_of_the_meta_loss_terms():
    meta = jnp.array([[1.0, 5.0], [2.0, jnp.nan], [4.0, 8.0]])
    out = StepOutput(loss=meta, meta_loss=meta, reset=jnp.zeros_like(meta, bool),
                     finite=jnp.isfinite(meta))
    mean = TBPTT(truncation=3).step_terms(out)
    np.testing.assert_allclose(mean.sum(0), [7 / 3, 13 / 3])  # the NaN step contributes 0
    last = TBPTT(truncation=3, weighting="last").step_terms(out)
    np.testing.assert_allclose(last.sum(0), [4.0, 8.0])
    clipped = TBPTT(truncation=3, loss_clip=3.0).step_terms(out)
    np.testing.assert_allclose(clipped.sum(0), [(1 + 2 + 3) / 3, (3 + 3) / 3])


@pytest.mark.parametrize("kwargs,field", [({"sigma": 0.0}, "sigma"),
                                          ({"max_horizon": 5}, "max_horizon"),
                                          ({"objective": "test"}, "objective"),
                                          ({"loss_clip": -1.0}, "loss_clip"),
                                          ({"truncation": 0}, "truncation")])
def test_bad_estimator_options_name_the_field(kwargs, field):
    from lopt.outer import PES

    with pytest.raises(ValueError, match=field):
        PES(horizon=10, **kwargs)


def test_rules_that_want_it_get_the_held_out_loss_in_inner_runs():
    from lopt.rules import UpdateRule

    def update(theta, state, grads, params, loss):
        # Moves every coordinate by (held-out − training loss), which the test can recompute.
        return jax.tree.map(lambda p: jnp.zeros_like(p) + (loss["valid"] - loss["train"]) * 1e-3,
                            params), state

    rule = UpdateRule(init_meta=lambda k: {}, init=lambda th, p: {}, update=update,
                      name="probe", wants_valid_loss=True)
    family = _doubled_eval_family()
    batch = init_inner_batch(rule, family, {}, jax.random.PRNGKey(0), 2, 50, stagger=False)
    new, out = truncated_unroll(rule, family, broadcast_runs({}, 2), batch,
                                UnrollOptions(num_runs=2, truncation=1, horizon=50))
    moved = np.asarray(new.params["theta"] - batch.params["theta"])
    expected = (np.asarray(out.loss[0]) + 1.0) * 1e-3  # eval − train = train + 1 here
    np.testing.assert_allclose(moved, np.broadcast_to(expected[:, None], moved.shape), rtol=1e-4)


def test_estimators_hold_their_unroll_options_and_take_them_flat_as_before():
    """Issue 38: an estimator holds one UnrollOptions (the only place its ranges are checked);
    the flat spelling of lopt 0.2 builds the same object, replace() edits the held one, and
    the CLI's flags for it are the held options' plus its own."""
    import dataclasses

    from lopt.outer import ES, PES, TBPTT
    from lopt.outer.base import options_of
    from lopt.outer.unroll import UnrollOptions

    held = UnrollOptions(num_runs=4, truncation=5)
    assert TBPTT(unroll=held) == TBPTT(num_runs=4, truncation=5)
    assert not isinstance(TBPTT(), UnrollOptions)
    pes = PES(num_runs=4, sigma=0.1)
    assert pes.unroll == UnrollOptions(num_runs=4) and pes.num_runs == 4
    assert dataclasses.replace(pes, num_runs=8).unroll == UnrollOptions(num_runs=8)
    assert dataclasses.replace(pes, num_runs=8).sigma == 0.1
    full = ES(horizon=7, full_horizon=True)
    assert full.unroll.truncation == 7 and full.unroll.stagger is False
    assert set(options_of(PES)) == set(options_of(UnrollOptions)) | {"sigma"}
    with pytest.raises(ValueError, match="num_runs must be an integer"):
        TBPTT(num_runs=0)
    with pytest.raises(AttributeError):
        _ = TBPTT().no_such_option
