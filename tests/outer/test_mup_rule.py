"""μP for learned rules: the μP MLP's parameterization and multipliers, and a μP-scaled rule
that meta-gradients pass through (what lopt's outer loop differentiates)."""
import jax
import jax.numpy as jnp
import numpy as np

import lopt
from lopt.tasks import mup_mlp_family
from lopt.tasks.mup import mup_multipliers


def test_mup_mlp_is_tensor_programs_v_table_8():
    family = mup_mlp_family("digits", width=256, depth=3)
    task = family.build(family.sample(jax.random.PRNGKey(0)))
    params = task.init(jax.random.PRNGKey(1))
    assert sorted(params) == ["Dense_0", "Dense_1", "Dense_2", "Dense_3"]
    assert np.all(np.asarray(params["Dense_3"]["kernel"]) == 0)  # zero readout
    for name, fan_in in (("Dense_0", 64), ("Dense_1", 256), ("Dense_2", 256)):
        std = float(np.std(np.asarray(params[name]["kernel"])))
        # truncated at 2σ and rescaled, as flax's variance_scaling: std 1/√fan-in
        np.testing.assert_allclose(std, 1 / np.sqrt(fan_in), rtol=0.1)
    scales = mup_multipliers(params)
    assert scales["Dense_1"]["kernel"] == scales["Dense_2"]["kernel"] == 1 / 256
    assert scales["Dense_0"]["kernel"] == scales["Dense_3"]["kernel"] == 1.0
    assert all(scales[n]["bias"] == 1.0 for n in scales)


def test_mup_scaled_rule_scales_each_update_and_passes_meta_gradients():
    # Any per-parameter rule (μLO's own, adafac_mlp, is checked against its reference in
    # test_conformance); this one's meta-gradient compiles in 1 s rather than adafac_mlp's 15.
    rule = lopt.mup.mup_rule(lopt.rules.per_parameter_mlp(), mup_multipliers)
    family = mup_mlp_family("digits", width=8, depth=2, batch_size=16)
    inner = lopt.rules.per_parameter_mlp()
    theta = rule.init_meta(jax.random.PRNGKey(0))
    params = family.build(family.sample(jax.random.PRNGKey(0))).init(jax.random.PRNGKey(1))
    grads = jax.tree.map(jnp.ones_like, params)

    # the meta-gradient of a loss after one μP-scaled step reaches the MLP
    def meta_loss(theta):
        updates, _ = rule.update(theta, rule.init(theta, params), grads, params, 1.0)
        return sum(jnp.sum(jnp.square(p + 100.0 * u - 0.5)) for p, u in
                   zip(jax.tree.leaves(params), jax.tree.leaves(updates)))

    @jax.jit  # one compile for all three
    def both(theta):
        return (rule.update(theta, rule.init(theta, params), grads, params)[0],
                inner.update(theta, inner.init(theta, params), grads, params)[0],
                jax.grad(meta_loss)(theta))

    ours, plain, meta_grads = both(theta)
    for path, u in jax.tree_util.tree_leaves_with_path(ours):
        layer, kind = path[0].key, path[1].key
        m = mup_multipliers(params)[layer][kind]
        np.testing.assert_allclose(u, m * plain[layer][kind], rtol=1e-6)
    for path, g in jax.tree_util.tree_leaves_with_path(meta_grads):
        assert np.all(np.isfinite(g)), jax.tree_util.keystr(path)
    assert all(np.any(np.asarray(g) != 0) for g in jax.tree.leaves(meta_grads))
    assert rule.name == inner.name  # a saved file holds the rule; the model brings μP
