"""The Python API's refusals name the argument or setting and what it allows, as the CLI's
do (issue 26 item 14); each call here fails before any compile."""
import jax
import jax.numpy as jnp
import pytest

import lopt
from lopt.evaluation import loss_curves
from lopt.outer import PES
from lopt.outer.train import train
from lopt.rules import adam, make_rule
from lopt.tasks import make_family

RULE = make_rule("per_parameter_mlp", hidden=4)
FAMILY = make_family("quadratic")
PES_SMALL = PES(num_runs=2, truncation=2, horizon=4)

CASES = [
    (lambda: make_rule("per_parameter_mlp", hidden="x"), TypeError,
     "rule 'per_parameter_mlp': hidden must be an integer (default 32); got 'x'"),
    (lambda: make_rule("per_parameter_mlp", hiddn=3), TypeError,
     "rule 'per_parameter_mlp' has no setting 'hiddn'; its settings: hidden,"),
    (lambda: make_rule("adam", learning_rate="fast"), TypeError,
     "learning_rate must be a number (default 0.001); got 'fast'"),
    (lambda: make_rule("celo2", orthogonalize_matrices=3), TypeError,
     "orthogonalize_matrices must be true or false"),
    (lambda: adam("x"), TypeError, "adam: learning_rate must be a number or an optax schedule"),
    (lambda: train("adam", FAMILY, PES_SMALL, num_steps=1), TypeError,
     "rule must be an UpdateRule (lopt.rules.make_rule(NAME)"),
    (lambda: train(RULE, "quadratic", PES_SMALL, num_steps=1), TypeError,
     "family must be a TaskFamily or a Mixture (lopt.tasks.make_family(NAME)); got str"),
    (lambda: train(RULE, FAMILY, None, num_steps=1), TypeError,
     "estimator must be an estimator config such as lopt.outer.PES(...)"),
    (lambda: train(RULE, FAMILY, PES_SMALL, num_steps="3"), ValueError,
     "num_steps must be a non-negative integer, got '3'"),
    (lambda: loss_curves(adam(1e-3), {}, FAMILY, jax.random.PRNGKey(0), num_tasks=1,
                         num_steps=0), ValueError, "num_steps must be a positive integer, got 0"),
    (lambda: loss_curves(adam(1e-3), {}, FAMILY, jax.random.PRNGKey(0), num_tasks=2.0,
                         num_steps=3), ValueError, "num_tasks must be a positive integer"),
    (lambda: lopt.save("/tmp/never-written.lopt", "adam", {}), TypeError,
     "rule must be an UpdateRule"),
]


@pytest.mark.parametrize("call,kind,said", CASES, ids=[c[2][:40] for c in CASES])
def test_python_api_refusals_name_the_argument(call, kind, said):
    with pytest.raises(kind) as raised:
        call()
    assert said in str(raised.value) and "\n" not in str(raised.value)


def test_schedules_and_arrays_are_still_learning_rates():
    import optax

    params = {"w": jnp.ones(3)}
    for lr in (optax.linear_schedule(1e-2, 0.0, 10), jnp.asarray(1e-2), 1):
        rule = adam(lr)
        updates, _ = rule.update({}, rule.init({}, params), params, params)
        assert jnp.all(updates["w"] < 0)
