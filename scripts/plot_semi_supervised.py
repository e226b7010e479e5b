"""Bar chart of the SimCLRv2 recipe on CIFAR-10 (experiments/cifar10_semi_supervised/).

    python scripts/plot_semi_supervised.py    # reads docs/results/semi_supervised/*/

Writes docs/figures/semi_supervised.png: test top-1 of each step's network.
"""

import json
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(ROOT, "docs", "results", "semi_supervised")
STEPS = [
    ("finetune_1pct", "fine-tuned, 1% labels\nR18 1/4"),
    ("finetune_10pct", "teacher: fine-tuned,\n10% labels, R18 1/4"),
    ("distill_self", "self-distilled\nR18 1/4"),
    ("distill_small", "distilled student\nR18 1/8"),
    ("baseline_small_10pct", "10% labels alone\nR18 1/8"),
]


def main() -> None:
    names, values = [], []
    for step, label in STEPS:
        path = os.path.join(RESULTS, step, "eval_results.json")
        if os.path.exists(path):
            with open(path) as f:
                values.append(100 * json.load(f)["top1"])
            names.append(label)
    fig, ax = plt.subplots(figsize=(8, 3.6))
    colours = ["#999999", "#1f77b4", "#2ca02c", "#ff7f0e", "#d62728"][: len(values)]
    bars = ax.bar(names, values, color=colours)
    ax.bar_label(bars, fmt="%.1f")
    ax.set_ylabel("CIFAR-10 test top-1 (%)")
    ax.set_ylim(0, max(values) * 1.15)
    ax.set_title("SimCLRv2 recipe at CPU scale (5 pretraining epochs, one seed)")
    ax.tick_params(axis="x", labelsize=8)
    fig.tight_layout()
    out = os.path.join(ROOT, "docs", "figures", "semi_supervised.png")
    fig.savefig(out, dpi=120)
    print(out)


if __name__ == "__main__":
    main()
