"""Training driver (pretraining and fine-tuning): a `Config` in, a checkpointed model out.

Order of work, so that bad input never touches an existing model directory:

1. open the data source and check the step plan (every failure here is a
   `ConfigError`/`DataError`, which `run.py` turns into exit code 2);
2. build the model and optimizer under the strategy scope;
3. resume / initialise / start fresh (`tf_simclr.checkpoints`);
4. write the resolved config, then `model.fit` in segments that start and
   end on the exact step where a resumed run left off.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
import time

import keras
import tensorflow as tf
from absl import logging

from tf_simclr import builders, checkpoints
from tf_simclr.callbacks import CheckpointEvery, ScalarSummaries, StopOnSignal
from tf_simclr.config import Config, ConfigError, save_config
from tf_simclr.data import pretrain_dataset, supervised_dataset


@dataclasses.dataclass(frozen=True)
class StepPlan:
    """Step counts derived from the config and the dataset size (reference semantics)."""

    steps_per_epoch: int
    total_steps: int
    warmup_steps: int
    checkpoint_steps: int

    @classmethod
    def from_config(cls, config: Config, num_examples: int) -> StepPlan:
        steps_per_epoch = num_examples // config.train_batch_size
        if steps_per_epoch < 1:
            raise ConfigError(
                "train_batch_size",
                f"{config.train_batch_size} is larger than the {num_examples} training "
                "examples; batches drop the remainder, so use a smaller batch",
            )
        total = config.train_steps or config.train_epochs * steps_per_epoch
        every = config.checkpoint_steps or config.checkpoint_epochs * steps_per_epoch
        warmup = int(round(config.warmup_epochs * steps_per_epoch))
        return cls(steps_per_epoch, total, min(warmup, total), every)


def fit_segments(start: int, total: int, steps_per_epoch: int) -> list[tuple[int, int, int]]:
    """Splits steps [start, total) into `model.fit` calls that honour epoch boundaries.

    Returns (initial_epoch, epochs, steps_per_epoch) triples. A run resumed in
    the middle of an epoch first finishes that epoch with a short fit, then
    runs whole epochs; a final partial epoch (train_steps not a multiple of
    the epoch) gets its own short fit. Keras can only resume at epoch
    granularity, hence the split.
    """
    segments = []
    step = start
    while step < total:
        epoch, offset = divmod(step, steps_per_epoch)
        if offset or total - step < steps_per_epoch:
            n = min(steps_per_epoch - offset, total - step)
            segments.append((epoch, epoch + 1, n))
            step += n
        else:
            full = (total - step) // steps_per_epoch
            segments.append((epoch, epoch + full, steps_per_epoch))
            step += full * steps_per_epoch
    return segments


def prepare_model_dir(model_dir: str, checkpoint_bytes: int = 0) -> None:
    """Creates model_dir and proves it is writable and has room for two checkpoints,
    before any training starts (not an hour later, at the first save)."""
    parent = os.path.abspath(model_dir)
    while not os.path.exists(parent):
        parent = os.path.dirname(parent)
    free = shutil.disk_usage(parent).free
    needed = 2 * checkpoint_bytes + (16 << 20)
    if free < needed:
        raise ConfigError(
            "model_dir",
            f"only {free >> 20} MB free on its disk; checkpoints of this model need about "
            f"{needed >> 20} MB",
            model_dir,
        )
    try:
        os.makedirs(model_dir, exist_ok=True)
        probe = os.path.join(model_dir, ".write_test")
        with open(probe, "w") as f:
            f.write("ok")
        os.remove(probe)
    except OSError as e:
        raise ConfigError("model_dir", f"is not writable: {e.strerror}", model_dir) from e


def train(config: Config, strategy: tf.distribute.Strategy) -> dict:
    """Trains per `config` (`train_mode` pretrain or finetune); returns the final logs."""
    replicas = strategy.num_replicas_in_sync
    if config.train_batch_size % replicas:
        raise ConfigError(
            "train_batch_size",
            f"{config.train_batch_size} is not divisible by the {replicas} replicas",
        )
    if config.jit_compile and replicas > 1:
        raise ConfigError(
            "jit_compile",
            f"XLA is only supported on one replica here, not {replicas}; use --jit_compile=false",
        )
    source = builders.train_source(config)
    finetune = config.train_mode == "finetune"
    if finetune and source.num_classes == 0:
        raise ConfigError("train_mode", "finetune needs labels; this dataset has none")
    if finetune and config.checkpoint:
        checkpoints.resolve(config.checkpoint)  # fail now, not after building the model
    plan = StepPlan.from_config(config, source.num_examples)
    make_dataset = supervised_dataset if finetune else pretrain_dataset
    dataset = make_dataset(
        source,
        builders.augment_config(config),
        config.train_batch_size,
        shuffle_buffer=config.shuffle_buffer or None,
        seed=config.seed,
        cache=config.cache_dataset,
        augment_impl=config.augment_impl,
    )
    keras.utils.set_random_seed(config.seed)
    with strategy.scope():
        model = builders.build_model(config, source.num_classes)
        optimizer = builders.build_training_optimizer(config, plan.warmup_steps, plan.total_steps)
        model.compile(optimizer=optimizer, jit_compile=config.jit_compile)
        optimizer.build(model.trainable_variables)
    checkpoint_bytes = sum(
        v.numpy().nbytes for v in list(model.variables) + list(optimizer.variables)
    )
    prepare_model_dir(config.model_dir, checkpoint_bytes)  # first write: all checks passed.
    manager = checkpoints.manager_for(
        model, optimizer, config.model_dir, config.keep_checkpoint_max
    )
    checkpoints.restore_or_initialize(
        manager, config.checkpoint if finetune else "", builders.init_parts(model)
    )
    start = int(optimizer.iterations.numpy())
    save_config(config, config.model_dir)
    logging.info(
        "%s on %s: %d examples, %d steps/epoch, steps %d..%d, warmup %d, %d replicas",
        "Fine-tuning" if finetune else "Pretraining",
        source.name,
        source.num_examples,
        plan.steps_per_epoch,
        start,
        plan.total_steps,
        plan.warmup_steps,
        replicas,
    )

    saver = CheckpointEvery(manager, plan.checkpoint_steps, optimizer.iterations)
    stopper = StopOnSignal(saver)
    callbacks = [
        saver,
        stopper,
        ScalarSummaries(
            os.path.join(config.model_dir, "train"),
            config.train_summary_steps,
            optimizer.iterations,
        ),
    ]
    logs: dict = {}
    began = time.time()
    epochs_total = math.ceil(plan.total_steps / plan.steps_per_epoch)
    for initial_epoch, epochs, steps in fit_segments(start, plan.total_steps, plan.steps_per_epoch):
        history = model.fit(
            dataset,
            initial_epoch=initial_epoch,
            epochs=epochs,
            steps_per_epoch=steps,
            callbacks=callbacks,
            verbose=config.verbose,
            shuffle=False,  # the tf.data pipeline shuffles
        )
        logs = {k: float(v[-1]) for k, v in history.history.items()}
        saver.raise_if_diverged()
        stopper.raise_if_stopped()
        logging.info("Reached epoch %d/%d", epochs, epochs_total)
    if start >= plan.total_steps:
        logging.info("Already at step %d >= %d: nothing to train", start, plan.total_steps)
    saver.save()
    result = {
        "global_step": int(optimizer.iterations.numpy()),
        "seconds": time.time() - began,
        **logs,
    }
    with open(os.path.join(config.model_dir, "train_result.json"), "w") as f:
        json.dump(result, f, indent=2, sort_keys=True)
    return result
