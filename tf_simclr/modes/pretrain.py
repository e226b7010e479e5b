"""`--train_mode=pretrain`: SimCLR contrastive pretraining (Chen et al. 2020, Sec. 2).

Data: the training split with the full SimCLR augmentation (two views per
image). Model: `SimCLR` (encoder, projection head, online linear probe).
Optimizer: LARS (or `--optimizer`) with warmup + cosine. Restore: resume from
`model_dir` if it holds a checkpoint, else continue from `--checkpoint` (its encoder and
head: domain-adaptive pretraining), else start fresh. Fit: `model.fit` per
epoch with checkpoints. Save: the final checkpoint and `train_result.json`.
"""

from __future__ import annotations

import keras
import tensorflow as tf
from absl import logging

from tf_simclr import builders, checkpoints, run_dir, training
from tf_simclr.config import Config
from tf_simclr.data import pretrain_dataset


def run(config: Config, strategy: tf.distribute.Strategy) -> dict:
    """Pretrains per `config` under `strategy`; returns the final training logs."""
    training.check_replicas(config, strategy)
    training.check_init_checkpoint(config)
    # Before anything random is built: the file order, the per-epoch shuffles (their
    # seeds combine --seed with this global seed) and the weights. Every process of a
    # job and every restart thus draws the same order.
    keras.utils.set_random_seed(config.seed)

    # Data.
    source = builders.train_source(config)
    plan = training.StepPlan.from_config(config, source.num_examples)
    datasets = training.epoch_datasets(config, strategy, source, pretrain_dataset)

    # Model and optimizer.
    with strategy.scope():
        model = builders.build_pretrain_model(config, source.num_classes)
        optimizer = training.compile_model(config, model, plan)

    with training.run_directory(config, strategy, model, optimizer) as write_dir:
        # Restore: resume, else continue from --checkpoint's encoder and head, else fresh.
        manager = checkpoints.manager_for(model, optimizer, write_dir, config.keep_checkpoint_max)
        training.restore(config, manager, _init_parts(config, model))
        start = int(optimizer.iterations.numpy())
        training.describe_run(config, strategy, source.num_classes)
        training.log_start(config, strategy, "Pretraining", source, plan, start, write_dir)

        # Fit and save.
        monitors = [
            *training.view_summaries(config, source, write_dir, optimizer.iterations),
            *training.label_free_monitor(config, source, write_dir, optimizer.iterations),
        ]
        result = training.fit(
            config, model, optimizer, manager, plan, start, write_dir, datasets, monitors
        )
    return training.save_result(config, strategy, result)


def _init_parts(config: Config, model) -> dict | None:
    """What pretraining continues from with `--checkpoint` (domain-adaptive pretraining):
    its encoder, and its projection head when it has one (a SimCLRv1 model has none: the
    head starts fresh, said in the log); None without a checkpoint."""
    if not config.checkpoint:
        return None
    parts = builders.init_parts(model)
    description = run_dir.read(config.checkpoint, "checkpoint") or run_dir.describe_reference(
        config.checkpoint, config
    )
    if description is not None and not run_dir.has_head(description):
        parts.pop("head", None)
        logging.info(
            "--checkpoint=%s has no projection head: pretraining starts a fresh one",
            config.checkpoint,
        )
    return parts
