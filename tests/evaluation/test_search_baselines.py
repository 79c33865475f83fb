"""Schedule-free AdamW measured at its averaged iterate, and Adam random search, against optax
run by hand on the same instances."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import optax.contrib

from lopt import rules
from lopt.evaluation import Instances, loss_curves, random_search, sample_log_uniform, score
from lopt.outer.unroll import Horizon, init_inner_batch
from lopt.tasks import make_family

FAMILY = make_family("quadratic")
STEPS, TASKS = 12, 3
KEY, TUNE_KEY = jax.random.PRNGKey(7), jax.random.PRNGKey(8)


def hand_curves(tx, key, eval_at=None, tasks=TASKS):
    """optax's own loop over each instance, the loss measured at ``eval_at(state, params)``."""
    batch = init_inner_batch(rules.sgd(0.1), FAMILY, {}, key, tasks, Horizon(STEPS + 1),
                             stagger=False)
    out = []
    for i in range(tasks):
        cfg = jax.tree.map(lambda x: x[i], batch.cfg)  # noqa: B023
        params = jax.tree.map(lambda x: x[i], batch.params)  # noqa: B023
        task = FAMILY.build(cfg)

        def loss(p):
            return task.train_loss(p, None, jax.random.PRNGKey(0))[0]  # noqa: B023

        state, row = tx.init(params), [float(loss(params))]
        for _ in range(STEPS):
            updates, state = tx.update(jax.grad(loss)(params), state, params)
            params = optax.apply_updates(params, updates)
            row.append(float(loss(params if eval_at is None else eval_at(state, params))))
        out.append(row)
    return np.array(out).T


def test_schedule_free_adamw_is_measured_at_the_averaged_iterate():
    rule = rules.schedule_free_adamw(0.05)
    got = np.asarray(loss_curves(rule, {}, FAMILY, KEY, num_tasks=TASKS, num_steps=STEPS))
    tx = optax.contrib.schedule_free_adamw(0.05)
    at_x = hand_curves(tx, KEY, optax.contrib.schedule_free_eval_params)
    at_y = hand_curves(tx, KEY)
    np.testing.assert_allclose(got, at_x, rtol=2e-4, atol=1e-6)
    # The two points differ: measuring at y would be a different (wrong) curve.
    assert np.max(np.abs(at_x - at_y)) > 1e-3


def test_random_search_keeps_the_trial_best_on_tuning_instances_and_reports_it_on_others():
    space = {"learning_rate": (1e-3, 1.0), "one_minus_b1": (1e-2, 0.5),
             "one_minus_b2": (1e-3, 0.1), "eps": (1e-8, 1e-4), "weight_decay": (1e-6, 1e-3)}
    result = random_search(rules.adam_search_rule, space, FAMILY, Instances(KEY, TASKS),
                           Instances(TUNE_KEY, 2), num_trials=5, num_steps=STEPS, name="adam rs")
    trials = sample_log_uniform(jax.random.PRNGKey(0), space, 5)
    for t in trials:
        for name, (low, high) in space.items():
            assert low <= t[name] <= high

    def optax_rule(t):
        return optax.adamw(t["learning_rate"], b1=1 - t["one_minus_b1"], b2=1 - t["one_minus_b2"],
                           eps=t["eps"], weight_decay=t["weight_decay"])

    tuning_scores = [score(hand_curves(optax_rule(t), TUNE_KEY, tasks=2)) for t in trials]
    best = trials[min(range(5), key=lambda i: tuning_scores[i])]
    assert result.hparams == best
    np.testing.assert_allclose(result.curves, hand_curves(optax_rule(best), KEY),
                               rtol=2e-4, atol=1e-6)
    assert len({round(t["learning_rate"], 8) for t in trials}) == 5
    assert result.summary()["hparams"] == best
    assert jnp.isfinite(result.curves).all()
