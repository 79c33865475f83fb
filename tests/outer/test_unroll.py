import jax
import numpy as np

from lopt.outer import UnrollOptions, broadcast_runs, init_inner_batch, truncated_unroll
from lopt.rules import sgd
from lopt.tasks import quadratic_family


def test_runs_reset_at_the_horizon_and_start_staggered():
    rule, family = sgd(0.01), quadratic_family(dim=4)
    horizon, num_tasks = 7, 16
    batch = init_inner_batch(rule, family, {}, jax.random.PRNGKey(0), num_tasks, horizon)
    starts = np.asarray(batch.step)
    assert starts.min() >= 0 and starts.max() < horizon and len(set(starts.tolist())) > 3

    opts = UnrollOptions(num_runs=num_tasks, truncation=10, horizon=horizon)
    new, out = jax.jit(lambda b: truncated_unroll(rule, family, broadcast_runs({}, num_tasks), b,
                                                  opts))(batch)
    assert out.loss.shape == (10, num_tasks)
    resets = np.asarray(out.reset)
    for i in range(num_tasks):
        expected = [(starts[i] + t + 1) % horizon == 0 for t in range(10)]
        np.testing.assert_array_equal(resets[:, i], expected)
    np.testing.assert_array_equal(np.asarray(new.step), (starts + 10) % horizon)
    # A reset draws a new instance; a run that did not reach the horizon keeps its own.
    for i in range(num_tasks):
        assert np.allclose(new.cfg["W"][i], batch.cfg["W"][i]) == (not resets[:, i].any())


def test_unrolled_sgd_equals_a_python_loop():
    rule, family = sgd(0.02), quadratic_family(dim=3)
    batch = init_inner_batch(rule, family, {}, jax.random.PRNGKey(0), 2, 100, stagger=False)
    _, out = truncated_unroll(rule, family, broadcast_runs({}, 2), batch,
                              UnrollOptions(num_runs=2, truncation=5, horizon=100))
    for i in range(2):
        W, y = np.asarray(batch.cfg["W"][i]), np.asarray(batch.cfg["y"][i])
        x = np.asarray(batch.params["theta"][i], np.float64)
        for t in range(5):
            r = W @ x - y
            np.testing.assert_allclose(out.loss[t, i], r @ r, rtol=1e-5)
            x = x - 0.02 * 2 * W.T @ r
            r = W @ x - y
            np.testing.assert_allclose(out.meta_loss[t, i], r @ r, rtol=1e-5)
