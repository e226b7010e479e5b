"""`--mode=import`: a published SimCLR model (reference TF2 SavedModel or checkpoint) as a
self-describing model_dir of ours.

    python run.py --mode=import --checkpoint=r50_1x_sk1/saved_model --model_dir=runs/r50_1x_sk1

reads `--checkpoint` (a reference SavedModel directory, model_dir or `ckpt-N` prefix),
infers its architecture and copies its variables into our `SimCLR` (`tf_simclr.official`;
a SavedModel is also run against ours), then writes what a training run would:
`config.json`, `model.json` (the inferred architecture), the checkpoint `ckpt-0` and
the SavedModel `saved_model/0/`. `--mode=eval`, `--mode=export` and
`--train_mode=finetune --checkpoint=<model_dir>` then take the directory like any other.
The architecture flags are ignored (the source decides them); `--image_size` is kept when
it selects the source's stem (<= 32: CIFAR), else 32 or 224.
"""

from __future__ import annotations

import os

import tensorflow as tf
from absl import logging

from tf_simclr import builders, checkpoints, export, official, run_dir
from tf_simclr.config import Config, ConfigError, flags_for, save_config


def config_for(config: Config, architecture: official.Architecture) -> Config:
    """`config` with the architecture of an imported model."""
    image_size = config.image_size
    if config.cifar_stem != architecture.cifar_stem:
        image_size = 32 if architecture.cifar_stem else 224
    return config.replace(
        **run_dir.architecture_fields(architecture, config),
        train_mode="pretrain",
        ft_proj_selector=architecture.ft_proj_selector,
        lineareval_while_pretraining=architecture.num_classes > 0,
        fine_tune_after_block=-1,
        image_size=image_size,
    )


def run(resolved, strategy: tf.distribute.Strategy) -> dict:
    """Imports `--checkpoint` into `--model_dir` (a `resolver.Resolved`); returns what was
    written."""
    config, location = resolved.config, resolved.checkpoint
    if location is None:
        raise ConfigError(
            "checkpoint", "--mode=import needs the reference SavedModel or checkpoint to import"
        )
    if resolved.model_dir.description is not None or resolved.model_dir.has_checkpoint:
        raise ConfigError(
            "model_dir", "already holds a model; import into a new directory", config.model_dir
        )
    return write_model_dir(config, strategy, location.source, location.architecture)


def write_model_dir(
    config: Config,
    strategy: tf.distribute.Strategy,
    source: official.ReferenceVariables,
    architecture: official.Architecture,
) -> dict:
    """Imports the reference model `source` (read from `config.checkpoint`) of
    `architecture` into the new directory `config.model_dir`; returns what was written."""
    config = config_for(config, architecture)
    config.validate()

    # Our model, built as every mode builds it, and the variables copied in.
    with strategy.scope():
        model = builders.build_pretrain_model(config, architecture.num_classes)
    with flags_for(path="checkpoint"):
        result = official.import_official(
            config.checkpoint, model=model, source=source, architecture=architecture
        )
    config = config.replace(ft_proj_selector=result.architecture.ft_proj_selector)

    # A self-describing model_dir: config, description, checkpoint ckpt-0, SavedModel.
    tf.io.gfile.makedirs(config.model_dir)
    save_config(config, config.model_dir)
    description = run_dir.describe(config, architecture.num_classes)
    description["imported_from"] = {
        "source": os.path.abspath(config.checkpoint),
        "kind": result.source.kind,
        "architecture": architecture.name(),
        "max_relative_difference": result.max_relative_difference,
    }
    run_dir.write(os.path.join(config.model_dir, run_dir.MODEL_FILE), description)
    manager = tf.train.CheckpointManager(
        tf.train.Checkpoint(model=model),
        config.model_dir,
        config.keep_checkpoint_max,
        checkpoint_name=checkpoints.CHECKPOINT_NAME,
    )
    checkpoint = manager.save(checkpoint_number=0)
    saved_model = export.export_saved_model(
        model,
        os.path.join(config.model_dir, "saved_model"),
        0,
        config.image_size,
        description=description,
    )
    difference = result.max_relative_difference
    logging.info(
        "Imported %s (%s, %s) into %s in %.1f s%s",
        config.checkpoint,
        result.source.kind,
        architecture.name(),
        config.model_dir,
        result.seconds,
        "" if difference is None else f"; largest relative difference to it {difference:.2g}",
    )
    return {
        "architecture": architecture.name(),
        "checkpoint": checkpoint,
        "saved_model": saved_model,
        "max_relative_difference": result.max_relative_difference,
        "differences": result.differences,
        "seconds": result.seconds,
    }
