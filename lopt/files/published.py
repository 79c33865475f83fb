"""Import of the learned optimizers' published weights into lopt's ``.lopt`` files.

The authors publish meta-parameters as flax-serialized msgpack (``flax.serialization.to_bytes``
of the haiku parameter dict): learned_optimization's ``checkpoints.save_state`` writes them, and
so are Celo's and Celo2's released ``theta.state`` files; learned_optimization's pretrained
folders (VeLO) add the run's ``config.gin``. PyLO publishes PyTorch modules'
``model.safetensors`` on Hugging Face. ``lopt.files.layouts`` maps each layout.
"""
from __future__ import annotations

import dataclasses
import hashlib
import os
from typing import Callable

from lopt.files import layouts
from lopt.files.errors import UsageError
from lopt.files.lo_checkpoint import read_lo_checkpoint
from lopt.files.rule_file import save
from lopt.rules.base import theta_mismatch


@dataclasses.dataclass(frozen=True)
class Source:
    """A published layout: the lopt rule it becomes, where its files live, and how to read it
    (``load(path) -> (rule, theta)``)."""

    rule: str
    reference: str
    where: str
    load: Callable[[str], tuple]


def _msgpack(convert: Callable) -> Callable[[str], tuple]:
    return lambda path: convert(path, layouts.flat_names(layouts.read_msgpack(path)))


def _safetensors(convert: Callable) -> Callable[[str], tuple]:
    return lambda path: convert(path, layouts.read_safetensors(path))


SOURCES = {
    "adafac_mlp": Source(
        "adafac_mlp", "google/learned_optimization AdafacMLPLOpt (small_fc_lopt)",
        "learned_optimization's checkpoints.save_state files; amoudgl/adafac-mlp-lopt on "
        "Hugging Face (theta.state, MIT)", _msgpack(layouts.adafac_mlp_from)),
    "celo": Source(
        "celo_reference", "amoudgl/celo celo.optimizers.celo.Celo",
        "amoudgl/celo on Hugging Face (theta.state) and in the amoudgl/celo repository at "
        "algoperf/submissions/celo/theta.state (MIT)", _msgpack(layouts.celo_from)),
    "celo2": Source(
        "celo2", "amoudgl/celo celo2_optax.scale_by_celo2",
        "the Celo2 release's theta.state (amoudgl/celo README, MIT)",
        _msgpack(layouts.celo2_from("celo2"))),
    "celo2_base": Source(
        "celo2_base", "amoudgl/celo celo2_optax.scale_by_celo2(orthogonalize=False)",
        "the Celo2-base release's theta.state (amoudgl/celo README, MIT)",
        _msgpack(layouts.celo2_from("celo2_base"))),
    "lo-checkpoint": Source(
        "velo or adafac_mlp", "google/learned_optimization HyperV2 (VeLO) or AdafacMLPLOpt, "
        "as opt_from_checkpoint loads them",
        "a learned_optimization pretrained folder (config.gin + params), e.g. VeLO's under "
        "gs://gresearch/learned_optimization/pretrained_lopts/ (no license published for the "
        "weights)", read_lo_checkpoint),
    "pylo_adafac": Source(
        "adafac_mlp", "Belilovsky-Lab/pylo AdafacLO_naive (small_fc_lopt; its MetaMLP)",
        "PyLO's Hugging Face model.safetensors for AdafacLO (e.g. btherien/mulo; PyLO BSD-3, "
        "model card apache-2.0)", _safetensors(layouts.pylo_adafac_from)),
    "pylo_celo2": Source(
        "celo2", "Belilovsky-Lab/pylo CELO2_naive (its CELO2MLP)",
        "PyLO's Hugging Face model.safetensors for CELO2 (DiamondXL/celo2; PyLO BSD-3, model "
        "card apache-2.0)", _safetensors(layouts.pylo_celo2_from("celo2"))),
}


def _digest(path: str) -> str:
    files = ([os.path.join(path, n) for n in ("config.gin", "params")] if os.path.isdir(path)
             else [path])
    h = hashlib.sha256()
    for name in files:
        with open(name, "rb") as f:
            h.update(f.read())
    return h.hexdigest()


def import_weights(source: str, path: str, out: str) -> tuple:
    """Read the published file (or folder) ``path`` in ``source``'s layout and write ``out`` (a
    .lopt that ``lopt.as_optax(out)`` loads offline); returns (rule, theta). Nothing is written
    unless every tensor maps."""
    if source not in SOURCES:
        raise UsageError(f"source must be one of {', '.join(sorted(SOURCES))}; got {source!r}")
    spec = SOURCES[source]
    rule, theta = spec.load(path)
    problem = theta_mismatch(rule, theta)
    if problem:  # the mapping's own bug, never the file's
        raise AssertionError(f"{source} mapping of {path} does not fit {rule.name}: {problem}")
    save(out, rule, theta, extra={"imported_from": {
        "source": source, "file": os.path.basename(os.path.normpath(path)),
        "sha256": _digest(path), "reference": spec.reference}})
    return rule, theta
