"""One portable file per learned optimizer: the rule's name, its hyperparameters and theta."""
from __future__ import annotations

import jax

from lopt.checkpoint import load_pytree, read_metadata, save_pytree
from lopt.rules import make_rule
from lopt.rules.base import UpdateRule

FORMAT = "lopt-rule"
VERSION = 1


def save(path: str, rule: UpdateRule, theta, extra: dict | None = None) -> None:
    """Write ``rule`` (registry name and config) and ``theta`` to ``path`` (an .npz archive)."""
    metadata = {"format": FORMAT, "version": VERSION, "rule": rule.name,
                "config": rule.config, "extra": extra or {}}
    save_pytree(path, theta, metadata)


def load(path: str):
    """Read a file written by :func:`save`; returns ``(rule, theta)``."""
    meta = read_metadata(path)
    if meta.get("format") != FORMAT:
        raise ValueError(f"{path} is not a saved lopt rule (format {meta.get('format')!r})")
    rule = make_rule(meta["rule"], **meta["config"])
    template = jax.eval_shape(rule.init_meta, jax.random.PRNGKey(0))
    theta = load_pytree(path, template)
    return rule, theta


def load_metadata(path: str) -> dict:
    """The metadata of a saved rule (name, config and whatever ``extra`` it was saved with)."""
    return read_metadata(path)
