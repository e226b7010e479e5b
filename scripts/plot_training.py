"""Plots training scalars (loss, contrastive accuracy, probe accuracy) from a model_dir.

    python scripts/plot_training.py runs/cifar10_proof docs/figures/proof_loss.png

Reads the TensorBoard event files that `run.py` writes to <model_dir>/train and
saves one PNG with a panel per scalar.
"""

import argparse
import glob
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import tensorflow as tf  # noqa: E402

PANELS = ("train/loss", "train/contrast_acc", "train/probe_acc", "train/learning_rate")


def read_scalars(model_dir: str) -> dict[str, list[tuple[int, float]]]:
    """{tag: [(step, value), ...]} from every event file under model_dir/train, by step."""
    series: dict[str, dict[int, float]] = {}
    for path in sorted(glob.glob(os.path.join(model_dir, "train", "events.out.tfevents.*"))):
        for event in tf.compat.v1.train.summary_iterator(path):
            for value in event.summary.value:
                number = (
                    float(tf.make_ndarray(value.tensor))
                    if value.HasField("tensor")
                    else (value.simple_value)
                )
                series.setdefault(value.tag, {})[event.step] = number
    return {tag: sorted(points.items()) for tag, points in series.items()}


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("model_dir")
    parser.add_argument("output_png")
    args = parser.parse_args()
    series = read_scalars(args.model_dir)
    panels = [tag for tag in PANELS if tag in series]
    if not panels:
        raise SystemExit(f"no training scalars under {args.model_dir}/train")
    fig, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 3.2))
    for ax, tag in zip(axes if len(panels) > 1 else [axes], panels, strict=True):
        steps, values = zip(*series[tag], strict=True)
        ax.plot(steps, values, lw=1.2)
        ax.set_title(tag.split("/", 1)[1])
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(args.output_png)), exist_ok=True)
    fig.savefig(args.output_png, dpi=110)
    print(f"wrote {args.output_png}")


if __name__ == "__main__":
    main()
