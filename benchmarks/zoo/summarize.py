"""Collect benchmarks/zoo/*/comparison.json into benchmarks/zoo/README.md (one table)."""
import json
import pathlib

from lopt.report import format_loss

HERE = pathlib.Path(__file__).resolve().parent


def main():
    rows = []
    for path in sorted(HERE.glob("*/comparison.json")):
        data = json.loads(path.read_text())
        learned = [r for r in data["results"] if r["learning_rate"] is None][0]
        adam = [r for r in data["results"] if r["name"] == "adam"][0]
        config = json.loads((path.parent / "config.json").read_text())
        rows.append((config["rule"], config["task"], config["steps"], learned, adam))
    lines = ["# Learned-rule zoo against tuned Adam", "",
             "Made by `benchmarks/zoo/run.sh` then `python benchmarks/zoo/summarize.py`: each rule",
             "meta-trained by `lopt train` (TBPTT, truncation 20, horizon 100) for a short run, then",
             "compared on held-out instances after 100 inner steps with Adam whose learning rate",
             "is tuned on a log grid (1e-4 … 10, four points a decade) on 64 separate tuning",
             "instances. Mean final loss ± standard error over the evaluation runs",
             "that did not diverge; diverged runs (a non-finite loss at any step) are counted, and",
             "the ratio is only given without divergence. Ratio < 1 means the learned rule is",
             "better. The folders hold every table, curve and log.", "",
             "| rule | task | outer steps | learned | diverged | Adam (lr) | Adam diverged |"
             " learned / Adam |",
             "|---|---|---|---|---|---|---|---|"]

    for rule, task, steps, learned, adam in rows:
        clean = learned["diverged"] == 0 and adam["diverged"] == 0
        ratio = f"{learned['final_mean'] / adam['final_mean']:.2f}" if clean else "—"
        lines.append(f"| {rule} | {task} | {steps} | {format_loss(learned)} | "
                     f"{learned['diverged']}/{learned['num_tasks']} | {format_loss(adam)} "
                     f"({adam['learning_rate']:.3g}) | {adam['diverged']}/{adam['num_tasks']} | "
                     f"{ratio} |")
    (HERE / "README.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
