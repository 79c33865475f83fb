"""learned_optimization's pretrained-optimizer folders: ``config.gin`` (the operative gin
config of the run that trained it) and ``params`` (``checkpoints.save_state`` of a
``ParameterCheckpoint``: {params, gen_id, step}), as VeLO is published.

Only the bindings that decide the architecture are read (a line ``Name.field = value``; no
gin dependency), and a binding lopt's rule does not implement is an error, not a silent
difference.
"""
from __future__ import annotations

import ast
import os
import re

from lopt.files.errors import FileFormatError, check_readable
from lopt.files.layouts import adafac_mlp_from, flat_names, hyper_lstm_from, read_msgpack
from lopt.rules import make_rule
from lopt.rules.velo import N_INPUTS as VELO_N_INPUTS

ALL_FEATURES = ("with_g", "with_m", "with_m_feat", "with_rms", "with_rms_feat", "with_rms_norm_g",
                "with_rsqrt_rms", "with_p", "with_fac_norm_g", "with_fac_rms", "with_fac_rsqrt",
                "with_grad_clip_feat", "with_fac_mom_mult", "with_rms_only_norm_g",
                "adafactor_accumulator")
DECAYS = {"initial_momentum_decays": (0.9, 0.99, 0.999), "initial_rms_decays": (0.999,),
          "initial_adafactor_decays": (0.9, 0.99, 0.999)}
# class -> (lopt rule, {binding: config field}, {binding: the only value lopt implements})
ARCHITECTURES = {
    "HyperV2": ("velo", {"lstm_hidden_size": "lstm_hidden", "param_inits": "param_inits",
                         "ff_hidden_size": "hidden", "ff_hidden_layers": "layers",
                         "exp_mult": "exp_scale", "step_mult": "step_scale",
                         "use_bugged_next_lstm_state": "bugged_next_lstm_state",
                         "use_bugged_loss_features": "bugged_loss_features"},
                {**DECAYS, **{f: True for f in ALL_FEATURES}, "mix_layers": True,
                 "param_scale_mult": True, "precondition_output": False, "reparam_decay": 10.0,
                 "rnn_state_decay": 0.0, "with_validation_feature_dim": False,
                 "constant_loss": False, "clip_param_scale_amount": None}),
    "AdafacMLPLOpt": ("adafac_mlp", {"hidden_size": "hidden", "hidden_layers": "layers",
                                     "exp_mult": "exp_scale", "step_mult": "step_scale"},
                      {**DECAYS, "concat_weights": True, "make_separate_weights": False,
                       "split_weights": False}),
}


def read_bindings(path: str) -> dict:
    """{"Class.field": value} of a gin config, values as Python literals ("@X()" kept as text)."""
    check_readable(path)
    with open(path, encoding="utf-8", errors="replace") as f:
        text = f.read().replace("\\\n", "")
    out = {}
    for line in text.splitlines():
        m = re.fullmatch(r"\s*([\w./]+)\s*=\s*(.+?)\s*", line)
        if not m or line.lstrip().startswith("#"):
            continue
        key, value = m.groups()
        try:
            out[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            out[key] = value
    return out


def architecture(folder: str, bindings: dict) -> tuple:
    """(class name, lopt rule, rule config) from the bindings; one line naming the first
    binding lopt does not implement."""
    config_path = os.path.join(folder, "config.gin")
    lopt_binding = next((v for k, v in bindings.items() if k.endswith("run_train.lopt")), None)
    name = re.fullmatch(r"@(\w+)\(\)", str(lopt_binding or ""))
    if not name or name.group(1) not in ARCHITECTURES:
        raise FileFormatError(f"{config_path}: run_train.lopt is {lopt_binding!r}; lopt imports "
                              f"{', '.join('@' + a + '()' for a in ARCHITECTURES)}")
    cls = name.group(1)
    rule, fields, fixed = ARCHITECTURES[cls]
    config = {}
    for key, value in bindings.items():
        owner, _, field = key.rpartition(".")
        if owner.rpartition("/")[2] != cls:
            continue
        if field in fields:
            config[fields[field]] = value
        elif field in fixed and _differs(value, fixed[field]):
            raise FileFormatError(f"{config_path}: binds {cls}.{field} = {value!r}; lopt's "
                                  f"{rule} implements only {fixed[field]!r}")
    return cls, rule, config


def _differs(value, expected) -> bool:
    if isinstance(expected, tuple):
        return tuple(value) != expected if isinstance(value, (list, tuple)) else True
    return value != expected


def read_lo_checkpoint(folder: str) -> tuple:
    """(rule, theta) from a learned_optimization pretrained folder."""
    if not os.path.isdir(folder):
        raise FileFormatError(f"{folder}: not a folder (a learned_optimization checkpoint is a "
                              f"folder holding config.gin and params)")
    cls, rule_name, config = architecture(folder, read_bindings(os.path.join(folder, "config.gin")))
    params_path = os.path.join(folder, "params")
    names = flat_names(read_msgpack(params_path))
    theta = {k[len("params/"):]: v for k, v in names.items() if k.startswith("params/")}
    if not theta:
        raise FileFormatError(f"{params_path}: holds no params/ tensors (not a "
                              f"ParameterCheckpoint)")
    sizes = {"lstm_hidden", "param_inits", "hidden", "layers"}
    rest = {k: v for k, v in config.items() if k not in sizes}
    if cls == "HyperV2":
        rule, weights = hyper_lstm_from(params_path, theta, rule_name, VELO_N_INPUTS, **rest)
    else:
        rule, weights = adafac_mlp_from(params_path, theta)
        rule = make_rule(rule_name, **{**rule.config, **rest})
    for key in sizes & set(config):  # the file's shapes against the config's sizes
        if rule.config[key] != config[key]:
            raise FileFormatError(f"{params_path}: its tensors make {key} = "
                                  f"{rule.config[key]}, config.gin says {config[key]}")
    return rule, weights
