"""One portable file per learned optimizer (``.lopt``): safetensors tensors — theta, keyed by
tree path — with a JSON header naming the rule, its config, the format version, a checksum
and provenance. No pickle: numpy, PyTorch or any safetensors reader opens it. Files of format
version 1 (``.npz`` archives, lopt ≤ 0.1) still load."""
from __future__ import annotations

import json

import jax
import numpy as np
from safetensors.numpy import save as st_save

from lopt.files.atomic import write_atomically
from lopt.files.errors import FileFormatError, check_readable
from lopt.files.pytree_file import arrays_to_tree, load_pytree, read_metadata
from lopt.files.rule_format import (  # noqa: F401  (the format's names, as before)
    FORMAT,
    HEADER_KEY,
    MAX_HEADER,
    VERSION,
    check_header,
    digest,
    header_digest,
    read_safetensors,
)
from lopt.files.semantics import config_for_version, current_version, unrecorded_version
from lopt.rules import make_rule
from lopt.rules.base import UpdateRule, check_rule, theta_mismatch


def save(path: str, rule: UpdateRule, theta, extra: dict | None = None) -> None:
    """Write ``rule`` (registry name and config) and ``theta`` to ``path`` atomically.

    ``theta`` must have the structure, shapes and dtypes of ``rule.init_meta``'s output."""
    check_rule(rule)
    problem = theta_mismatch(rule, theta)
    if problem:
        raise ValueError(f"theta does not match rule {rule.name!r}: {problem}")
    tensors = {jax.tree_util.keystr(p): np.ascontiguousarray(jax.device_get(x))
               for p, x in jax.tree_util.tree_flatten_with_path(theta)[0]}
    for name, x in tensors.items():
        # A NaN theta saved is a rule that poisons every run it is used in.
        if np.issubdtype(x.dtype, np.inexact) and not np.all(np.isfinite(x)):
            raise ValueError(f"theta{name} holds NaN or inf; a rule file keeps only finite "
                             "meta-parameters")
    header = {"format": FORMAT, "version": VERSION, "rule": rule.name, "config": rule.config,
              "semantics": current_version(rule.name), "extra": extra or {},
              "sha256": digest(tensors)}
    header["header_sha256"] = header_digest(header)
    data = st_save(tensors, metadata={HEADER_KEY: json.dumps(header)})
    write_atomically(path, lambda f: f.write(data), suffix=".lopt")


def _is_npz(path: str) -> bool:
    with open(path, "rb") as f:
        return f.read(2) == b"PK"


def load_metadata(path: str) -> dict:
    """The header of a saved rule: format, version, rule, config and its ``extra`` record."""
    check_readable(path)
    if _is_npz(path):
        meta = read_metadata(path)
        check_header(path, meta)
        return meta
    return read_safetensors(path)[0]


def load(path: str):
    """Read a file written by :func:`save` (either format version); returns ``(rule, theta)``.
    Anything wrong with the file is a ``FileFormatError`` (a ValueError) naming it."""
    check_readable(path)
    if _is_npz(path):
        header, tensors = load_metadata(path), None
    else:
        header, tensors = read_safetensors(path)
    # A file computes what it computed when it was made: under the config of its recorded
    # semantics version (files from before the record: what lopt computed for them then).
    semantics = header.get("semantics", unrecorded_version(str(header["rule"])))
    if not isinstance(semantics, int) or isinstance(semantics, bool) or semantics < 1:
        raise FileFormatError(f"{path}: header 'semantics' must be a positive integer, got "
                              f"{semantics!r}")
    try:
        config = config_for_version(header["rule"], header["config"], semantics)
    except ValueError as err:
        raise FileFormatError(f"{path}: {err}") from None
    try:
        rule = make_rule(header["rule"], **config)
        # The rule's own meta-parameters in the active default float dtype (float64 under
        # jax_enable_x64): theta is cast to it on load, deliberately, whatever the file stores.
        template = jax.eval_shape(rule.init_meta, jax.random.PRNGKey(0))
    except (ValueError, TypeError, OverflowError, MemoryError) as err:
        raise FileFormatError(f"{path}: names rule {header['rule']!r} with a config this lopt "
                              f"cannot build ({str(err).splitlines()[0]})") from None
    if tensors is None:
        theta = load_pytree(path, template, cast_floats=True)
    else:
        theta = arrays_to_tree(path, tensors, template, cast_floats=True)
    for p, x in jax.tree_util.tree_flatten_with_path(theta)[0]:
        # save refuses these; a file written otherwise would poison every run it is used in
        if not bool(jax.numpy.all(jax.numpy.isfinite(x))):
            raise FileFormatError(f"{path}: theta{jax.tree_util.keystr(p)} holds NaN or inf; a "
                                  "rule file keeps only finite meta-parameters")
    return rule, theta
