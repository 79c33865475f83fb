"""Held-out means validation: the "valid" meta-objective and a rule's validation-loss input read the
validation split, never the test split (Metz et al. 2019's train vs validation outer objective).

The dataset's splits carry different labels (train 0, valid 1, test 2) and the linear
classifier's parameters are set to predict class 1, so the three losses differ by orders of
magnitude and each can be recognized by its value, computed here in numpy.
"""
import jax
import jax.numpy as jnp
import numpy as np

from lopt.outer.unroll import Horizon, init_inner, inner_step
from lopt.rules import UpdateRule
from lopt.tasks.datasets.base import with_splits
from lopt.tasks.models import Linear, linen_model, softmax_xent
from lopt.tasks.supervised import supervised_family

RNG = np.random.default_rng(0)
X = {split: RNG.normal(size=(n, 4)).astype(np.float32)
     for split, n in (("train", 30), ("valid", 10), ("test", 12))}
LABEL = {"train": 0, "valid": 1, "test": 2}
DATA = with_splits("three_labels", "classification",
                   *[(X[s], np.full(len(X[s]), LABEL[s], np.int32)) for s in LABEL],
                   num_classes=3, normalize="none")
FAMILY = supervised_family("three_labels_linear", DATA, linen_model(Linear(3), softmax_xent),
                           batch_size=64)
BIAS = np.array([0.0, 3.0, -1.0])  # zero weights: every example scores these logits


def xent(split):
    """Cross-entropy of the constant logits BIAS on a split whose labels are all LABEL[split]."""
    logp = BIAS - np.log(np.sum(np.exp(BIAS)))
    return -logp[LABEL[split]]


def predicting_one(params):
    assert jax.tree.map(jnp.shape, params) == {"Dense_0": {"kernel": (4, 3), "bias": (3,)}}
    return {"Dense_0": {"kernel": jnp.zeros((4, 3)), "bias": jnp.asarray(BIAS, jnp.float32)}}


def recording_rule():
    """A rule that takes no step and stores the held-out loss it is given in its state."""
    def update(theta, state, grads, params, loss):
        return jax.tree.map(jnp.zeros_like, grads), loss["valid"]

    return UpdateRule(init_meta=lambda key: {}, init=lambda theta, params: jnp.zeros(()),
                      update=update, name="recorder", wants_valid_loss=True)


def test_the_three_losses_are_distinct():
    assert len({round(xent(s), 3) for s in LABEL}) == 3


def test_eval_objective_and_rule_input_read_the_validation_split():
    rule = recording_rule()
    inst = init_inner(rule, FAMILY, {}, jax.random.PRNGKey(0), Horizon(10))
    inst = inst._replace(params=predicting_one(inst.params))
    task = FAMILY.build(inst.cfg)
    np.testing.assert_allclose(float(task.valid_loss(inst.params, jax.random.PRNGKey(1))),
                               xent("valid"), rtol=1e-5)
    np.testing.assert_allclose(float(task.loss(inst.params, jax.random.PRNGKey(1))),
                               xent("train"), rtol=1e-5)
    step = jax.jit(lambda inst, objective: inner_step(rule, FAMILY, {}, inst, objective=objective),
                   static_argnames="objective")
    new, out, _ = step(inst, objective="valid")
    np.testing.assert_allclose(float(out.meta_loss), xent("valid"), rtol=1e-5)
    np.testing.assert_allclose(float(new.rule_state), xent("valid"), rtol=1e-5)  # rule's input
    _, out_train, _ = step(inst, objective="train")
    np.testing.assert_allclose(float(out_train.meta_loss), xent("train"), rtol=1e-5)
    # The test split is only behind test_metrics.
    np.testing.assert_allclose(float(task.test_metrics(inst.params)["loss"]), xent("test"),
                               rtol=1e-5)


def test_lopt_0_1_names_of_the_validation_loss_still_work_with_a_warning():
    import warnings

    import pytest

    from lopt.outer import UnrollOptions
    from lopt.tasks import Task

    with pytest.warns(DeprecationWarning, match="valid_loss"):
        task = Task(init=lambda key: 0.0, loss=lambda p, key: 1.0, eval_loss=lambda p, key: 2.0)
    assert task.has_validation and task.valid_loss(0.0, None) == 2.0
    with pytest.warns(DeprecationWarning, match="'valid'"):
        assert UnrollOptions(objective="eval").objective == "valid"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert UnrollOptions(objective="valid").objective == "valid"
    with pytest.raises(ValueError, match="objective"):
        UnrollOptions(objective="test")
