"""The published layouts of learned optimizers' weights, each mapped onto a lopt rule's theta
after every tensor's name and shape is checked: learned_optimization's and Celo's flax msgpack
(haiku parameter dicts) and PyLO's safetensors (PyTorch modules)."""
from __future__ import annotations

import re
from typing import Callable

import numpy as np
from flax import serialization
from safetensors import SafetensorError
from safetensors.numpy import load_file

from lopt.files.errors import FileFormatError, check_readable
from lopt.rules import make_rule
from lopt.rules.adafac_mlp import STEP_TIMESCALES
from lopt.rules.adafactor_features import MOMENTUM_DECAYS
from lopt.rules.adafactor_features import group_sizes as adafac_group_sizes
from lopt.rules.celo2 import group_sizes as celo2_group_sizes
from lopt.rules.celo_reference import N_SCHEDULER_INPUTS as CELO_N_INPUTS

STEP_FEATURES = len(STEP_TIMESCALES)  # adafac_mlp's step embeddings, after its features


def read_msgpack(path: str) -> dict:
    """The nested dict of arrays in a flax msgpack file; one line for anything else."""
    check_readable(path)
    with open(path, "rb") as f:
        data = f.read()
    try:
        tree = serialization.msgpack_restore(data)
    except Exception as err:  # msgpack raises its own zoo of errors on foreign bytes
        detail = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise FileFormatError(f"{path}: not a flax msgpack checkpoint ({detail})") from None
    if not isinstance(tree, dict):
        raise FileFormatError(f"{path}: not a flax msgpack checkpoint of named tensors "
                              f"(holds a {type(tree).__name__})")
    return tree


def read_safetensors(path: str) -> dict:
    """{name: array} of a safetensors file (PyLO's Hugging Face ``model.safetensors``)."""
    check_readable(path)
    try:
        return load_file(path)
    except (SafetensorError, OSError, ValueError) as err:
        detail = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise FileFormatError(f"{path}: not a safetensors file ({detail})") from None


def flat_names(tree: dict, prefix: str = "") -> dict:
    """{"a/b/c": array} for every leaf of a nested dict."""
    out = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flat_names(value, name + "/"))
        else:
            out[name] = np.asarray(value)
    return out


def check_layout(path: str, got: dict, want: dict) -> None:
    """One line naming the first tensor missing, unexpected or of the wrong shape."""
    for name, shape in want.items():
        if name not in got:
            raise FileFormatError(f"{path}: tensor {name} {tuple(shape)} is missing "
                                  f"(not this source's layout?)")
    for name in got:
        if name not in want:
            raise FileFormatError(f"{path}: unexpected tensor {name} {got[name].shape} "
                                  f"(not this source's layout?)")
    for name, shape in want.items():
        if tuple(got[name].shape) != tuple(shape):
            raise FileFormatError(f"{path}: tensor {name} has shape {tuple(got[name].shape)}, "
                                  f"expected {tuple(shape)}")
        if not np.issubdtype(got[name].dtype, np.floating):
            raise FileFormatError(f"{path}: tensor {name} is {got[name].dtype}, expected floats")


def _count(tensors: dict, pattern: str) -> int:
    return sum(1 for n in tensors if re.fullmatch(pattern, n))


def _f32(x) -> np.ndarray:
    return np.asarray(x, np.float32)


def adafac_mlp_from(path: str, t: dict) -> tuple:
    """learned_optimization AdafacMLPLOpt: {momentum_decays, rms_decays, adafactor_decays,
    nn/~/w0..wL, b0..bL}, w0 [features + 11 step embeddings, hidden]."""
    n = [t[k].shape[0] if k in t and t[k].ndim == 1 else 0
         for k in ("momentum_decays", "rms_decays", "adafactor_decays")]
    layers = _count(t, r"nn/~/w\d+") - 1
    hidden = t["nn/~/b0"].shape[0] if "nn/~/b0" in t and t["nn/~/b0"].ndim == 1 else 0
    if min(n) < 1 or layers < 1 or hidden < 1:
        check_layout(path, t, {"momentum_decays": (3,), "rms_decays": (1,),
                               "adafactor_decays": (3,), "nn/~/w0": (39, 4), "nn/~/b0": (4,),
                               "nn/~/w1": (4, 4), "nn/~/b1": (4,)})
    n_in = sum(adafac_group_sizes(*n)) + STEP_FEATURES
    widths = [n_in] + [hidden] * layers + [2]
    want = {"momentum_decays": (n[0],), "rms_decays": (n[1],), "adafactor_decays": (n[2],)}
    for i in range(layers + 1):
        want[f"nn/~/w{i}"] = (widths[i], widths[i + 1])
        want[f"nn/~/b{i}"] = (widths[i + 1],)
    check_layout(path, t, want)
    # learned_optimization's rolling momenta take their decays unclipped
    rule = make_rule("adafac_mlp", hidden=hidden, layers=layers, clip_momentum_decays=False)
    if n != [3, 1, 3]:
        raise FileFormatError(f"{path}: holds {n[0]} momentum, {n[1]} rms and {n[2]} adafactor "
                              f"decays; lopt imports the released (3, 1, 3) (their initial values "
                              f"are not in the file)")
    theta = {"mlp": [{"w": _f32(t[f"nn/~/w{i}"]), "b": _f32(t[f"nn/~/b{i}"])}
                     for i in range(layers + 1)],
             "decays": {"momentum": _f32(t["momentum_decays"]), "rms": _f32(t["rms_decays"]),
                        "factored": _f32(t["adafactor_decays"])}}
    _check_momentum_decays(path, theta["decays"]["momentum"])
    return rule, theta


def _check_momentum_decays(path: str, offsets) -> None:
    """One line when a learned momentum decay 1 − (1 − β₀)·e^(10δ) is −1 or below: the
    reference's momentum then grows without bound and its updates overflow to NaN, so lopt
    refuses the file. A decay in (−1, 0) is accepted and computed as the reference does."""
    decays = 1.0 - (1.0 - np.asarray(MOMENTUM_DECAYS)) * np.exp(10.0 * np.asarray(offsets,
                                                                                 np.float64))
    for i, decay in enumerate(decays):
        if decay <= -1.0:
            raise FileFormatError(
                f"{path}: momentum_decays[{i}] = {float(offsets[i]):.4g} makes momentum decay "
                f"{MOMENTUM_DECAYS[i]:g} into {decay:.4g}; at -1 or below learned_optimization's "
                f"own momentum grows without bound (its updates overflow), so lopt does not "
                f"import it")


def celo2_from(name: str) -> Callable[[str, dict], tuple]:
    def convert(path: str, t: dict) -> tuple:
        """celo2_optax: {ff_mod_stack/~/w0__0..w0__13 [group width, hidden], b0, w1..wL, b1..bL}."""
        sizes = celo2_group_sizes(3, 1, 3, matrix=True)
        hidden = t["ff_mod_stack/~/b0"].shape[0] if "ff_mod_stack/~/b0" in t else 8
        layers = max(_count(t, r"ff_mod_stack/~/w[1-9]\d*"), 1)
        want = {f"ff_mod_stack/~/w0__{i}": (s, hidden) for i, s in enumerate(sizes)}
        want["ff_mod_stack/~/b0"] = (hidden,)
        widths = [hidden] * layers + [3]
        for i in range(1, layers + 1):
            want[f"ff_mod_stack/~/w{i}"] = (widths[i - 1], widths[i])
            want[f"ff_mod_stack/~/b{i}"] = (widths[i],)
        check_layout(path, t, want)
        rule = make_rule(name, hidden=hidden, layers=layers)
        theta = {"first": {"w": [_f32(t[f"ff_mod_stack/~/w0__{i}"]) for i in range(len(sizes))],
                           "b": _f32(t["ff_mod_stack/~/b0"])},
                 "layers": [{"w": _f32(t[f"ff_mod_stack/~/w{i}"]),
                             "b": _f32(t[f"ff_mod_stack/~/b{i}"])} for i in range(1, layers + 1)]}
        return rule, theta

    return convert


def celo_from(path: str, t: dict) -> tuple:
    """amoudgl/celo Celo: {ff_mod_stack/~/... stacked over param_inits, lstm_init_state/{hidden,
    cell}, rnn_params/{linear, linear_1, linear_2, rnn/linear, rnn_to_controls, step_size}}."""
    return hyper_lstm_from(path, t, "celo_reference", CELO_N_INPUTS)


def hyper_lstm_from(path: str, t: dict, rule_name: str, n_in: int, **config) -> tuple:
    """The LSTM-hypernetwork layout Celo and VeLO (HyperV2) share, with ``n_in`` LSTM inputs;
    ``config`` adds to the sizes the file fixes."""
    b0 = t.get("ff_mod_stack/~/b0", np.zeros((1, 4)))
    inits, hidden = (b0.shape if b0.ndim == 2 else (1, 4))
    cell = t.get("lstm_init_state/cell", np.zeros((1, 64)))
    lstm_hidden = cell.shape[-1] if cell.ndim == 2 else 64
    layers = max(_count(t, r"ff_mod_stack/~/w[1-9]\d*"), 1)
    sizes = celo2_group_sizes(3, 1, 3, matrix=True)
    want = {f"ff_mod_stack/~/w0__{i}": (inits, s, hidden) for i, s in enumerate(sizes)}
    want["ff_mod_stack/~/b0"] = (inits, hidden)
    widths = [hidden] * layers + [3]
    for i in range(1, layers + 1):
        want[f"ff_mod_stack/~/w{i}"] = (inits, widths[i - 1], widths[i])
        want[f"ff_mod_stack/~/b{i}"] = (inits, widths[i])
    for name, (fan_in, fan_out) in {"linear": (n_in, lstm_hidden), "linear_1": (n_in, lstm_hidden),
                                    "linear_2": (n_in, lstm_hidden),
                                    "rnn/linear": (2 * lstm_hidden, 4 * lstm_hidden),
                                    "rnn_to_controls": (lstm_hidden, inits),
                                    "step_size": (lstm_hidden, 1)}.items():
        want[f"rnn_params/{name}/w"] = (fan_in, fan_out)
        want[f"rnn_params/{name}/b"] = (fan_out,)
    want["lstm_init_state/hidden"] = want["lstm_init_state/cell"] = (1, lstm_hidden)
    check_layout(path, t, want)
    rule = make_rule(rule_name, lstm_hidden=lstm_hidden, hidden=hidden, layers=layers,
                     param_inits=inits, **config)
    dense = lambda name: {k: _f32(t[f"rnn_params/{name}/{k}"]) for k in ("w", "b")}
    theta = {"ff": {"first": {"w": [_f32(t[f"ff_mod_stack/~/w0__{i}"]) for i in range(len(sizes))],
                              "b": _f32(t["ff_mod_stack/~/b0"])},
                    "layers": [{"w": _f32(t[f"ff_mod_stack/~/w{i}"]),
                                "b": _f32(t[f"ff_mod_stack/~/b{i}"])}
                               for i in range(1, layers + 1)]},
             "lstm_init": {"h": _f32(t["lstm_init_state/hidden"]),
                           "c": _f32(t["lstm_init_state/cell"])},
             "scheduler": {"unused": dense("linear"), "mix": dense("linear_1"),
                           "input": dense("linear_2"), "lstm": dense("rnn/linear"),
                           "controls": dense("rnn_to_controls"), "step_size": dense("step_size")}}
    return rule, theta


# PyLO's AdafacLO_naive keeps the learned decay offsets and the step multiplier in its code,
# not in the Hugging Face file (Belilovsky-Lab/pylo @ d05c6c1, the defaults for its weights).
PYLO_ADAFAC = {"momentum": [0.15216392, 0.14245212, 0.06812963], "rms": [0.01079706],
               "factored": [0.18621896, -0.10864615, -0.06185547], "step_scale": 0.01}


def pylo_adafac_from(path: str, t: dict) -> tuple:
    """PyLO MetaMLP: network.input, network.linear_0..k-1, network.output (torch.nn.Linear:
    weight [out, in]); small_fc_lopt's 39 inputs."""
    w = t.get("network.input.weight", np.zeros((32, 39)))
    hidden = w.shape[0] if w.ndim == 2 else 32
    inner = _count(t, r"network\.linear_\d+\.weight")
    n_in = sum(adafac_group_sizes(3, 1, 3)) + STEP_FEATURES
    want = {"network.input.weight": (hidden, n_in), "network.input.bias": (hidden,),
            "network.output.weight": (2, hidden), "network.output.bias": (2,)}
    for k in range(inner):
        want[f"network.linear_{k}.weight"] = (hidden, hidden)
        want[f"network.linear_{k}.bias"] = (hidden,)
    check_layout(path, t, want)
    names = ["input"] + [f"linear_{k}" for k in range(inner)] + ["output"]
    rule = make_rule("adafac_mlp", hidden=hidden, layers=inner + 1,
                     step_scale=PYLO_ADAFAC["step_scale"])
    theta = {"mlp": [{"w": _f32(t[f"network.{n}.weight"]).T.copy(),
                      "b": _f32(t[f"network.{n}.bias"])} for n in names],
             "decays": {k: _f32(PYLO_ADAFAC[k]) for k in ("momentum", "rms", "factored")}}
    return rule, theta


def pylo_celo2_from(name: str) -> Callable[[str, dict], tuple]:
    def convert(path: str, t: dict) -> tuple:
        """PyLO CELO2MLP: w0.0..w0.13 [group width, hidden], b0, dense_w.j, dense_b.j (the
        haiku layout, weights [in, out])."""
        sizes = celo2_group_sizes(3, 1, 3, matrix=True)
        hidden = t["b0"].shape[0] if "b0" in t and t["b0"].ndim == 1 else 8
        layers = max(_count(t, r"dense_w\.\d+"), 1)
        want = {f"w0.{i}": (s, hidden) for i, s in enumerate(sizes)}
        want["b0"] = (hidden,)
        widths = [hidden] * layers + [3]
        for j in range(layers):
            want[f"dense_w.{j}"] = (widths[j], widths[j + 1])
            want[f"dense_b.{j}"] = (widths[j + 1],)
        check_layout(path, t, want)
        rule = make_rule(name, hidden=hidden, layers=layers)
        theta = {"first": {"w": [_f32(t[f"w0.{i}"]) for i in range(len(sizes))],
                           "b": _f32(t["b0"])},
                 "layers": [{"w": _f32(t[f"dense_w.{j}"]), "b": _f32(t[f"dense_b.{j}"])}
                            for j in range(layers)]}
        return rule, theta

    return convert
