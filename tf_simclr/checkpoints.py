"""Checkpoints: saving, resuming, and initialising a fine-tune run from a pretrain run.

Precedence, in one place (`restore_or_initialize`):
1. `model_dir` holds a checkpoint: resume from its latest (model, optimizer
   slots, step, hence the learning-rate position);
2. else `init_checkpoint` is given: load the encoder (and projection head)
   from it, e.g. a pretraining run into a fine-tuning run;
3. else start from the fresh initialisation.

Checkpoints are `tf.train.Checkpoint(model=..., optimizer=...)` files named
`ckpt-<step>`; `tf.train.CheckpointManager` records a checkpoint in
`model_dir/checkpoint` only after all its files are written, so a crash never
leaves a half-written checkpoint that a restart would pick up.
"""

from __future__ import annotations

import os

import keras
import tensorflow as tf
from absl import logging

from tf_simclr.config import ConfigError

CHECKPOINT_NAME = "ckpt"


def manager_for(model, optimizer, model_dir: str, max_to_keep: int) -> tf.train.CheckpointManager:
    checkpoint = tf.train.Checkpoint(model=model, optimizer=optimizer)
    return tf.train.CheckpointManager(
        checkpoint, model_dir, max_to_keep, checkpoint_name=CHECKPOINT_NAME
    )


def resolve(path: str, flag: str = "checkpoint") -> str:
    """A checkpoint prefix from a prefix or a directory (its latest); ConfigError otherwise."""
    if tf.io.gfile.isdir(path):
        latest = tf.train.latest_checkpoint(path)
        if latest is None:
            raise ConfigError(flag, "directory holds no checkpoint", path)
        return latest
    if not tf.io.gfile.exists(path + ".index"):
        raise ConfigError(flag, "no such checkpoint (give a ckpt-N prefix or a model_dir)", path)
    return path


def load_parts(parts: dict[str, keras.Model | keras.layers.Layer], path: str) -> None:
    """Loads the named sub-models (`encoder`, `head`) of a saved `model` from `path`.

    The checkpoint's `model` must have attributes of the same names (as
    `SimCLR` and `Classifier` do). Variables the parts do not have (optimizer
    slots, the online probe, a classifier) are ignored with a log line; parts
    missing from the checkpoint, or variables whose shapes differ, are a
    ConfigError naming the variable.
    """
    path = resolve(path)
    status = tf.train.Checkpoint(model=tf.train.Checkpoint(**parts)).restore(path)
    try:
        status.assert_existing_objects_matched()
    except (AssertionError, ValueError) as e:
        raise ConfigError(
            "checkpoint",
            f"does not contain the {' and '.join(parts)} of this model: {str(e)[:300]}",
            path,
        ) from e
    status.expect_partial()
    used = sum(len(p.weights) for p in parts.values())
    total = len(tf.train.load_checkpoint(path).get_variable_to_shape_map())
    logging.info(
        "Loaded %s from %s (%d variables); ignored %d other checkpoint entries "
        "(optimizer, online probe, counters)",
        " and ".join(parts),
        path,
        used,
        max(total - used, 0),
    )


def restore_or_initialize(
    manager: tf.train.CheckpointManager,
    init_checkpoint: str = "",
    init_parts: dict | None = None,
    resume_dir: str | None = None,
) -> str:
    """Applies the precedence above; returns what happened ("resumed", "initialized", "fresh").

    `resume_dir` is the model_dir to resume from when it is not the manager's
    directory (a non-chief worker saves to a temporary directory but resumes
    from the chief's checkpoints).
    """
    latest = tf.train.latest_checkpoint(resume_dir or manager.directory)
    if latest:
        try:
            manager.checkpoint.restore(latest).assert_existing_objects_matched()
        except (AssertionError, ValueError) as e:
            raise ConfigError(
                "model_dir",
                f"its checkpoint {os.path.basename(latest)} does not fit this "
                f"model (was it written with other flags?): {str(e)[:300]}",
            ) from e
        logging.info("Resumed from %s", latest)
        return "resumed"
    if init_checkpoint:
        try:
            load_parts(init_parts or {}, init_checkpoint)
        except ValueError as e:  # a shape mismatch raised during restore
            if isinstance(e, ConfigError):
                raise
            raise ConfigError("checkpoint", f"does not fit this model: {str(e)[:300]}") from e
        return "initialized"
    return "fresh"
