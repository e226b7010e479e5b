"""Plots the label-free monitors (--label_free_monitor_steps) of several runs side by side,
one panel per measure, one colour per run, and writes their last values as JSON.

    python scripts/plot_label_free.py docs/figures/label_free_monitors.png \
        base=/tmp/monitor_runs/base no_augmentation=/tmp/monitor_runs/no_augmentation \
        [--json=docs/results/label_free_monitors.json]

Each run is NAME=MODEL_DIR; the scalars are read from MODEL_DIR/train
(`tf_simclr.summaries.read_scalars`), and each run's eval_results.json, when present, adds its
kNN and probe top-1 to the JSON.
"""

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

MEASURES = ("rankme", "embedding_std", "alignment", "uniformity")
TITLES = {
    "rankme": "RankMe (effective rank, higher: more spread)",
    "embedding_std": "embedding std per dim (0: collapse)",
    "alignment": "alignment of positive pairs (lower: closer)",
    "uniformity": "uniformity (lower: more uniform)",
}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("output_png")
    parser.add_argument("runs", nargs="+", help="NAME=MODEL_DIR")
    parser.add_argument("--json", default="")
    args = parser.parse_args(argv)
    from tf_simclr import summaries, viz

    runs = dict(run.split("=", 1) for run in args.runs)
    plt = viz.pyplot()
    fig, axes = plt.subplots(1, len(MEASURES), figsize=(4.2 * len(MEASURES), 3.4), dpi=100)
    summary = {}
    for colour, (name, model_dir) in enumerate(runs.items()):
        series = summaries.read_scalars(model_dir)
        summary[name] = {}
        for ax, measure in zip(axes, MEASURES, strict=True):
            points = series.get(f"label_free/{measure}", [])
            if not points:
                raise SystemExit(f"{model_dir}: no label_free/{measure} scalars")
            steps, values = zip(*points, strict=True)
            ax.plot(steps, values, color=f"C{colour}", label=name, marker=".")
            summary[name][measure] = values[-1]
            summary[name]["step"] = steps[-1]
        results = os.path.join(model_dir, "eval_results.json")
        if os.path.exists(results):
            with open(results) as f:
                evaluation = json.load(f)
            summary[name].update(
                {k: evaluation[k] for k in ("knn_top1", "probe_top1") if k in evaluation}
            )
    for ax, measure in zip(axes, MEASURES, strict=True):
        ax.set_title(TITLES[measure], fontsize=9)
        ax.set_xlabel("step")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(args.output_png)
    print(f"wrote {args.output_png}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(summary, f, indent=2, sort_keys=True)
            f.write("\n")
        print(f"wrote {args.json}")
    for name, values in summary.items():
        print(name, {k: round(v, 4) for k, v in values.items()})


if __name__ == "__main__":
    main()
