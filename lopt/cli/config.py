"""Typed configs for the CLI and scripts; every bad value gets one line naming the field."""
from __future__ import annotations

import dataclasses
import inspect
import os
import typing
from typing import Optional, Sequence

from lopt.cli.json_input import JsonInputError, json_object
from lopt.cli.value_checks import (
    ConfigError,
    at_least,
    check_mup_task,
    check_task,
    check_value,
    integer,
    one_of,
    positive,
    tasks_without_validation,
)
from lopt.evaluation.protocol import EVAL_SEED, TUNE_SEED
from lopt.files.metric_writers import wandb_available
from lopt.files.run_folder import RENAMED_SETTINGS
from lopt.outer import ESTIMATORS
from lopt.outer.base import options_of
from lopt.outer.unroll import OBJECTIVE_ALIASES
from lopt.pretrained import PRETRAINED
from lopt.pretrained.recipes import RECIPES
from lopt.rules import BASELINES, LEARNED


def setting(default, *, run: bool, type=None, help: str = ""):
    """A config field with its declaration: ``run`` whether it shapes the meta-training
    trajectory (a resume must then match the checkpoint's value; lopt.cli.preflight reads it),
    ``type`` its flag's type when the default does not tell (None), ``help`` its flag's help."""
    metadata = {"shapes_run": run}
    if type is not None:
        metadata["type"] = type
    if help:
        metadata["help"] = help
    return dataclasses.field(default=default, metadata=metadata)


DEFAULT_BASELINES = ("sgd", "nesterov", "rmsprop", "adam")


@dataclasses.dataclass(frozen=True)
class EvalConfig:
    """How a learned rule is compared against tuned baselines on evaluation instances."""

    # The task family evaluated; for `lopt train` also the one meta-trained on (read it there
    # as TrainConfig.task): `lopt eval` evaluates a saved rule on any task, so the evaluation
    # group holds it.
    task: str = setting("quadratic", run=True)
    eval_tasks: int = setting(256, run=False)
    eval_steps: int = setting(100, run=False)
    eval_seed: int = setting(EVAL_SEED, run=False)
    tune_tasks: int = setting(64, run=False)
    tune_seed: int = setting(TUNE_SEED, run=False)
    baselines: Sequence[str] = setting(DEFAULT_BASELINES, run=False)

    def validate(self) -> "EvalConfig":
        check_task(self.task)
        at_least("eval_tasks", self.eval_tasks, 2)
        at_least("eval_steps", self.eval_steps, 1)
        integer("eval_seed", self.eval_seed)
        at_least("tune_tasks", self.tune_tasks, 1)
        integer("tune_seed", self.tune_seed)
        if self.tune_seed == self.eval_seed:
            raise ConfigError(f"tune_seed must differ from eval_seed ({self.eval_seed}): "
                              "baselines are tuned on instances separate from the reported ones")
        if not self.baselines:
            raise ConfigError(f"baselines must name at least one of {', '.join(sorted(BASELINES))}"
                              "; got none")
        for name in self.baselines:
            one_of("baselines", name, BASELINES)
        return self


@dataclasses.dataclass(frozen=True)
class RuleConfig:
    """The learned rule to meta-train: a registered name and its keyword arguments."""

    rule: str = setting("l2l_lstm", run=True)
    # JSON object of the rule's keyword arguments, e.g. '{"kind": "rnn_b"}'
    rule_config: str = setting("", run=False)
    # each step times the task's μP multipliers (μLO; lopt.mup): μP tasks only
    mup: bool = setting(False, run=True)

    def validate(self) -> "RuleConfig":
        one_of("rule", self.rule, LEARNED)
        self.rule_kwargs()
        if not isinstance(self.mup, bool):
            raise ConfigError(f"mup must be true or false; got {self.mup!r}")
        return self

    def rule_kwargs(self) -> dict:
        """``rule_config`` parsed and checked against the rule's constructor."""
        if not self.rule_config:
            return {}
        try:
            kwargs = json_object(self.rule_config)
        except JsonInputError as err:
            raise ConfigError(f"rule_config must be a JSON object; {err}") from None
        allowed = set(inspect.signature(LEARNED[self.rule][0]).parameters)
        unknown = sorted(set(kwargs) - allowed)
        if unknown:
            raise ConfigError(f"rule_config keys for {self.rule} must be among "
                              f"{', '.join(sorted(allowed))}; got {', '.join(unknown)}")
        hints = typing.get_type_hints(LEARNED[self.rule][0])
        for key, value in kwargs.items():
            check_value(f"rule_config.{key}", value, hints.get(key))
        return kwargs


# Where lopt train's default differs from the library's: a meta-gradient from 128 runs.
ESTIMATOR_DEFAULTS = {"num_runs": 128}


def estimator_options() -> dict:
    """Every option a registered estimator declares (``lopt.outer.base.option``), by name, as
    the first estimator declaring it has it."""
    found = {}
    for cls, _ in ESTIMATORS.values():
        for name, f in options_of(cls).items():
            found.setdefault(name, f)
    return found


def _check_estimator(self) -> "EstimatorConfig":
    """The named estimator built from its own options (its checks are the only range checks);
    an option it does not take, set away from its default, is refused."""
    one_of("estimator", self.estimator, ESTIMATORS)
    takes = options_of(ESTIMATORS[self.estimator][0])
    for f in dataclasses.fields(self):
        if f.name != "estimator" and f.name not in takes and getattr(self, f.name) != f.default:
            users = sorted(n for n, (c, _) in ESTIMATORS.items() if f.name in options_of(c))
            raise ConfigError(f"{f.name} applies to estimator {', '.join(users)} only; got "
                              f"estimator {self.estimator!r}")
    try:
        self.build()
    except (ValueError, TypeError) as err:
        raise ConfigError(str(err)) from None
    longest = self.max_horizon or self.horizon
    if self.truncation > longest and not getattr(self, "full_horizon", False):
        # The library allows it (runs restart inside an unroll); from the command line it is a
        # slip: every unroll would cross a restart of every run.
        raise ConfigError(f"truncation must be at most the longest horizon ({longest}): a "
                          "longer unroll only restarts every run inside it; got "
                          f"{self.truncation} (lower --truncation or raise --horizon / "
                          "--max-horizon)")
    return self


def _build_estimator(self):
    """The estimator config named by ``estimator``, with the options it declares."""
    cls = ESTIMATORS[self.estimator][0]
    return cls(**{name: getattr(self, name) for name in options_of(cls)})


def _estimator_config_class() -> type:
    """``lopt train``'s estimator group: ``estimator`` and every registered estimator's options
    (``lopt.outer.ESTIMATORS``): a new estimator's options are flags with nothing added here."""
    fields = [("estimator", str, setting("tbptt", run=True))]
    for name, f in estimator_options().items():
        fields.append((name, f.type, setting(ESTIMATOR_DEFAULTS.get(name, f.default),
                                             run=f.metadata["shapes_run"],
                                             type=f.metadata.get("type"),
                                             help=f.metadata["flag"])))
    cls = dataclasses.make_dataclass(
        "EstimatorConfig", fields, frozen=True,
        namespace={"__doc__": "The outer-gradient estimator and the truncated inner runs behind "
                              "it (``lopt.outer.UnrollOptions``); each estimator declares its "
                              "own options.",
                   "validate": _check_estimator, "build": _build_estimator})
    cls.__module__ = __name__
    return cls


EstimatorConfig = _estimator_config_class()


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """How long meta-training runs, its meta-optimizer, and where it writes."""

    # a named recipe (lopt/pretrained/recipes.py) whose values are the defaults
    recipe: str = setting("", run=False)
    # Warm start: theta from a shipped optimizer's name or a .lopt file (empty: init_meta).
    init_from: str = setting("", run=True)
    steps: int = setting(1500, run=False)
    # meta-objective: normalized loss (initial 1, tuned Adam's best 0)
    normalize: bool = setting(False, run=True)
    meta_lr: float = setting(3e-3, run=True)
    clip_grad_norm: float = setting(1.0, run=True)
    seed: int = setting(0, run=True)
    out: str = setting("", run=False)  # empty: runs/RULE_TASK
    checkpoint_every: int = setting(100, run=False)
    resume: bool = setting(True, run=False)
    progress: bool = setting(True, run=False)
    # Meta-validation: every validate_every outer steps (0: never), the current theta runs on
    # validate_tasks held-out instances of each training family for validate_steps steps.
    validate_every: int = setting(0, run=False)
    validate_tasks: int = setting(8, run=False)
    validate_steps: int = setting(300, run=False)
    # Metric writers besides OUT/train_log.jsonl: TensorBoard events in logdir (empty: none),
    # and a Weights & Biases run (needs the wandb extra).
    logdir: str = setting("", run=False)
    wandb: bool = setting(False, run=False)

    def validate(self) -> "RunConfig":
        if self.recipe:
            one_of("recipe", self.recipe, RECIPES)
        if self.init_from and not (os.path.isfile(self.init_from)
                                   or self.init_from in PRETRAINED):
            raise ConfigError(f"init_from must be a shipped optimizer ({', '.join(PRETRAINED)}) "
                              f"or an existing .lopt file; got {self.init_from!r}")
        at_least("steps", self.steps, 1)
        positive("meta_lr", self.meta_lr, 1e-12, 10.0)
        positive("clip_grad_norm", self.clip_grad_norm, 1e-12, 1e30)
        integer("seed", self.seed)
        at_least("checkpoint_every", self.checkpoint_every, 1)
        at_least("validate_every", self.validate_every, 0)
        at_least("validate_tasks", self.validate_tasks, 1)
        at_least("validate_steps", self.validate_steps, 1)
        if self.wandb and not wandb_available():
            raise ConfigError("wandb needs the wandb package: pip install 'lopt[wandb]'")
        return self


@dataclasses.dataclass(frozen=True)
class DistributionConfig:
    """Where the inner runs go: local devices, and the processes of a ``jax.distributed`` job
    (all three of coordinator, num_processes and process_id, or none to let jax detect them)."""

    devices: Optional[int] = setting(None, run=False, type=int)
    # Devices per block of runs: a runs × model mesh for tensor-parallel (NAME_tp) tasks.
    model_parallel: int = setting(1, run=False, type=int)
    distributed: bool = setting(False, run=False)
    coordinator: Optional[str] = setting(None, run=False, type=str)
    num_processes: Optional[int] = setting(None, run=False, type=int)
    process_id: Optional[int] = setting(None, run=False, type=int)
    # Seconds a process waits for the whole job to join before it gives up with one line.
    join_timeout: int = setting(120, run=False, type=int)

    def validate(self) -> "DistributionConfig":
        if self.devices is not None:
            at_least("devices", self.devices, 1)
        at_least("model_parallel", self.model_parallel, 1)
        if self.model_parallel > 1 and self.devices is None and not self.distributed:
            raise ConfigError(f"model_parallel ({self.model_parallel}) needs --devices: the "
                              "devices its runs × model mesh is laid over")
        if self.devices is not None and self.devices % self.model_parallel:
            raise ConfigError(f"model_parallel ({self.model_parallel}) must divide devices "
                              f"({self.devices})")
        manual = (self.coordinator, self.num_processes, self.process_id)
        if any(v is not None for v in manual) and not self.distributed:
            raise ConfigError("coordinator, num_processes and process_id need --distributed")
        if self.distributed and any(v is None for v in manual) and \
                any(v is not None for v in manual):
            raise ConfigError("coordinator, num_processes and process_id go together: give all "
                              "three, or none to let jax.distributed detect the cluster")
        at_least("join_timeout", self.join_timeout, 1)
        if self.num_processes is not None:
            at_least("num_processes", self.num_processes, 1)
        if self.process_id is not None:
            at_least("process_id", self.process_id, 0)
            if self.num_processes is not None and self.process_id >= self.num_processes:
                raise ConfigError(f"process_id must be < num_processes ({self.num_processes}); "
                                  f"got {self.process_id}")
        return self


# The groups of ``lopt train`` in flag order; every field of each is one flag.
GROUPS = {"evaluation": EvalConfig, "learned": RuleConfig, "outer": EstimatorConfig,
          "run": RunConfig, "distribution": DistributionConfig}


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """``lopt train``: meta-train a learned rule, save it, and compare it against baselines.

    Composed of small groups — the ``learned`` rule, the ``outer`` estimator, the ``run``, its
    ``distribution`` and the ``evaluation`` after it — whose fields are the CLI's flags one to
    one (``flat`` and ``from_flat`` convert). The defaults meta-train the L2L LSTM on the
    quadratic family on 2 CPU cores in a few minutes.
    """

    evaluation: EvalConfig = EvalConfig()
    learned: RuleConfig = RuleConfig()
    outer: EstimatorConfig = EstimatorConfig()
    run: RunConfig = RunConfig()
    distribution: DistributionConfig = DistributionConfig()

    @classmethod
    def from_flat(cls, **values) -> "TrainConfig":
        """The config whose groups take their fields from ``values`` (flag name → value; a
        renamed setting's old name, as stored configs and recipes may hold it, is read as
        its new one)."""
        values = {RENAMED_SETTINGS.get(k, k): v for k, v in values.items()}
        known = {f.name for group in GROUPS.values() for f in dataclasses.fields(group)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"unknown settings {', '.join(unknown)}")
        return cls(**{name: group(**{f.name: values[f.name] for f in dataclasses.fields(group)
                                     if f.name in values})
                      for name, group in GROUPS.items()})

    def flat(self) -> dict:
        """Every field of every group by its flag name: what config.json and rule files hold."""
        return {k: v for name in GROUPS for k, v in dataclasses.asdict(getattr(self, name)).items()}

    def replace(self, **values) -> "TrainConfig":
        return TrainConfig.from_flat(**{**self.flat(), **values})

    def validate(self) -> "TrainConfig":
        for name in GROUPS:
            getattr(self, name).validate()
        if OBJECTIVE_ALIASES.get(self.outer.objective, self.outer.objective) == "valid":
            missing = tasks_without_validation(self.task)
            if missing:
                raise ConfigError(f"objective 'valid' needs a validation split; task "
                                  f"{self.task!r} has no validation split in "
                                  f"{', '.join(missing)}")
        if self.learned.mup:
            check_mup_task(self.task)
        devices = self.distribution.devices
        groups = None if devices is None else devices // self.distribution.model_parallel
        if groups is not None and self.outer.num_runs % groups:
            what = "devices" if groups == devices else "devices / model_parallel"
            raise ConfigError(f"num_runs must be a multiple of {what} ({groups}); "
                              f"got {self.outer.num_runs}")
        return self

    @property
    def task(self) -> str:
        """The task family meta-trained on (``--task``), whose evaluation instances the
        comparison after training uses."""
        return self.evaluation.task

    @property
    def out_dir(self) -> str:
        return self.run.out or f"runs/{self.learned.rule}_{self.task}"
