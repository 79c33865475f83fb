#!/usr/bin/env bash
# Meta-train every learned rule of the zoo with `lopt train` on the quadratic and digits-MLP
# families and compare it with Adam tuned on a log grid. Results: benchmarks/zoo/RULE_TASK/.
# Short runs sized for the 2-core development machine (see README.md there for the steps).
# Multiscale Adam's fixed step size η is a hyperparameter of the method (seed 000 tunes it):
# it is set to tuned Adam's learning rate on each task.
set -euo pipefail
cd "$(dirname "$0")/../.."
common="--baselines adam --no-progress --no-resume"
quad="--task quadratic --steps 500 --num-tasks 64 --eval-tasks 128"
for rule in rnnprop hyperadam normalized_history per_parameter_mlp hierarchical; do
  lopt train --rule "$rule" $quad $common --out "benchmarks/zoo/${rule}_quadratic"
done
lopt train --rule multiscale_adam --rule-config '{"learning_rate": 0.3}' $quad $common \
  --out benchmarks/zoo/multiscale_adam_quadratic

lopt train --rule rnnprop --task digits_mlp --steps 150 --num-tasks 32 --eval-tasks 64 $common \
  --out benchmarks/zoo/rnnprop_digits_mlp
digits="--task digits_mlp --steps 60 --num-tasks 32 --eval-tasks 64"
for rule in normalized_history per_parameter_mlp hierarchical; do
  lopt train --rule "$rule" $digits $common --out "benchmarks/zoo/${rule}_digits_mlp"
done
# At the default meta-lr (3e-3) HyperAdam's meta-training on digits diverged (inner loss 360,
# final loss at chance, 2.30); 1e-3 trains stably.
lopt train --rule hyperadam --meta-lr 0.001 $digits $common --out benchmarks/zoo/hyperadam_digits_mlp
lopt train --rule multiscale_adam --rule-config '{"learning_rate": 0.1}' $digits $common \
  --out benchmarks/zoo/multiscale_adam_digits_mlp
python benchmarks/zoo/summarize.py
