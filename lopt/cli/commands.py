"""The ``lopt`` command line: train, eval, bench, list, import; bad input is one line and exit 2."""
from __future__ import annotations

import os
import signal
import sys
import threading

from lopt.cli.compare import cmd_eval
from lopt.cli.invocation import Invocation
from lopt.cli.parser import EXIT_USAGE, build_parser, join_negative_values, train_config
from lopt.cli.phases import CHECKING, phase, phase_of, write_traceback
from lopt.cli.preflight import check_out_folder
from lopt.cli.training import EXIT_FAILED, RunFailed, cmd_train
from lopt.cli.value_checks import ConfigError
from lopt.files.errors import UsageError
from lopt.files.published import SOURCES, import_weights
from lopt.files.run_folder import FolderLock
from lopt.outer import ESTIMATORS
from lopt.outer.signals import STOP_SIGNALS, raise_in_main
from lopt.outer.train import Abandoned, Interrupted
from lopt.pretrained import PRETRAINED
from lopt.pretrained.recipes import RECIPES
from lopt.rules import BASELINES, CONFORMANCE, LEARNED
from lopt.tasks import FAMILIES, MIXTURES, SAMPLERS, WIDTH_FAMILIES
from lopt.tasks.datasets import DATASETS
from lopt.torch.names import RULE_NAMES as TORCH_RULES


def cmd_bench(args, invocation: Invocation) -> int:
    # every suite's module: loaded for bench and list only
    from lopt.bench.registry import LONG_SUITES, SUITES

    if args.suite not in SUITES:
        raise ConfigError(f"suite must be one of {', '.join(sorted(SUITES))}; got {args.suite!r}")
    options = {k: v for k, v in (("interim", args.interim), ("cache", args.cache),
                                 ("reverse", args.reverse)) if v}
    if options and args.suite not in LONG_SUITES:
        raise ConfigError(f"--{next(iter(options))}: only {', '.join(sorted(LONG_SUITES))} "
                          f"takes it; {args.suite!r} does not")
    out = args.out or os.path.join("benchmarks", args.suite)
    cache = args.cache or os.path.join(out, "cache")
    if args.interim and not os.path.isdir(cache):
        raise ConfigError(f"--interim: no cached stages in {cache}; run lopt bench "
                          f"{args.suite} first")
    # An interim report writes only OUT/interim, so a run still filling OUT's cache goes on.
    written = os.path.join(out, "interim") if args.interim else out
    for folder in {written, cache}:
        check_out_folder(folder)  # before the suite's work, which can take hours
    # Every suite is a lopt.bench.suite.Suite with this one run() signature (LONG_SUITES'
    # also take the options above).
    module = SUITES[args.suite][0]
    created = not os.path.exists(out)
    os.makedirs(written, exist_ok=True)
    try:
        # One run per out folder (a second worker writes its own --out; an interim report
        # only OUT/interim).
        with FolderLock(written), phase(f"suite {args.suite}"):
            print(module.run(out, quick=args.quick, command=invocation.line,
                             progress=args.progress, **options))
    except BaseException:
        if created and not os.listdir(out):  # a refused suite leaves nothing behind
            os.rmdir(out)
        raise
    print(f"results in {written}/")
    return 0


def cmd_import(args) -> int:
    if os.path.exists(args.out) and not os.path.isfile(args.out):
        raise ConfigError(f"--out {args.out} is a folder; name the .lopt file to write")
    # Its folder must take a write before the import reads anything (the file itself is
    # written through a temporary beside it, whose name would be the only one said).
    check_out_folder(os.path.dirname(os.path.abspath(args.out)))
    with phase("import"):
        rule, _ = import_weights(args.source, args.file, args.out)
    print(f"wrote {args.out}: rule {rule.name} {rule.config} from {args.file} "
          f"({SOURCES[args.source].reference}); load it with lopt.as_optax({args.out!r})")
    return 0


def cmd_list() -> int:
    from lopt.bench.registry import SUITES

    learned = {name: (None, description + (f" [equals {CONFORMANCE[name]}: conformance fixture]"
                                           if name in CONFORMANCE else "")
                      + (" [PyTorch: lopt.torch]" if name in TORCH_RULES else ""))
               for name, (_, description) in LEARNED.items()}
    sources = {name: (None, f"-> {s.rule}: {s.reference}; published at {s.where}")
               for name, s in SOURCES.items()}
    samplers = {name: (None, s.description) for name, s in SAMPLERS.items()}
    widths = {f"{name}_wWIDTH": (None, f"{d} (e.g. {name}_w64)")
              for name, (_, d) in WIDTH_FAMILIES.items()}
    mixtures = {f"mixture:{name}": (None, f"{d}: {' + '.join(t)}")
                for name, (t, d) in MIXTURES.items()}
    for title, table in (("learned rules", learned), ("hand-designed rules (optax)", BASELINES),
                         ("datasets", DATASETS), ("tasks (lopt train --task NAME)", FAMILIES),
                         ("μP tasks, width in the name (--task NAME_wWIDTH)", widths),
                         ("samplers (--task SAMPLER@SEED)", samplers),
                         ("mixtures (--task mixture:NAME or mixture:A+B+...)", mixtures),
                         ("estimators", ESTIMATORS),
                         ("recipes (lopt train --recipe NAME)",
                          {k: (None, d) for k, (d, _) in RECIPES.items()}),
                         ("benchmark suites (lopt bench SUITE)", SUITES),
                         ("pretrained (lopt.as_optax(NAME))", PRETRAINED),
                         ("import sources (lopt import SOURCE FILE --out NAME.lopt)", sources)):
        print(f"{title}:")
        # One column per table, as wide as its names up to 24 (longer ones push their line).
        width = min(24, max(12, *map(len, table)))
        for name, (_, description) in table.items():
            print(f"  {name:<{max(width, len(name))}} {description}")
    return 0


def _stop(signum, frame):
    raise_in_main(signum, frame, Abandoned(signum))


def main(argv=None) -> int:
    parser = build_parser()
    words = sys.argv[1:] if argv is None else list(argv)
    args = parser.parse_args(join_negative_values(words))
    invocation = Invocation.now(words)
    # Ctrl-C and SIGTERM (a scheduler, a preemptible VM) end any command with one line; inside
    # meta-training the loop takes both over to checkpoint first (lopt.outer.train).
    previous = {s: signal.signal(s, _stop) for s in STOP_SIGNALS} \
        if threading.current_thread() is threading.main_thread() else {}
    try:
        return _run(args, invocation)
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)




def _run(args, invocation) -> int:
    try:
        if args.command == "train":
            return cmd_train(train_config(args), invocation)
        if args.command == "eval":
            return cmd_eval(args.checkpoint, args, invocation)
        if args.command == "bench":
            return cmd_bench(args, invocation)
        if args.command == "import":
            return cmd_import(args)
        return cmd_list()
    except UsageError as err:  # bad input, wherever it is found
        return _usage(args, err)
    except ValueError as err:
        if phase_of(err) == CHECKING:  # a library check of a setting, before any work
            return _usage(args, err)
        return _internal(args, err)
    except (OSError, RunFailed) as err:  # a full disk or a vanished folder mid-run
        sys.stderr.write(f"lopt {args.command}: failed: {err}\n")
        return EXIT_FAILED
    except Interrupted as err:
        sys.stderr.write(f"lopt {args.command}: {err}; run the same command to resume\n")
        return 128 + err.signum
    except KeyboardInterrupt as err:
        signum = getattr(err, "signum", signal.SIGINT)
        what = "interrupted" if signum == signal.SIGINT else \
            f"terminated ({signal.Signals(signum).name})"
        sys.stderr.write(f"lopt {args.command}: {what}; {_what_was_kept(args, err)}\n")
        return 128 + signum
    except Exception as err:
        return _internal(args, err)


def _usage(args, err) -> int:
    sys.stderr.write(f"lopt {args.command}: error: {err}\n")
    return EXIT_USAGE


def _internal(args, err) -> int:
    """An exception lopt did not expect: one line naming the phase and where the traceback
    went (its message may be long or multi-line: the first line of it)."""
    path = write_traceback(err, args.command)
    message = (str(err).strip().splitlines() or [""])[0][:300]
    sys.stderr.write(f"lopt {args.command}: internal error during {phase_of(err)}: "
                     f"{type(err).__name__}: {message} (full traceback: {path}; please report "
                     "it)\n")
    return EXIT_FAILED


def _what_was_kept(args, err) -> str:
    """What a signal outside meta-training's own handling leaves behind, per command."""
    if getattr(err, "saved", None):
        return (f"meta-training had finished and {err.saved} is saved; the comparison was "
                f"not written (lopt eval {err.saved} runs it)")
    if args.command == "train":
        return "nothing saved since the last checkpoint; run the same command to resume"
    if args.command == "bench":
        return ("the stages finished so far are cached in the suite's out folder; run the "
                "same command to resume")
    if args.command == "eval":
        return "no results were written"
    if args.command == "import":
        return "nothing was written"
    return "nothing was done"


if __name__ == "__main__":
    sys.exit(main())
