"""`lopt import` of published weights, on files the reference code wrote
(tests/fixtures/reference/make_fixtures.py): each maps onto its rule and loads offline; a file
of another layout, a truncated or a foreign file is one line naming it, exit 2, nothing written."""
import os
import shutil

import jax
import numpy as np
import pytest

import lopt
from lopt.cli import main
from lopt.files import layouts, published
from lopt.files.errors import FileFormatError
from lopt.files.rule_file import load_metadata

FIXTURES = os.path.join(os.path.dirname(__file__), "..", "fixtures", "reference")
RULE_OF = {"adafac_mlp": "adafac_mlp", "celo": "celo_reference", "celo2": "celo2",
           "celo2_base": "celo2_base", "pylo_adafac": "adafac_mlp", "pylo_celo2": "celo2"}


def reference_file(name):
    if name.startswith("pylo_"):  # PyLO: a Hugging Face folder written by save_pretrained
        return os.path.join(FIXTURES, name, "model.safetensors")
    return os.path.join(FIXTURES, f"{name}.theta.state")


def tensors(source):
    path = reference_file(source)
    if source.startswith("pylo_"):
        return layouts.read_safetensors(path)
    return layouts.flat_names(layouts.read_msgpack(path))


@pytest.mark.parametrize("source", sorted(RULE_OF))
def test_import_writes_a_lopt_file_that_as_optax_loads(source, tmp_path, capsys):
    out = tmp_path / f"{source}.lopt"
    assert main(["import", source, reference_file(source), "--out", str(out)]) == 0
    assert "wrote" in capsys.readouterr().out
    rule, theta = lopt.load(str(out))
    assert rule.name == RULE_OF[source]
    assert load_metadata(str(out))["extra"]["imported_from"]["source"] == source
    # every tensor of the reference's file is in theta, with its values
    ref = tensors(source)
    ours = jax.tree.leaves(theta["mlp"] if source == "pylo_adafac" else theta)  # + code's decays
    assert sorted(np.asarray(x).size for x in ours) == sorted(x.size for x in ref.values())
    assert np.isclose(sum(float(np.sum(x)) for x in ours),
                      sum(float(np.sum(x)) for x in ref.values()), rtol=1e-6)
    tx = lopt.as_optax(str(out), num_steps=10)
    params = {"w": np.ones((3, 4), np.float32), "b": np.zeros((4,), np.float32)}
    updates, _ = jax.jit(tx.update)(params, jax.jit(tx.init)(params), params, value=1.0)
    assert all(np.all(np.isfinite(u)) for u in jax.tree.leaves(updates))


@pytest.mark.parametrize("source,file,first_problem", [
    ("celo2", "adafac_mlp", "tensor ff_mod_stack/~/w0__0 (1, 8) is missing"),
    ("celo", "celo2", "is missing"),
    ("celo2", "celo", "unexpected tensor lstm_init_state"),
    ("adafac_mlp", "celo2", "tensor momentum_decays (3,) is missing"),
    ("pylo_celo2", "pylo_adafac", "tensor w0.0 (1, 8) is missing"),
    ("pylo_adafac", "pylo_celo2", "is missing"),
    ("pylo_celo2", "celo2", "not a safetensors file"),
    ("celo2", "pylo_celo2", "not a flax msgpack checkpoint"),
])
def test_a_file_of_another_layout_names_the_first_mismatch(source, file, first_problem,
                                                           tmp_path, capsys):
    out = tmp_path / "x.lopt"
    assert main(["import", source, reference_file(file), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert first_problem in err and reference_file(file) in err and err.count("\n") == 1
    assert not out.exists()


def test_truncated_and_foreign_files_are_one_line(tmp_path, capsys):
    truncated = tmp_path / "theta.state"
    data = open(reference_file("celo2"), "rb").read()
    truncated.write_bytes(data[: len(data) // 2])
    foreign = tmp_path / "fixture.npz"
    shutil.copy(os.path.join(FIXTURES, "celo2.npz"), foreign)
    for path, detail in ((truncated, "not a flax msgpack checkpoint"),
                         (foreign, "not a flax msgpack checkpoint"),
                         (tmp_path / "absent.state", "no such file")):
        out = tmp_path / "x.lopt"
        assert main(["import", "celo2", str(path), "--out", str(out)]) == 2
        err = capsys.readouterr().err
        assert detail in err and str(path) in err and err.count("\n") == 1
        assert not out.exists()
    with pytest.raises(FileFormatError, match="not a flax msgpack"):
        published.import_weights("celo2", str(truncated), str(tmp_path / "y.lopt"))


def test_unknown_source_is_one_line(tmp_path, capsys):
    assert main(["import", "velo", reference_file("celo2"), "--out",
                 str(tmp_path / "x.lopt")]) == 2
    assert "source must be one of" in capsys.readouterr().err


def _velo_copy(tmp_path, edit=None):
    folder = tmp_path / "velo"
    shutil.copytree(os.path.join(FIXTURES, "velo"), folder)
    if edit:
        text = (folder / "config.gin").read_text()
        (folder / "config.gin").write_text(edit(text))
    return folder


@pytest.mark.parametrize("edit,problem", [
    (lambda t: t.replace("HyperV2.with_p = True", "HyperV2.with_p = False"),
     "binds HyperV2.with_p = False; lopt's velo implements only True"),
    (lambda t: t.replace("run_train.lopt = @HyperV2()", "run_train.lopt = @NNAdam()"),
     "run_train.lopt is '@NNAdam()'"),
    (lambda t: t.replace("HyperV2.param_inits = 256", "HyperV2.param_inits = 128"),
     "its tensors make param_inits = 256, config.gin says 128"),
])
def test_a_lo_checkpoint_folder_lopt_cannot_run_is_one_line(edit, problem, tmp_path, capsys):
    folder = _velo_copy(tmp_path, edit)
    out = tmp_path / "velo.lopt"
    assert main(["import", "lo-checkpoint", str(folder), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert problem in err and err.count("\n") == 1 and not out.exists()


def test_a_lo_checkpoint_needs_a_folder_with_config_and_params(tmp_path, capsys):
    folder = _velo_copy(tmp_path)
    (folder / "params").unlink()
    for path, problem in ((folder, "params: no such file"),
                          (folder / "config.gin", "not a folder")):
        assert main(["import", "lo-checkpoint", str(path), "--out", str(tmp_path / "v.lopt")]) == 2
        assert problem in capsys.readouterr().err


def test_imported_velo_steps_a_flax_nnx_model(tmp_path):
    import flax.nnx as nnx
    import optax

    out = tmp_path / "velo.lopt"
    published.import_weights("lo-checkpoint", os.path.join(FIXTURES, "velo"), str(out))
    model = nnx.Linear(8, 3, rngs=nnx.Rngs(0))
    optimizer = nnx.Optimizer(model, lopt.as_optax(str(out), num_steps=5), wrt=nnx.Param)
    x = jax.random.normal(jax.random.PRNGKey(0), (16, 8))
    loss_fn = lambda m: optax.l2_loss(m(x) - 1.0).mean()

    @nnx.jit
    def train_step(model, optimizer):
        loss, grads = nnx.value_and_grad(loss_fn)(model)
        optimizer.update(model, grads, value=loss)

    before = np.asarray(model.kernel[...]).copy()
    for _ in range(3):
        train_step(model, optimizer)
    assert all(np.all(np.isfinite(v)) for v in jax.tree.leaves(nnx.state(model, nnx.Param)))
    assert not np.allclose(np.asarray(model.kernel[...]), before)


def _with_momentum_offsets(tmp_path, offsets):
    """The reference adafac_mlp file with its learned momentum decay offsets replaced."""
    from flax import serialization

    tree = layouts.read_msgpack(reference_file("adafac_mlp"))

    def edit(node):
        for key, value in node.items():
            if key == "momentum_decays":
                node[key] = np.asarray(offsets, np.float32)
            elif isinstance(value, dict):
                edit(value)
    edit(tree)
    path = tmp_path / "edited.theta.state"
    path.write_bytes(serialization.msgpack_serialize(tree))
    return str(path)


def test_an_imported_adafac_file_keeps_learned_optimizations_unclipped_momentum_decays(
        tmp_path, capsys):
    # δ = 0.25: the 0.9 decay becomes −0.218, which learned_optimization uses as it is
    source = _with_momentum_offsets(tmp_path, [0.25, 0.0, 0.0])
    out = tmp_path / "neg.lopt"
    assert main(["import", "adafac_mlp", source, "--out", str(out)]) == 0
    rule, theta = lopt.load(str(out))
    assert rule.config["clip_momentum_decays"] is False
    assert float(theta["decays"]["momentum"][0]) == 0.25
    # δ = 0.35: decay 1 − 0.1·e^3.5 = −2.3; the reference's momentum grows without bound
    capsys.readouterr()
    source = _with_momentum_offsets(tmp_path, [0.35, 0.0, 0.0])
    assert main(["import", "adafac_mlp", source, "--out", str(tmp_path / "bad.lopt")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "momentum_decays[0]" in err and "-2.3" in err, err
    assert not (tmp_path / "bad.lopt").exists()
