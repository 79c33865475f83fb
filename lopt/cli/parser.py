"""The ``lopt`` argument parser: one flag per field of the typed configs, one-line errors."""
from __future__ import annotations

import argparse
import dataclasses
import sys

from lopt.cli.config import GROUPS, EvalConfig, TrainConfig
from lopt.cli.value_checks import ConfigError
from lopt.pretrained.recipes import recipe_config

EXIT_USAGE = 2


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (no usage dump) and exit code 2."""

    def error(self, message):
        sys.stderr.write(f"{self.prog}: error: {message}\n")
        sys.exit(EXIT_USAGE)


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _add_config_options(parser: argparse.ArgumentParser, cls) -> None:
    """A flag for every field of dataclass ``cls``; unset flags parse as None."""
    for field in dataclasses.fields(cls):
        default = field.default
        help_text = "; ".join(filter(None, (field.metadata.get("help"), f"default: {default!r}")))
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


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="lopt", description="Meta-learned optimizers in JAX.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    p_train = sub.add_parser("train", help="meta-train a learned rule, then compare it with tuned "
                                           "baselines on evaluation instances")
    for name, group in GROUPS.items():
        summary = " ".join(group.__doc__.split("\n\n")[0].split())
        _add_config_options(p_train.add_argument_group(name, summary), group)
    # The name TensorBoard users look for; the same setting as --validate-every, kept as an
    # alias until lopt 0.4.
    p_train.add_argument("--eval-every", dest="validate_every", default=None, type=int,
                         metavar="INT", help="meta-validation every N outer steps "
                                             "(= --validate-every; removed in lopt 0.4)")
    # lopt 0.2's name of --num-runs (it counts inner runs, not tasks), until lopt 0.4.
    p_train.add_argument("--num-tasks", dest="num_runs", default=None, type=int,
                         metavar="INT", help="inner runs per meta-gradient (= --num-runs; "
                                             "removed in lopt 0.4)")
    p_eval = sub.add_parser("eval", help="re-run the comparison for a saved rule")
    p_eval.add_argument("checkpoint", help="a rule file written by `lopt train` (or lopt.save)")
    p_eval.add_argument("--out", default=None, help="folder for the results "
                                                    "(default: the checkpoint's folder)")
    _add_config_options(p_eval, EvalConfig)
    p_bench = sub.add_parser("bench", help="run a benchmark suite and write its results")
    p_bench.add_argument("suite", help="the suite to run (see `lopt list`)")
    p_bench.add_argument("--out", default=None, help="folder for the results "
                                                     "(default: benchmarks/SUITE)")
    p_bench.add_argument("--quick", action="store_true",
                         help="a small size that finishes in a few minutes")
    p_bench.add_argument("--no-progress", dest="progress", action="store_false",
                         help="no progress bar")
    p_bench.add_argument("--interim", action="store_true",
                         help="compute nothing: report the rows cached so far into OUT/interim "
                              "(while a run of the suite may still be going; pretrained only)")
    p_bench.add_argument("--cache", default=None,
                         help="folder of the cached stages (default: OUT/cache); with "
                              "--reverse, a second worker on another run's cache "
                              "(pretrained only)")
    p_bench.add_argument("--reverse", action="store_true",
                         help="compute the stages last task first, so a second worker on a "
                              "shared --cache meets the first in the middle (pretrained only)")
    sub.add_parser("list", help="list rules, tasks, estimators, benchmark suites and "
                                "pretrained optimizers")
    p_import = sub.add_parser("import", help="convert an optimizer's published weights into a "
                                             ".lopt file")
    p_import.add_argument("source", help="the layout the file is in (see `lopt list`)")
    p_import.add_argument("file", help="the published file (a theta.state, a model.safetensors) "
                                       "or, for lo-checkpoint, the folder")
    p_import.add_argument("--out", required=True, help="the .lopt file to write")
    return parser


def _given(cls, args) -> dict:
    return {f.name: getattr(args, f.name) for f in dataclasses.fields(cls)
            if getattr(args, f.name, None) is not None}


def train_config(args) -> TrainConfig:
    """The TrainConfig of ``lopt train``'s flags over its recipe's values (if ``--recipe``)
    over the defaults, validated."""
    base = TrainConfig()
    if args.recipe:
        try:
            base = TrainConfig.from_flat(**recipe_config(args.recipe))
        except ValueError as err:
            raise ConfigError(str(err)) from None
    given = {k: v for group in GROUPS.values() for k, v in _given(group, args).items()}
    return base.replace(**given).validate()


def eval_config(args, base: EvalConfig) -> EvalConfig:
    """The EvalConfig of ``lopt eval``'s flags over ``base`` (the rule file's), validated."""
    return dataclasses.replace(base, **_given(EvalConfig, args)).validate()


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
