"""`--mode=export`: a TF Serving SavedModel of the latest checkpoint of `model_dir`.

The model is rebuilt from `model_dir/model.json`, so `run.py --mode=export
--model_dir=DIR` needs no other flag and no training data. The SavedModel goes
to `model_dir/saved_model/<step>/` (see `tf_simclr.export`) and carries the
model description, so it can itself be a `--checkpoint`. Older versions beyond the
newest `--keep_hub_module_max` are then deleted (0 keeps all).
"""

from __future__ import annotations

import os

import tensorflow as tf
from absl import logging

from tf_simclr import export, run_dir
from tf_simclr.config import Config


def run(config: Config, strategy: tf.distribute.Strategy) -> str:
    """Exports the latest checkpoint of `config.model_dir`; returns the SavedModel's path."""
    model, step, config = run_dir.load_model(config.model_dir, config, strategy)
    description = run_dir.read(config.model_dir) or run_dir.describe(
        config, getattr(model, "num_classes", 0)
    )
    path = export.export_saved_model(
        model,
        os.path.join(config.model_dir, "saved_model"),
        step,
        config.image_size,
        description=description,
    )
    logging.info("Exported SavedModel for step %d to %s", step, path)
    deleted = export.prune_exports(
        os.path.join(config.model_dir, "saved_model"), config.keep_hub_module_max, newest=step
    )
    if deleted:
        logging.info("Deleted older SavedModels %s (--keep_hub_module_max)", deleted)
    return path
