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

from tf_simclr import builders, records, step_plan, training
from tf_simclr.data import pretrain_dataset


def run(resolved, strategy: tf.distribute.Strategy) -> dict:
    """Pretrains per `resolved` (a `resolver.Resolved`) under `strategy`; returns the final
    training logs."""
    config = resolved.config
    step_plan.check_replicas(config, strategy)
    # Before anything random is built: the file order, the per-epoch shuffles (their
    # seeds combine --seed with this global seed) and the weights. Every process of a
    # job and every restart thus draws the same order.
    keras.utils.set_random_seed(config.seed)

    # Data.
    source = builders.train_source(config)
    plan = step_plan.StepPlan.from_config(config, source.num_examples)
    datasets = training.epoch_datasets(config, strategy, source, pretrain_dataset)

    # Model and optimizer.
    with strategy.scope():
        model = builders.build_pretrain_model(config, source.num_classes)
        optimizer = training.compile_model(config, model, plan)

    # Restore (resume, else continue from --checkpoint's encoder and head, else fresh),
    # fit and save.
    init_parts = _init_parts(resolved.checkpoint, model)
    with training.start(
        resolved, strategy, model, optimizer, plan, source, "Pretraining", init_parts=init_parts
    ) as run_state:
        monitors = [
            *training.view_summaries(run_state, source),
            *training.label_free_monitor(run_state, source),
        ]
        result = training.fit(run_state, datasets, monitors)
    return records.save_result(config, strategy, result)


def _init_parts(checkpoint, model) -> dict | None:
    """What pretraining continues from with `--checkpoint` (a `resolver.Location`;
    domain-adaptive pretraining): its encoder, and its projection head when it has one (a
    SimCLRv1 model has none: the head starts fresh, said in the log); None without one."""
    if checkpoint is None:
        return None
    parts = builders.init_parts(model)
    if not checkpoint.has_head:
        parts.pop("head", None)
        logging.info(
            "--checkpoint=%s has no projection head: pretraining starts a fresh one",
            checkpoint.path,
        )
    return parts
