"""`--mode=preview`: a PNG of training views, to check the augmentation flags before training.

Data: the first `--preview_images` images of `--train_split` (in the shuffled file
order training reads, so several classes show). Views: the augmentation the
flags give `--train_mode` (`builders.augment_config`: the full SimCLR recipe for
pretraining, crop and flip for fine-tuning), three pairs per image, drawn by
`tf_simclr.viz.plot_views`. Writes `--preview_file` (default
`model_dir/views.png`) and nothing else: no model, no checkpoint. Needs matplotlib
(`pip install 'tf_simclr[viz]'`).
"""

from __future__ import annotations

import os

from absl import logging

from tf_simclr import builders
from tf_simclr.config import Config, ConfigError

PAIRS = 3


def run(config: Config) -> str:
    """Writes the views PNG of `config`; returns its path."""
    try:
        from tf_simclr import viz

        viz.pyplot()  # fail now, with the install hint, before reading any data
    except ImportError as e:
        raise ConfigError("mode", f"preview draws with matplotlib: {e}", "preview") from None
    source = builders.train_source(config)
    augment = builders.augment_config(config)
    path = config.preview_file or os.path.join(config.model_dir, "views.png")
    figure = viz.plot_views(source, augment, config.preview_images, pairs=PAIRS, seed=config.seed)
    try:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        figure.savefig(path, dpi=figure.dpi, bbox_inches="tight", pad_inches=0.05)
    except OSError as e:
        flag = "preview_file" if config.preview_file else "model_dir"
        raise ConfigError(flag, f"cannot write {path}: {e.strerror}", getattr(config, flag)) from e
    finally:
        import matplotlib.pyplot as plt

        plt.close(figure)
    logging.info(
        "Wrote %d images with %d pairs of views each to %s", config.preview_images, PAIRS, path
    )
    return path
