#!/usr/bin/env bash
# Meta-train every learned rule of the zoo with `lopt train` on the quadratic and digits-MLP
# families and compare it with Adam tuned on a log grid. Results: benchmarks/zoo/RULE_TASK/.
# Short runs (500 / 150 outer steps) sized for the 2-core development machine.
set -euo pipefail
cd "$(dirname "$0")/../.."
rules=(rnnprop hyperadam multiscale_adam normalized_history per_parameter_mlp hierarchical)
for rule in "${rules[@]}"; do
  lopt train --rule "$rule" --task quadratic --steps 500 --num-tasks 64 --eval-tasks 128 \
    --baselines adam --no-progress --no-resume --out "benchmarks/zoo/${rule}_quadratic"
done
for rule in "${rules[@]}"; do
  lopt train --rule "$rule" --task digits_mlp --steps 150 --num-tasks 32 --eval-tasks 64 \
    --baselines adam --no-progress --no-resume --out "benchmarks/zoo/${rule}_digits_mlp"
done
python benchmarks/zoo/summarize.py
