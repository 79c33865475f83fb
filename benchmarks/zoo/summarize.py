"""Collect benchmarks/zoo/*/comparison.json into benchmarks/zoo/README.md (one table)."""
import json
import pathlib

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
             "compared on held-out instances after 100 inner steps with Adam tuned on a log grid",
             "(1e-4 … 10, four points a decade). Mean final loss ± standard error; ratio < 1 means",
             "the learned rule is better. The folders hold every table, curve and log.", "",
             "| rule | task | outer steps | learned | Adam (lr) | learned / Adam |",
             "|---|---|---|---|---|---|"]
    for rule, task, steps, learned, adam in rows:
        lines.append(f"| {rule} | {task} | {steps} | {learned['final_mean']:.4g} ± "
                     f"{learned['final_sem']:.2g} | {adam['final_mean']:.4g} ± {adam['final_sem']:.2g}"
                     f" ({adam['learning_rate']:.3g}) | "
                     f"{learned['final_mean'] / adam['final_mean']:.2f} |")
    (HERE / "README.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
