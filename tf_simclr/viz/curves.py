"""The training curves of a run, from its TensorBoard event files: `plot_training`."""

from __future__ import annotations

import os
from collections.abc import Sequence

from tf_simclr.errors import ArgumentError
from tf_simclr.summaries import read_scalars
from tf_simclr.viz.figure import pyplot, save

# The training scalars `plot_training` draws, in panel order (`train/<logs key>` as
# written by `tf_simclr.callbacks.ScalarSummaries`).
TRAINING_PANELS = ("train/loss", "train/contrast_acc", "train/probe_acc", "train/learning_rate")


def plot_training(
    model_dir: str, *, path: str | None = None, tags: Sequence[str] = TRAINING_PANELS
):
    """The training scalars of a run: one panel per tag in `tags` the run wrote.

    Reads the TensorBoard events `run.py` writes to `model_dir/train`
    (`--train_summary_steps`): by default the contrastive loss, the contrastive
    accuracy, the online probe's accuracy and the learning rate. The values are
    Keras' running means within each epoch, so curves step at epoch boundaries.

    Returns:
      the matplotlib Figure, one panel per tag found.

    Raises:
      ArgumentError (`model_dir`): no events with any of `tags`.
    """
    series = read_scalars(model_dir)
    panels = [tag for tag in tags if tag in series]
    if not panels:
        raise ArgumentError(
            "model_dir",
            f"no training scalars ({', '.join(tags)}) in event files under "
            f"{os.path.join(model_dir, 'train')}",
            model_dir,
        )
    plt = pyplot()
    fig, axes = plt.subplots(1, len(panels), figsize=(3.6 * len(panels), 3.0), squeeze=False)
    for ax, tag in zip(axes[0], panels, strict=True):
        steps, values = zip(*series[tag], strict=True)
        ax.plot(steps, values, lw=1.2)
        ax.set_title(tag.split("/", 1)[-1], fontsize=10)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return save(fig, path)
