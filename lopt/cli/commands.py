"""The ``lopt`` command line: train, eval, list."""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import importlib
import json
import os
import sys
import time

import jax

from lopt.bench import QUICK_SUITES, SUITES
from lopt.cli import preflight
from lopt.cli.config import ConfigError, EvalConfig, TrainConfig, make_estimator
from lopt.cli.recipes import RECIPES, recipe_config
from lopt.evaluation import compare, normalize_all, plots, tables
from lopt.files.atomic import write_json
from lopt.files.provenance import git_commit, markdown_line, provenance
from lopt.files.rule_file import load, load_metadata, save
from lopt.files.run_folder import FolderLock, checkpoint_path
from lopt.outer import ESTIMATORS, default_meta_optimizer, train
from lopt.outer.train import Interrupted
from lopt.pretrained import PRETRAINED
from lopt.rules import BASELINES, LEARNED, make_rule
from lopt.tasks import FAMILIES, MIXTURES, SAMPLERS, Mixture, make_family
from lopt.tasks.datasets import DATASETS

EXIT_USAGE = 2
EXIT_FAILED = 1
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report it


class RunFailed(RuntimeError):
    """The run went through but produced nothing usable; the message says why."""


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (no usage dump) and exit code 2."""

    def error(self, message):
        sys.stderr.write(f"{self.prog}: error: {message}\n")
        sys.exit(EXIT_USAGE)


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _add_config_options(parser: argparse.ArgumentParser, cls, skip=()) -> None:
    for field in dataclasses.fields(cls):
        if field.name in skip:
            continue
        default = field.default
        help_text = f"default: {default!r}"
        if isinstance(default, bool):
            parser.add_argument(_flag(field.name), dest=field.name, default=None,
                                action=argparse.BooleanOptionalAction, help=help_text)
        elif isinstance(default, tuple):
            parser.add_argument(_flag(field.name), dest=field.name, default=None,
                                type=lambda s: tuple(x for x in s.split(",") if x),
                                help=f"comma-separated; default: {','.join(default)}")
        else:
            kind = field.metadata.get("type", type(default))
            parser.add_argument(_flag(field.name), dest=field.name, default=None,
                                type=kind, metavar=kind.__name__.upper(), help=help_text)


def _config_from_args(cls, args, base=None):
    if base is None and getattr(args, "recipe", None):
        try:
            base = cls(**recipe_config(args.recipe))
        except ValueError as err:
            raise ConfigError(str(err)) from None
    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(cls)
              if getattr(args, f.name, None) is not None}
    return dataclasses.replace(base or cls(), **values).validate()


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="lopt", description="Meta-learned optimizers in JAX.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    p_train = sub.add_parser("train", help="meta-train a learned rule, then compare it with tuned "
                                           "baselines on held-out instances")
    _add_config_options(p_train, TrainConfig)
    p_eval = sub.add_parser("eval", help="re-run the comparison for a saved rule")
    p_eval.add_argument("checkpoint", help="a rule file written by `lopt train` (or lopt.save)")
    p_eval.add_argument("--out", default=None, help="folder for the results "
                                                    "(default: the checkpoint's folder)")
    _add_config_options(p_eval, EvalConfig)
    p_bench = sub.add_parser("bench", help="run a benchmark suite and write its results")
    p_bench.add_argument("suite", help="the suite to run (see `lopt list`)")
    p_bench.add_argument("--out", default=None, help="folder for the results "
                                                     "(default: benchmarks/SUITE)")
    p_bench.add_argument("--repeats", type=int, default=32,
                         help="estimators suite: independent repeats per variance point "
                              "(default: 32)")
    p_bench.add_argument("--quick", action="store_true",
                         help="seed suites: a small size that finishes in a few minutes")
    p_bench.add_argument("--no-progress", dest="progress", action="store_false",
                         help="no progress bar")
    sub.add_parser("list", help="list rules, tasks, estimators, benchmark suites and "
                                "pretrained optimizers")
    return parser


def run_comparison(rule, theta, cfg: EvalConfig, out_dir: str, label: str,
                   normalize: bool = False) -> list:
    """Compare ``rule`` with the tuned baselines on held-out instances of every family of
    ``cfg.task``; write comparison{_FAMILY}.{json,md,png} into ``out_dir``."""

    family = _maybe_normalized(make_family(cfg.task), cfg.eval_steps, normalize)
    if not isinstance(family, Mixture):
        return _compare_one(rule, theta, cfg, family, out_dir, label, "comparison")
    summaries = []
    for member in family.families:
        slug = "".join(c if c.isalnum() or c in "._-" else "_" for c in member.name)[:60]
        summaries += _compare_one(rule, theta, cfg, member, out_dir, label, f"comparison_{slug}")
    return summaries


def _maybe_normalized(family, num_steps, normalize):
    if not normalize:
        return family
    return normalize_all(family, num_steps=num_steps)


def _compare_one(rule, theta, cfg, family, out_dir, label, stem) -> list:


    baselines = {name: BASELINES[name][0] for name in cfg.baselines}
    # Tuning never costs more runs than the evaluation it serves.
    tune_tasks = min(cfg.tune_tasks, cfg.eval_tasks)
    results = compare({label: (rule, theta)}, baselines, family, jax.random.PRNGKey(cfg.eval_seed),
                      num_tasks=cfg.eval_tasks, num_steps=cfg.eval_steps,
                      tuning_key=jax.random.PRNGKey(cfg.tune_seed), tuning_tasks=tune_tasks)
    summaries = [r.summary() for r in results]
    table = tables.comparison_table(summaries, cfg.eval_tasks, cfg.eval_steps, tune_tasks)
    os.makedirs(out_dir, exist_ok=True)

    record = provenance(_COMMAND["line"], time.time() - _COMMAND["start"], _COMMAND["code"])
    write_json(os.path.join(out_dir, f"{stem}.json"),
                      {"provenance": record, "eval": dataclasses.asdict(cfg),
                       "family": family.name, "results": summaries})
    with open(os.path.join(out_dir, f"{stem}.md"), "w") as f:
        f.write(f"# {label} on held-out {family.name}\n\n{markdown_line(record)}\n\n{table}")
    plots.plot_curves(summaries, os.path.join(out_dir, f"{stem}.png"),
                       f"{label} vs tuned baselines on held-out {family.name}")
    print(f"{family.name}:\n{table}")
    return summaries


def cmd_train(cfg: TrainConfig) -> int:


    out_dir = cfg.out_dir
    devices = cfg.devices
    if cfg.distributed:
        # CPU processes need a collectives backend; accelerators bring their own.
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
        # A peer that dies outside a collective is noticed when its heartbeats stop: after
        # 30 s rather than jax's default 100.
        jax.distributed.initialize(coordinator_address=cfg.coordinator,
                                   num_processes=cfg.num_processes, process_id=cfg.process_id,
                                   heartbeat_timeout_seconds=30)
        devices = jax.local_device_count()
    try:
        rule = make_rule(cfg.rule, **cfg.rule_kwargs())
    except (ValueError, TypeError) as err:
        raise ConfigError(f"rule_config: {err}") from None
    family = _maybe_normalized(make_family(cfg.task), cfg.horizon, cfg.normalize)
    estimator = make_estimator(cfg)
    # Everything that can refuse the run does so before the first byte is written.
    preflight.check_out_folder(out_dir)
    preflight.check_memory(rule, family, estimator)
    checkpoint = checkpoint_path(out_dir)
    lead = True
    if cfg.distributed:
        lead = jax.process_index() == 0
    else:  # orbax reads checkpoints collectively: a distributed job checks inside train
        preflight.check_checkpoint(cfg, rule, checkpoint)
    preflight.make_out_folder(out_dir)
    with contextlib.ExitStack() as stack:
        if lead:
            stack.enter_context(FolderLock(out_dir))
            write_json(os.path.join(out_dir, "config.json"), dataclasses.asdict(cfg))
        log_path = os.path.join(out_dir, "train_log.jsonl")
        start = time.time()
        try:
            result = train(rule, family, estimator, num_steps=cfg.steps, seed=cfg.seed,
                           meta_optimizer=default_meta_optimizer(cfg.meta_lr,
                                                                 cfg.clip_grad_norm),
                           log_path=log_path, checkpoint_path=checkpoint,
                           checkpoint_every=cfg.checkpoint_every, resume=cfg.resume,
                           progress=cfg.progress, devices=devices,
                           run_config=preflight.run_config(cfg))
        except Exception as err:
            if not (cfg.distributed and _peer_failure(err)):
                raise
            _peer_lost(err, checkpoint)
    seconds = time.time() - start
    if not lead:
        return 0  # process 0 saves and reports
    if result.history and all(h.get("skipped") for h in result.history):
        raise RunFailed(f"all {len(result.history)} outer steps of this run were skipped (non-"
                        "finite meta-gradient or theta), so theta did not change; lower "
                        f"--meta-lr or --sigma, or set --loss-clip (checkpoint {checkpoint})")
    rule_path = os.path.join(out_dir, f"{cfg.rule}.lopt")
    eval_cfg = EvalConfig(**{f.name: getattr(cfg, f.name) for f in dataclasses.fields(EvalConfig)})
    save(rule_path, rule, result.theta,
         extra={"task": cfg.task, "train": dataclasses.asdict(cfg),
                "eval": dataclasses.asdict(eval_cfg)})
    with open(log_path) as f:
        history = [_nan_for_null(json.loads(line)) for line in f if line.strip()]
    if history:
        plots.plot_history(history, os.path.join(out_dir, "train_curve.png"),
                            f"meta-training {cfg.rule} on {family.name}")
    skipped = sum(int(h.get("skipped", 0)) for h in history)
    print(f"meta-trained {cfg.rule} on {family.name}: {cfg.steps} outer steps "
          f"({len(result.history)} this run, {seconds:.0f} s), {skipped} skipped; saved {rule_path}")
    run_comparison(rule, result.theta, eval_cfg, out_dir, f"{cfg.rule} (learned)",
                   normalize=cfg.normalize)
    print(f"results in {out_dir}/: comparison*.md, comparison*.json, comparison*.png, "
          f"train_curve.png")
    return 0


def _peer_failure(err) -> bool:
    """Whether ``err`` is a collective that failed because a peer process went away (gloo
    raises it as a JaxRuntimeError from a step and as a ValueError from a host all-gather)."""

    text = str(err)
    return isinstance(err, jax.errors.JaxRuntimeError) or any(
        s in text for s in ("Gloo", "Connection reset", "Connection closed", "heartbeat"))


def _peer_lost(err, checkpoint) -> None:
    """A collective failed because another process of the job died: say so in one line and
    leave at once — jax.distributed's shutdown would wait for the dead peer, then abort with
    pages of coordination-service logs."""
    detail = str(err).strip().splitlines()[0][:200] if str(err).strip() else type(err).__name__
    sys.stderr.write(f"lopt train: failed: another process of the distributed job stopped "
                     f"({detail}); restart every process with the same command to resume from "
                     f"the last checkpoint in {checkpoint}\n")
    sys.stderr.flush()
    sys.stdout.flush()
    os._exit(EXIT_FAILED)


def _nan_for_null(record: dict) -> dict:
    return {k: (float("nan") if v is None else v) for k, v in record.items()}


def cmd_eval(path: str, args) -> int:
    if os.path.isdir(path):
        raise ConfigError(f"checkpoint must be a rule file (.lopt); {path!r} is a folder")
    if not os.path.exists(path):
        raise ConfigError(f"checkpoint must be an existing rule file; {path!r} does not exist")
    rule, theta = load(path)
    stored = load_metadata(path).get("extra", {}).get("eval", {})
    known = {f.name for f in dataclasses.fields(EvalConfig)}
    base = EvalConfig(**{k: (tuple(v) if isinstance(v, list) else v)
                         for k, v in stored.items() if k in known})
    cfg = _config_from_args(EvalConfig, args, base=base)
    out = args.out or os.path.dirname(os.path.abspath(path))
    normalize = bool(load_metadata(path).get("extra", {}).get("train", {}).get("normalize"))
    run_comparison(rule, theta, cfg, out, f"{rule.name} (learned)", normalize=normalize)
    return 0


def cmd_bench(args, argv) -> int:


    if args.suite not in SUITES:
        raise ConfigError(f"suite must be one of {', '.join(sorted(SUITES))}; got {args.suite!r}")
    if args.repeats < 2:
        raise ConfigError(f"repeats must be an integer >= 2; got {args.repeats}")
    out = args.out or os.path.join("benchmarks", args.suite)
    command = " ".join(["lopt"] + list(argv))
    module = importlib.import_module(SUITES[args.suite][0])
    if args.suite in QUICK_SUITES:
        print(module.run(out, quick=args.quick, command=command, progress=args.progress))
    elif args.quick:
        raise ConfigError(f"--quick applies to the suites {', '.join(sorted(QUICK_SUITES))}; "
                          f"got suite {args.suite!r}")
    else:
        print(module.run(out, repeats=args.repeats, command=command))
    print(f"results in {out}/")
    return 0


def cmd_list() -> int:
    samplers = {name: (None, s.description) for name, s in SAMPLERS.items()}
    mixtures = {f"mixture:{name}": (None, f"{d}: {' + '.join(t)}")
                for name, (t, d) in MIXTURES.items()}
    for title, table in (("learned rules", LEARNED), ("hand-designed rules (optax)", BASELINES),
                         ("datasets", DATASETS), ("tasks (lopt train --task NAME)", FAMILIES),
                         ("samplers (--task SAMPLER@SEED)", samplers),
                         ("mixtures (--task mixture:NAME or mixture:A+B+...)", mixtures),
                         ("estimators", ESTIMATORS),
                         ("recipes (lopt train --recipe NAME)",
                          {k: (None, d) for k, (d, _) in RECIPES.items()}),
                         ("benchmark suites (lopt bench SUITE)", SUITES),
                         ("pretrained (lopt.as_optax(NAME))", PRETRAINED)):
        print(f"{title}:")
        for name, (_, description) in table.items():
            print(f"  {name:<{max(12, len(name))}} {description}")
    return 0


# The command being run, its start and the code it runs: the provenance of what it writes.
_COMMAND = {"line": "lopt", "start": time.time(), "code": None}


def main(argv=None) -> int:


    parser = build_parser()
    words = sys.argv[1:] if argv is None else list(argv)
    args = parser.parse_args(join_negative_values(words))
    _COMMAND.update(line=" ".join(["lopt"] + words), start=time.time(), code=git_commit())
    try:
        if args.command == "train":
            return cmd_train(_config_from_args(TrainConfig, args))
        if args.command == "eval":
            return cmd_eval(args.checkpoint, args)
        if args.command == "bench":
            return cmd_bench(args, words)
        return cmd_list()
    except (ConfigError, ValueError) as err:
        sys.stderr.write(f"lopt {args.command}: error: {err}\n")
        return EXIT_USAGE
    except OSError as err:  # a full disk or a vanished folder mid-run
        sys.stderr.write(f"lopt {args.command}: failed: {err}\n")
        return EXIT_FAILED
    except RunFailed as err:
        sys.stderr.write(f"lopt {args.command}: failed: {err}\n")
        return EXIT_FAILED
    except Interrupted as err:
        sys.stderr.write(f"lopt {args.command}: {err}; run the same command to resume\n")
        return EXIT_INTERRUPTED
    except KeyboardInterrupt:
        sys.stderr.write(f"lopt {args.command}: interrupted\n")
        return EXIT_INTERRUPTED


def join_negative_values(words: list) -> list:
    """``--sigma -inf`` as ``--sigma=-inf``: argparse reads a token that starts with "-" and is
    not a plain decimal as an option, so negative floats in exponent form or -inf would not parse
    (the value is then checked, and refused, with the field named)."""
    out = []
    for word in words:
        if out and out[-1].startswith("--") and "=" not in out[-1] and word.startswith("-"):
            try:
                float(word)
            except ValueError:
                pass
            else:
                out[-1] = f"{out[-1]}={word}"
                continue
        out.append(word)
    return out


if __name__ == "__main__":
    sys.exit(main())
