"""Every damaged, foreign or future file is one line naming it: lopt.load, as_optax, lopt eval,
and the training checkpoint a resume reads."""
import json
import os
import struct

import jax
import numpy as np
import pytest
from safetensors.numpy import load_file
from safetensors.numpy import save as st_save

import lopt
from lopt.cli import main
from lopt.files.errors import FileFormatError
from lopt.files.pytree_file import load_pytree, read_metadata, save_pytree
from lopt.files.rule_file import VERSION
from lopt.rules import l2l_lstm

RULE = l2l_lstm(hidden=4, layers=1)
THETA = RULE.init_meta(jax.random.PRNGKey(0))


def _good(tmp_path):
    path = str(tmp_path / "good.lopt")
    lopt.save(path, RULE, THETA, extra={"note": "x"})
    with open(path, "rb") as f:
        return f.read()


def _with_header(raw, edit):
    """The file with its lopt header replaced by ``edit(header)`` (tensor bytes untouched)."""
    (n,) = struct.unpack("<Q", raw[:8])
    outer = json.loads(raw[8:8 + n])
    outer["__metadata__"]["lopt"] = json.dumps(edit(json.loads(outer["__metadata__"]["lopt"])))
    text = json.dumps(outer).encode()
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + raw[8 + n:]


def _v2(header):
    """The header as format version 2 wrote it: no header checksum."""
    return {**{k: v for k, v in header.items() if k != "header_sha256"}, "version": 2}


def _flip(raw, at):
    b = bytearray(raw)
    b[at] ^= 0x10
    return bytes(b)


DAMAGE = {
    "empty": (lambda raw: b"", "is empty"),
    "truncated in the header": (lambda raw: raw[:100], "truncated"),
    "truncated in the tensors": (lambda raw: raw[:-3], "damaged tensor data"),
    "a bit flipped in theta": (lambda raw: _flip(raw, len(raw) - 5), "checksum mismatch"),
    "a bit flipped in the length": (lambda raw: _flip(raw, 2), "truncated"),
    "foreign bytes": (lambda raw: b"\x89PNG\r\n\x1a\n" + bytes(200), "not a lopt rule file"),
    "a foreign safetensors file": (lambda raw: st_save({"w": np.zeros(3, np.float32)}),
                                   "without a lopt header"),
    "a newer format version": (lambda raw: _with_header(raw, lambda h: {**h, "version": 99}),
                               "newer lopt (format version 99"),
    "a header of the wrong type": (lambda raw: _with_header(raw, lambda h: [h]),
                                   "must be a JSON object"),
    "config of the wrong type": (lambda raw: _with_header(raw, lambda h: {**h, "config": [1]}),
                                 "'config' must be a dict"),
    "no rule": (lambda raw: _with_header(raw, lambda h: {k: v for k, v in h.items()
                                                         if k != "rule"}), "no 'rule'"),
    # version 2 headers (no header checksum) reach the rule and config checks
    "an unknown rule": (lambda raw: _with_header(raw, lambda h: {**_v2(h), "rule": "velo"}),
                        "cannot build"),
    "a config that does not fit theta": (lambda raw: _with_header(
        raw, lambda h: {**_v2(h), "config": {**h["config"], "hidden": 8}}), "expected"),
    # format 3: the checksum covers the header, so any edit of it is refused
    "an edited config": (lambda raw: _with_header(
        raw, lambda h: {**h, "config": {**h["config"], "hidden": 8}}),
        "checksum mismatch: the header"),
    "an edited rule name": (lambda raw: _with_header(raw, lambda h: {**h, "rule": "rnnprop"}),
                            "checksum mismatch: the header"),
    "edited provenance": (lambda raw: _with_header(raw, lambda h: {**h, "extra": {}}),
                          "checksum mismatch: the header"),
}


@pytest.mark.parametrize("kind", list(DAMAGE))
def test_a_damaged_rule_file_is_one_line_naming_it(tmp_path, kind, capsys):
    damage, problem = DAMAGE[kind]
    path = str(tmp_path / "bad.lopt")
    with open(path, "wb") as f:
        f.write(damage(_good(tmp_path)))
    for load in (lopt.load, lopt.as_optax):
        with pytest.raises(FileFormatError) as err:
            load(path)
        message = str(err.value)
        assert message.startswith(path) and problem in message and "\n" not in message
    assert main(["eval", path]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and path in err and problem in err


def test_a_folder_and_a_missing_file(tmp_path, capsys):
    with pytest.raises(FileFormatError, match="is a folder"):
        lopt.load(str(tmp_path))
    with pytest.raises(FileFormatError, match="no such file"):
        lopt.load(str(tmp_path / "none.lopt"))
    assert main(["eval", str(tmp_path)]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


def test_the_file_is_plain_safetensors_with_a_versioned_header(tmp_path):
    raw = _good(tmp_path)
    tensors = load_file(str(tmp_path / "good.lopt"))  # any safetensors reader, no lopt
    leaves = {jax.tree_util.keystr(p): x for p, x in jax.tree_util.tree_flatten_with_path(THETA)[0]}
    assert set(tensors) == set(leaves)
    for k in leaves:
        np.testing.assert_array_equal(tensors[k], leaves[k])
    header = lopt.files.rule_file.load_metadata(str(tmp_path / "good.lopt"))
    assert header["version"] == VERSION and header["rule"] == "l2l_lstm"
    assert header["extra"] == {"note": "x"} and b"pickle" not in raw


def test_version_1_npz_files_still_load(tmp_path):
    path = str(tmp_path / "old.lopt")
    save_pytree(path, THETA, {"format": "lopt-rule", "version": 1, "rule": RULE.name,
                              "config": RULE.config, "extra": {}})
    rule, theta = lopt.load(path)
    assert rule.config == RULE.config
    for a, b in zip(jax.tree.leaves(THETA), jax.tree.leaves(theta)):
        np.testing.assert_array_equal(a, b)
    raw = open(path, "rb").read()
    with open(path, "wb") as f:  # zip's CRC-32 catches a flipped bit in a member
        f.write(_flip(raw, raw.index(b"cells") + 200))
    with pytest.raises(FileFormatError, match=path):
        lopt.load(path)


@pytest.mark.parametrize("damage,problem", [
    (lambda raw: raw[: len(raw) // 2], "not a readable"),
    (lambda raw: b"", "is empty"),
    (lambda raw: b"garbage" * 10, "not a readable"),
])
def test_a_damaged_training_checkpoint_is_one_line(tmp_path, damage, problem):
    path = str(tmp_path / "checkpoint.npz")
    save_pytree(path, THETA, {"rule": RULE.name, "step": 3})
    raw = open(path, "rb").read()
    with open(path, "wb") as f:
        f.write(damage(raw))
    with pytest.raises(FileFormatError, match=problem):
        read_metadata(path)
        load_pytree(path, THETA)


def test_save_refuses_a_theta_that_does_not_match_the_rule(tmp_path):
    wrong = jax.tree.map(lambda x: x, THETA)
    wrong["out"]["w"] = np.zeros((3, 1), np.float32)
    with pytest.raises(ValueError, match=r"\['out'\]\['w'\] has shape \(3, 1\)"):
        lopt.save(str(tmp_path / "x.lopt"), RULE, wrong)
    with pytest.raises(ValueError, match="structure differs"):
        lopt.save(str(tmp_path / "x.lopt"), RULE, {"w": np.zeros(3)})
    assert not os.path.exists(tmp_path / "x.lopt")


@pytest.fixture(scope="module")
def orbax_run(tmp_path_factory):
    from lopt.outer import TBPTT, train
    from lopt.tasks import quadratic_family

    folder = tmp_path_factory.mktemp("orbax")
    result = train(RULE, quadratic_family(dim=3), TBPTT(num_runs=2, truncation=2, horizon=4),
                   num_steps=1, progress=False, checkpoint_path=str(folder / "checkpoints"))
    return folder / "checkpoints", result.state


@pytest.mark.parametrize("damage", ["truncate every array file", "garbage metadata",
                                    "delete the array index"])
def test_a_damaged_orbax_checkpoint_is_one_line(tmp_path, orbax_run, damage):
    import shutil

    from lopt.files.checkpoints import Checkpoints

    folder = tmp_path / "checkpoints"
    shutil.copytree(orbax_run[0], folder)
    state_dir = folder / "1" / "state"
    files = [p for p in state_dir.rglob("*") if p.is_file()]
    if damage == "truncate every array file":
        for p in files:
            if p.parent.name == "d":
                p.write_bytes(p.read_bytes()[:10])
    elif damage == "garbage metadata":
        (folder / "1" / "meta" / "metadata").write_text("{not json")
    else:
        for p in files:
            if p.name == "manifest.ocdbt":
                p.unlink()
    store = Checkpoints(str(folder))
    with pytest.raises(FileFormatError) as err:
        store.metadata()
        store.restore(orbax_run[1])
    assert str(err.value).startswith(str(folder)) and "\n" not in str(err.value)


@pytest.mark.parametrize("extra,problem", [
    ({"eval": 5}, "header field extra.eval must be a JSON object; got int"),
    ({"train": "x"}, "header field extra.train must be a JSON object; got str"),
    ({"eval": {"eval_tasks": "many"}}, "stored evaluation settings: eval_tasks must be"),
])
def test_lopt_eval_on_wrong_typed_stored_settings_is_one_line(tmp_path, capsys, extra, problem):
    path = str(tmp_path / "rule.lopt")
    lopt.save(path, RULE, RULE.init_meta(jax.random.PRNGKey(0)), extra=extra)
    assert main(["eval", path, "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and path in err[0] and problem in err[0]
    assert not (tmp_path / "out").exists()


def test_a_nan_theta_with_a_valid_checksum_is_refused_on_load(tmp_path):
    from lopt.files import rule_file

    rule, theta = RULE, THETA
    tensors = {jax.tree_util.keystr(p): np.array(x)
               for p, x in jax.tree_util.tree_flatten_with_path(theta)[0]}
    first = sorted(tensors)[0]
    tensors[first].flat[0] = np.nan
    header = {"format": "lopt-rule", "version": rule_file.VERSION, "rule": rule.name,
              "config": rule.config, "extra": {}, "sha256": rule_file.digest(tensors)}
    header["header_sha256"] = rule_file.header_digest(header)
    path = tmp_path / "nan.lopt"
    path.write_bytes(st_save(tensors, metadata={"lopt": json.dumps(header)}))
    with pytest.raises(FileFormatError, match=r"holds NaN or inf"):
        lopt.load(str(path))


def _with_header_text(raw, text):
    """The file with its lopt header replaced by the JSON ``text`` as written (tensors kept)."""
    (n,) = struct.unpack("<Q", raw[:8])
    outer = json.loads(raw[8:8 + n])
    outer["__metadata__"]["lopt"] = text
    body = json.dumps(outer).encode()
    body += b" " * (-len(body) % 8)
    return struct.pack("<Q", len(body)) + body + raw[8 + n:]


@pytest.mark.parametrize("text", [
    # nested past Python's recursion limit
    '{"format": "lopt-rule", "version": 2, "rule": "l2l_lstm", "config": '
    + "[" * 5000 + "]" * 5000 + ', "extra": {}}',
    # a width no machine holds
    '{"format": "lopt-rule", "version": 2, "rule": "l2l_lstm", "config": {"hidden": '
    '1000000000000000}, "extra": {}}',
])
def test_a_hostile_version_2_header_is_one_line(text, tmp_path):
    path = tmp_path / "h.lopt"
    lopt.save(str(path), RULE, THETA)
    path.write_bytes(_with_header_text(path.read_bytes(), text))
    for load in (lopt.load, lopt.as_optax):
        with pytest.raises(FileFormatError) as err:
            load(str(path))
        assert str(err.value).startswith(str(path)) and "\n" not in str(err.value)


def test_nan_in_the_header_json_is_refused(tmp_path):
    path = tmp_path / "n.lopt"
    lopt.save(str(path), RULE, THETA)
    raw = _with_header(path.read_bytes(), lambda h: {**_v2(h), "extra": {"x": float("nan")}})
    path.write_bytes(raw)
    with pytest.raises(FileFormatError, match="NaN"):
        lopt.load(str(path))


def test_a_missing_rule_file_path_is_named_as_missing():
    with pytest.raises(FileFormatError, match="no such file"):
        lopt.as_optax("/nonexistent/rule.lopt")
    with pytest.raises(FileFormatError, match="no such file"):
        lopt.as_optax("missing.lopt")
    with pytest.raises(ValueError, match="pretrained name must be one of"):
        lopt.as_optax("celo3_nope")
