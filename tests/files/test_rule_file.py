import jax
import jax.numpy as jnp
import numpy as np
import pytest

import lopt
from lopt.files.pytree_file import save_pytree
from lopt.rules import adam, l2l_lstm


def test_save_load_round_trips_architecture_hyperparameters_and_theta(tmp_path):
    rule = l2l_lstm(hidden=7, layers=3, output_scale=0.05)
    theta = rule.init_meta(jax.random.PRNGKey(4))
    path = str(tmp_path / "opt.lopt")
    lopt.save(path, rule, theta, extra={"note": "x"})
    loaded_rule, loaded_theta = lopt.load(path)
    assert loaded_rule.name == "l2l_lstm" and loaded_rule.config == rule.config
    for a, b in zip(jax.tree.leaves(theta), jax.tree.leaves(loaded_theta)):
        np.testing.assert_array_equal(a, b)
    params = {"x": jax.numpy.linspace(-1, 1, 5)}
    g = {"x": jax.numpy.linspace(0.3, -2, 5)}
    u1, _ = rule.update(theta, rule.init(theta, params), g, params)
    u2, _ = loaded_rule.update(loaded_theta, loaded_rule.init(loaded_theta, params), g, params)
    np.testing.assert_array_equal(u1["x"], u2["x"])
    tx = lopt.as_optax(path)
    u3, _ = tx.update(g, tx.init(params), params)
    np.testing.assert_array_equal(u1["x"], u3["x"])


def test_hand_designed_rules_round_trip(tmp_path):
    path = str(tmp_path / "adam.lopt")
    lopt.save(path, adam(0.02, b1=0.8), {})
    rule, theta = lopt.load(path)
    assert rule.config["learning_rate"] == 0.02 and rule.config["b1"] == 0.8 and theta == {}


def test_loading_a_foreign_file_is_a_clear_error(tmp_path):
    path = str(tmp_path / "other.npz")
    save_pytree(path, {"a": np.zeros(2)}, {"format": "something"})
    with pytest.raises(ValueError, match="not a saved lopt rule"):
        lopt.load(path)


def test_atomic_write_leaves_the_old_file_when_saving_fails(tmp_path, monkeypatch):
    path = tmp_path / "ckpt.npz"
    save_pytree(str(path), {"a": np.ones(3)}, {"v": 1})
    before = path.read_bytes()

    def crash_midway(f, **arrays):
        f.write(b"half a file")
        raise OSError("disk full")

    monkeypatch.setattr("lopt.files.pytree_file.np.savez", crash_midway)
    with pytest.raises(OSError, match="disk full"):
        save_pytree(str(path), {"a": np.zeros(3)}, {"v": 2})
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.npz"]


def test_a_non_finite_theta_is_not_saved(tmp_path):
    rule = l2l_lstm(hidden=4, layers=1)
    theta = rule.init_meta(jax.random.PRNGKey(0))
    theta["cells"][0]["w"] = theta["cells"][0]["w"].at[0, 0].set(np.nan)
    path = tmp_path / "nan.lopt"
    with pytest.raises(ValueError, match=r"theta\['cells'\]\[0\]\['w'\] holds NaN or inf"):
        lopt.save(str(path), rule, theta)
    assert not path.exists() and list(tmp_path.iterdir()) == []


# Issue 36, item 5: a file keeps the meaning it was made with (lopt.files.semantics).
def _adafac_file(path, monkeypatch, version):
    from lopt.files import rule_file

    rule = lopt.rules.adafac_mlp(hidden=4, layers=2)
    theta = rule.init_meta(jax.random.PRNGKey(3))
    with monkeypatch.context() as m:
        m.setattr(rule_file, "current_version", lambda name: version)
        lopt.save(path, rule, theta)
    return theta


def _update(rule, theta):
    rng = np.random.default_rng(0)
    params = {"w": jnp.asarray(rng.normal(size=(5, 3)), jnp.float32)}
    grads = {"w": jnp.asarray(1e-3 * rng.normal(size=(5, 3)), jnp.float32)}
    state = rule.init(theta, params)
    return np.asarray(rule.update(theta, state, grads, params, jnp.float32(1.0))[0]["w"])


def test_a_file_records_its_semantics_and_an_earlier_one_computes_as_it_was_made(
        tmp_path, monkeypatch):
    from lopt.files.rule_file import load_metadata
    from lopt.files.semantics import current_version

    now = str(tmp_path / "now.lopt")
    lopt.save(now, lopt.rules.adafac_mlp(hidden=4, layers=2),
              lopt.rules.adafac_mlp(hidden=4, layers=2).init_meta(jax.random.PRNGKey(3)))
    assert load_metadata(now)["semantics"] == current_version("adafac_mlp") == 2
    old = str(tmp_path / "old.lopt")
    theta = _adafac_file(old, monkeypatch, 1)  # made before the features changed
    rule, loaded = lopt.load(old)
    assert rule.config["feature_semantics"] == "lopt_v1"
    v1 = lopt.rules.adafac_mlp(hidden=4, layers=2, feature_semantics="lopt_v1")
    reference = lopt.rules.adafac_mlp(hidden=4, layers=2)
    np.testing.assert_array_equal(_update(rule, loaded), _update(v1, theta))
    assert not np.allclose(_update(rule, loaded), _update(reference, theta), rtol=1e-4)


def test_a_file_of_a_semantics_this_lopt_cannot_compute_is_refused_in_one_line(
        tmp_path, monkeypatch):
    from lopt.files import semantics
    from lopt.files.errors import FileFormatError

    newer = str(tmp_path / "newer.lopt")
    _adafac_file(newer, monkeypatch, 7)
    with pytest.raises(FileFormatError, match="semantics version 7; this lopt computes up to "
                                              "version 2: upgrade lopt"):
        lopt.load(newer)
    dropped = str(tmp_path / "dropped.lopt")
    _adafac_file(dropped, monkeypatch, 1)
    monkeypatch.setitem(semantics.SEMANTICS, "adafac_mlp", (3, {1: None, 2: {}}))
    with pytest.raises(FileFormatError, match="semantics version 1, which this lopt "
                                              r"\(version 3\) cannot compute"):
        lopt.load(dropped)
