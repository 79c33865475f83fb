import jax
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
