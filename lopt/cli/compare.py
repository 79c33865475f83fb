"""The comparison ``lopt train`` ends with and ``lopt eval`` re-runs: a rule against tuned
baselines on evaluation instances of every family of its task, written as JSON, markdown and
a PNG with their provenance."""
from __future__ import annotations

import dataclasses
import os
import time

from lopt.cli.config import EvalConfig
from lopt.cli.invocation import Invocation
from lopt.cli.parser import eval_config
from lopt.cli.phases import phase
from lopt.cli.preflight import check_comparison_memory, check_out_folder
from lopt.cli.value_checks import ConfigError, check_mup_task
from lopt.evaluation import Instances, compare, normalize_all, plots, tables
from lopt.files.atomic import write_json, write_text
from lopt.files.provenance import markdown_line, provenance
from lopt.files.rule_file import load, load_metadata
from lopt.outer.mup_rule import mup_rule
from lopt.rules import BASELINES
from lopt.tasks import Mixture, make_family


def run_comparison(rule, theta, cfg: EvalConfig, out_dir: str, label: str,
                   invocation: Invocation, normalize: bool = False) -> list:
    """Compare ``rule`` with the tuned baselines on evaluation instances of every family of
    ``cfg.task``; write comparison{_FAMILY}.{json,md,png} into ``out_dir``."""
    family = make_family(cfg.task)
    if normalize:
        family = normalize_all(family, num_steps=cfg.eval_steps)
    if not isinstance(family, Mixture):
        return _compare_one(rule, theta, cfg, family, out_dir, label, "comparison", invocation)
    summaries = []
    for member in family.families:
        slug = "".join(c if c.isalnum() or c in "._-" else "_" for c in member.name)[:60]
        summaries += _compare_one(rule, theta, cfg, member, out_dir, label,
                                  f"comparison_{slug}", invocation)
    return summaries


def _compare_one(rule, theta, cfg, family, out_dir, label, stem, invocation) -> list:
    baselines = {name: BASELINES[name][0] for name in cfg.baselines}
    # Tuning never costs more runs than the evaluation it serves.
    tune_tasks = min(cfg.tune_tasks, cfg.eval_tasks)
    results = compare({label: (rule, theta)}, baselines, family,
                      Instances.of_seed(cfg.eval_seed, cfg.eval_tasks), num_steps=cfg.eval_steps,
                      tuning=Instances.of_seed(cfg.tune_seed, tune_tasks))
    summaries = [r.summary() for r in results]
    table = tables.comparison_table(summaries, cfg.eval_tasks, cfg.eval_steps, tune_tasks)
    os.makedirs(out_dir, exist_ok=True)
    record = provenance(invocation.line, time.time() - invocation.start, invocation.code)
    write_json(os.path.join(out_dir, f"{stem}.json"),
               {"provenance": record, "eval": dataclasses.asdict(cfg), "family": family.name,
                "results": summaries})
    title = f"# {label} on evaluation instances of {family.name}"
    write_text(os.path.join(out_dir, f"{stem}.md"),
               f"{title}\n\n{markdown_line(record)}\n\n{table}")
    plots.plot_curves(summaries, os.path.join(out_dir, f"{stem}.png"),
                      f"{label} vs tuned baselines, evaluation instances of {family.name}")
    print(f"{family.name}:\n{table}")
    return summaries


def cmd_eval(path: str, args, invocation: Invocation) -> int:
    """``lopt eval FILE``: the comparison again for a saved rule, with its stored settings
    under the flags given."""
    if os.path.isdir(path):
        raise ConfigError(f"checkpoint must be a rule file (.lopt); {path!r} is a folder")
    if not os.path.exists(path):
        raise ConfigError(f"checkpoint must be an existing rule file; {path!r} does not exist")
    rule, theta = load(path)
    stored, train = _stored_settings(path)
    known = {f.name for f in dataclasses.fields(EvalConfig)}
    try:
        base = EvalConfig(**{k: (tuple(v) if isinstance(v, list) else v)
                             for k, v in stored.items() if k in known}).validate()
    except ConfigError as err:
        raise ConfigError(f"{path}: its stored evaluation settings: {err}") from None
    cfg = eval_config(args, base)
    out = args.out or os.path.dirname(os.path.abspath(path))
    check_out_folder(out)  # before the evaluation, not after it
    check_comparison_memory(rule, make_family(cfg.task), cfg)
    normalize = bool(train.get("normalize"))
    if train.get("mup"):  # trained μP-scaled: scaled by this task's model
        rule = mup_rule(rule, check_mup_task(cfg.task))
    with phase("evaluation"):
        run_comparison(rule, theta, cfg, out, f"{rule.name} (learned)", invocation, normalize)
    return 0


def _stored_settings(path: str) -> tuple:
    """The evaluation and training settings a rule file's header keeps under ``extra``
    (written by ``lopt train``; absent from files saved from Python), each a JSON object."""
    extra = load_metadata(path).get("extra", {})
    if not isinstance(extra, dict):
        raise ConfigError(f"{path}: header field extra must be a JSON object; got "
                          f"{type(extra).__name__}")
    out = []
    for field in ("eval", "train"):
        value = extra.get(field, {})
        if not isinstance(value, dict):
            raise ConfigError(f"{path}: header field extra.{field} must be a JSON object; got "
                              f"{type(value).__name__}")
        out.append(value)
    return tuple(out)
