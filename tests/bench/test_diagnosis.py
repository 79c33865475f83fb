"""The diagnosis suite's control row is the shipped recipe, and every row spends the same
inner-step budget with exactly one change."""
import json

from lopt.bench import diagnosis
from lopt.pretrained.recipes import RECIPES


def test_the_control_row_is_the_adafac_tiny_recipe():
    recipe = RECIPES["adafac_tiny"][1]
    assert diagnosis.TASK == recipe["task"] and diagnosis.RECIPE["rule"] == recipe["rule"]
    assert diagnosis.RECIPE["rule_kwargs"] == json.loads(recipe["rule_config"])
    for key in ("num_runs", "truncation", "horizon", "max_horizon", "sigma", "objective",
                "meta_lr"):
        assert diagnosis.RECIPE[key] == recipe[key], key
    assert recipe.get("weighting", "mean") == diagnosis.RECIPE["weighting"]
    assert recipe["estimator"] == "pes"


def test_every_row_changes_one_thing_and_keeps_the_inner_step_budget():
    control_rule, control, steps = diagnosis.variant_settings("control", 400)
    assert steps == 400
    for name in diagnosis.VARIANTS:
        rule, est, n = diagnosis.variant_settings(name, 400)
        assert n * est.num_runs * est.truncation == 400 * control.num_runs * control.truncation
        changed = {f for f in ("num_runs", "truncation", "horizon", "max_horizon", "sigma",
                               "objective", "weighting")
                   if getattr(est, f) != getattr(control, f)}
        changed |= {"rule"} if rule.name != control_rule.name else set()
        changed |= {k for k, v in rule.config.items() if k in control_rule.config
                    and v != control_rule.config[k]}
        assert len(changed) == (0 if name == "control" else 1) or name == "celo2", (name, changed)
