"""What every seed-reproduction suite shares: meta-training that resumes, comparisons under the
honest protocol, cached stages, and results.json / results.md / PNGs with their provenance.

The protocol (the header of every table): baselines' hyperparameters are chosen on tuning
instances of their own seed (``TUNE_SEED``) and every number is reported on separate evaluation
instances (``EVAL_SEED``); learned rules are meta-trained on instances of the training seed and
the training split only; a run that diverges is counted, never dropped.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import time
from typing import Callable, Dict, Optional

import jax
import numpy as np
from tqdm.auto import tqdm

from lopt.bench import workers
from lopt.evaluation import Instances, compare, final_test_metrics, random_search
from lopt.evaluation.protocol import EVAL_SEED, SUITE_LR_GRID, TUNE_SEED
from lopt.files.atomic import write_atomically, write_json, write_text
from lopt.files.provenance import git_commit, markdown_line, provenance
from lopt.files.rule_file import load, save
from lopt.files.run_folder import checkpoint_path
from lopt.outer import default_meta_optimizer, train
from lopt.rules import ADAM_SEARCH_SPACE, adam_search_rule


def protocol_line(eval_tasks: int, tune_tasks: int, steps: int) -> str:
    return (f"Protocol: {eval_tasks} evaluation instances (seed {EVAL_SEED}), never seen in "
            f"meta-training; baselines tuned on {tune_tasks} separate instances (seed "
            f"{TUNE_SEED}); {steps} inner steps; diverged runs counted in `diverged`, statistics "
            "over the others.")


def _finite_or_none(values) -> list:
    return [None if not np.isfinite(v) else float(v) for v in np.asarray(values, np.float64)]


def summarize(result) -> dict:
    """``Result.summary()`` plus what the suites' statistics and spread plots need: every
    run's final loss (None: diverged) and the 25/75% quantile curves over the runs."""
    s = result.summary()
    curves = np.asarray(result.curves, np.float64)
    s["final"] = _finite_or_none(curves[-1])
    ok = ~result.diverged
    if ok.any():
        q = np.quantile(curves[:, ok], [0.25, 0.75], axis=1)
        s["q25_curve"], s["q75_curve"] = q[0].tolist(), q[1].tolist()
    else:
        s["q25_curve"] = s["q75_curve"] = None
    return s


def mean_auc(summary: dict) -> Optional[float]:
    """Mean area under the loss curve (``lopt.evaluation.metrics.area_under_curve``: mean loss over
    steps 1 … T) over the runs that did not diverge; that equals the mean curve's own mean, so it is
    read off the summary. None when every run diverged."""
    curve = summary.get("mean_curve")
    return None if curve is None else float(np.mean(np.asarray(curve, np.float64)[1:]))


def finals(summary: dict) -> np.ndarray:
    """A summary's per-run final losses with NaN for diverged runs."""
    return np.array([np.nan if v is None else v for v in summary["final"]], np.float64)


def _read_stage(path: str) -> Optional[dict]:
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


class Suite:
    """One run of a suite into ``out``: stages are cached there, so a stopped run resumes."""

    def __init__(self, name: str, out: str, size, command: str, total_stages: int,
                 progress: bool = True, interim: bool = False, cache: Optional[str] = None,
                 reverse: bool = False):
        self.code = git_commit()
        self.name, self.out, self.size, self.command = name, out, size, command
        # A second worker shares the first's cache and computes its stages from the other
        # end; the two meet in the middle (each stage is written atomically, whoever is first).
        self.cache_folder, self.reverse = cache or os.path.join(out, "cache"), reverse
        # An interim report computes nothing: it reads the stages cached so far (a run still
        # going may be adding them) and writes its results beside them, in out/interim.
        self.interim, self.missing = interim, []
        self.start = time.time()
        self.sections: list = []
        self.stages: Dict[str, dict] = {}  # key -> where and how long it was computed
        self.payload: dict = {"suite": name, "size": dataclasses.asdict(size)}
        os.makedirs(self.cache_folder, exist_ok=True)
        if reverse and not interim:
            workers.register(self.cache_folder)  # the first worker times only once it ends
        if interim:
            os.makedirs(self.report_folder, exist_ok=True)
        self.bar = tqdm(total=total_stages, desc=f"lopt bench {name}", disable=not progress,
                        leave=True)

    # -- cached stages -------------------------------------------------------------------
    def cached(self, key: str, compute: Callable[[], object], tag: Optional[dict] = None):
        """``compute()``'s JSON-able value, read back from ``out/cache/key.json`` when a
        previous run computed it from the same inputs: ``tag`` (the stage's own settings), or
        the whole suite size when the stage gives none. In an interim report, None when no
        such stage is cached (its key is kept in ``missing``)."""
        path = os.path.join(self.cache_folder, f"{key}.json")
        tag = json.loads(json.dumps(tag if tag is not None else dataclasses.asdict(self.size)))
        current = _read_stage(path)
        stored = (current if current is not None and current.get("size") == tag
                  else _read_stage(self._superseded(key, tag)))
        if stored is not None and stored.get("size") == tag:
            self._record(key, stored, cached=True)
            self.bar.update(1)
            return stored["value"]
        if self.interim:
            self.missing.append(key)
            return None
        start = time.time()
        value = compute()
        stamp = self._stamp(start)
        # A stage computed with other settings is kept aside, never overwritten: going back
        # to them reads it again instead of recomputing it.
        if current is not None:
            aside = self._superseded(key, current.get("size"))
            os.makedirs(os.path.dirname(aside), exist_ok=True)
            write_atomically(aside, lambda f: json.dump(current, f), mode="w")
        # Atomic: a stop never leaves half a stage. Plain json (NaN allowed): a stage reads
        # back exactly what it computed.
        write_atomically(path, lambda f: json.dump({"size": tag, "value": value, **stamp}, f),
                         mode="w")
        self._record(key, stamp, cached=False)
        self.bar.update(1)
        return value

    def _superseded(self, key: str, tag) -> str:
        digest = hashlib.sha256(json.dumps(tag, sort_keys=True).encode()).hexdigest()[:16]
        return os.path.join(self.cache_folder, "superseded", f"{key}.{digest}.json")

    def in_order(self, items) -> list:
        """``items`` in the order this worker computes their stages."""
        return list(items)[::-1] if self.reverse else list(items)

    def _stamp(self, start: float) -> dict:
        return {"wall_s": round(time.time() - start, 1), "commit": self.code["commit"],
                "dirty": self.code["dirty"]}

    def _record(self, key: str, stored: dict, cached: bool) -> None:
        # Stages cached before per-stage records existed carry no commit or time: None.
        self.stages[key] = {"cached": cached, **{k: stored.get(k)
                                                 for k in ("wall_s", "commit", "dirty")}}

    def meta_train(self, key: str, rule, family, estimator, *, steps: int, meta_lr: float = 3e-3,
                   seed: int = 0, checkpoint_every: Optional[int] = None):
        """Meta-train ``rule`` (checkpointed under ``out/runs/key`` every ``checkpoint_every``
        outer steps, resumed when stopped) and return theta; the rule is saved as
        ``out/runs/key/RULE.lopt``."""

        folder = os.path.join(self.out, "runs", key)
        rule_path = os.path.join(folder, f"{rule.name}.lopt")
        stored = self._stored(folder)
        if os.path.exists(rule_path) and stored.get("steps") == steps:
            self._record(f"meta_train_{key}", stored, cached=True)
            self.bar.update(1)
            return load(rule_path)[1]
        os.makedirs(folder, exist_ok=True)
        start = time.time()
        self.bar.set_postfix_str(f"meta-training {key}")
        result = train(rule, family, estimator, num_steps=steps, seed=seed,
                       meta_optimizer=default_meta_optimizer(meta_lr, 1.0),
                       log_path=os.path.join(folder, "train_log.jsonl"),
                       checkpoint_path=checkpoint_path(folder),
                       # Short runs (the quick sizes) lose little when stopped: one
                       # checkpoint at the end; long ones every 100 steps.
                       checkpoint_every=checkpoint_every or (100 if steps >= 400
                                                             else max(1, steps)), resume=True,
                       progress=False)
        save(rule_path, rule, result.theta, extra={"suite": self.name, "stage": key,
                                                   "family": family.name, "steps": steps})
        # A resumed meta-training's time counts this invocation's part only.
        stamp = self._stamp(start)
        write_json(os.path.join(folder, "steps.json"), {"steps": steps, **stamp}, indent=None)
        self._record(f"meta_train_{key}", stamp, cached=False)
        self.bar.update(1)
        return result.theta

    @staticmethod
    def _stored(folder) -> dict:
        path = os.path.join(folder, "steps.json")
        if not os.path.exists(path):
            return {}
        with open(path) as f:
            return json.load(f)

    def compare(self, key: str, learned: Dict[str, tuple], baselines: Dict[str, Callable],
                family, *, num_tasks: int, tune_tasks: int, num_steps: int,
                search_trials: int = 0, grid=SUITE_LR_GRID, test_metrics: bool = False) -> list:
        """Learned rules (name -> (rule, theta)) and baselines tuned on a log lr grid (name ->
        factory), plus, with ``search_trials``, Adam random search over all its
        hyperparameters; every summary on the evaluation instances. With ``test_metrics`` the
        summaries also hold the mean loss and accuracy on the whole test split after the last
        step (over the runs that did not diverge). Cached under ``key``."""
        def compute():
            self.bar.set_postfix_str(f"evaluating {key}")
            evaluation = Instances.of_seed(EVAL_SEED, num_tasks)
            tuning = Instances.of_seed(TUNE_SEED, tune_tasks)
            results = compare(learned, baselines, family, evaluation, num_steps=num_steps,
                              grid=grid, tuning=tuning)
            if search_trials:
                results.append(random_search(
                    adam_search_rule, ADAM_SEARCH_SPACE, family, evaluation, tuning,
                    num_trials=search_trials, num_steps=num_steps,
                    name=f"adam random search ({search_trials} trials)"))
            summaries = [summarize(r) for r in results]
            if test_metrics:
                for r, summary in zip(results, summaries):
                    summary.update(self._test_metrics(r, learned, baselines, family,
                                                      num_tasks, num_steps))
            return summaries

        tag = {"learned": sorted(learned), "baselines": sorted(baselines), "family": family.name,
               "num_tasks": num_tasks, "tune_tasks": tune_tasks, "num_steps": num_steps,
               "search_trials": search_trials, "grid": list(grid), "test_metrics": test_metrics}
        return self.cached(key, compute, tag)

    @staticmethod
    def _test_metrics(result, learned, baselines, family, num_tasks, num_steps) -> dict:
        if result.name in learned:
            rule, theta = learned[result.name]
        elif result.name in baselines:
            rule, theta = baselines[result.name](learning_rate=result.learning_rate), {}
        else:
            rule, theta = adam_search_rule(result.hparams), {}
        metrics = final_test_metrics(rule, theta, family, jax.random.PRNGKey(EVAL_SEED),
                                     num_tasks=num_tasks, num_steps=num_steps)
        ok = ~result.diverged
        return {f"test_{k}": (float(np.mean(np.asarray(v)[ok])) if ok.any() else None)
                for k, v in metrics.items()}

    def _earlier_invocations(self) -> list:
        """The provenance of the runs whose cached stages this one reused (none reused: [])."""
        path = os.path.join(self.out, "results.json")
        if not any(s["cached"] for s in self.stages.values()) or not os.path.exists(path):
            return []
        with open(path) as f:
            previous = json.load(f).get("provenance") or {}
        earlier = previous.pop("earlier_invocations", []) + [previous]
        previous.pop("stages", None)
        made_by = {s["commit"] for s in self.stages.values() if s["cached"]}
        if None in made_by:  # stages cached before they recorded their commit: keep them all
            return earlier
        # An earlier results.json may come from a run none of whose stages is reused here.
        return [r for r in earlier if r.get("commit") in made_by]

    # -- output --------------------------------------------------------------------------
    def section(self, title: str, text: str) -> None:
        self.sections.append(f"## {title}\n\n{text.rstrip()}\n")

    @property
    def report_folder(self) -> str:
        return os.path.join(self.out, "interim") if self.interim else self.out

    def figure(self, filename: str) -> str:
        return os.path.join(self.report_folder, filename)

    def finish(self, title: str, intro: str) -> str:
        """Write results.json (with provenance) and results.md; returns the markdown."""

        self.bar.close()
        record = provenance(self.command, time.time() - self.start, self.code)
        record["stages"] = self.stages
        record["earlier_invocations"] = self._earlier_invocations()
        if self.interim:
            record["interim"] = {"stages_cached": len(self.stages),
                                 "stages_missing": len(self.missing)}
        folder = self.report_folder
        write_json(os.path.join(folder, "results.json"), {"provenance": record, **self.payload})
        figures = sorted(f for f in os.listdir(folder) if f.endswith(".png"))
        md = (f"# {title}\n\n{markdown_line(record)}\n\n{intro.rstrip()}\n\n"
              + "\n".join(self.sections)
              + ("\n## Figures\n\n" + "\n".join(f"![{f}]({f})" for f in figures) + "\n"
                 if figures else ""))
        write_text(os.path.join(folder, "results.md"), md)
        return md
