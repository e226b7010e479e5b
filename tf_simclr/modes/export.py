"""`--mode=export`: the latest checkpoint of `model_dir` as a TF Serving SavedModel, and as
LiteRT and ONNX files when `--export_format` asks for them.

The model is rebuilt from `model_dir/model.json`, so `run.py --mode=export
--model_dir=DIR` needs no other flag and no training data. The SavedModel goes
to `model_dir/saved_model/<step>/` (see `tf_simclr.export`) and carries the
model description, so it can itself be a `--checkpoint`. Older versions beyond the
newest `--keep_hub_module_max` are then deleted (0 keeps all). LiteRT and ONNX files
(`tf_simclr.export_formats`) go to `model_dir/litert/<step>.tflite` and
`model_dir/onnx/<step>.onnx`, each checked against the Keras model when written.
"""

from __future__ import annotations

import os

import tensorflow as tf
from absl import logging

from tf_simclr import export, export_formats, run_dir
from tf_simclr.config import Config, flags_for


def run(config: Config, strategy: tf.distribute.Strategy) -> str:
    """Exports the latest checkpoint of `config.model_dir`; returns the path of the first
    format of `--export_format` (the SavedModel's by default)."""
    model, step, config = run_dir.load_model(config.model_dir, config, strategy)
    paths = []
    for name in config.export_formats:
        if name == "saved_model":
            paths.append(_saved_model(model, step, config))
            continue
        path = os.path.join(config.model_dir, name, f"{step}.{_SUFFIX[name]}")
        with flags_for():
            if name == "litert":
                report = export_formats.export_litert(
                    model, path, config.image_size, quantize=config.export_litert_quantize
                )
            else:
                report = export_formats.export_onnx(model, path, config.image_size)
        logging.info(
            "Exported %s for step %d to %s (%d bytes; largest relative difference from the "
            "Keras model %.1e)",
            name,
            step,
            report["path"],
            report["bytes"],
            report["max_relative_difference"],
        )
        paths.append(report["path"])
    return paths[0]


_SUFFIX = {"litert": "tflite", "onnx": "onnx"}


def _saved_model(model, step: int, config: Config) -> str:
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
