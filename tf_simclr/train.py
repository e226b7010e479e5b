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
import tempfile
import time

import keras
import tensorflow as tf
from absl import logging

from tf_simclr import builders, checkpoints, distribute
from tf_simclr.callbacks import (
    CheckpointEvery,
    ScalarSummaries,
    StopOnSignal,
    WorkerLost,
)
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
    """Splits steps [start, total) into one `model.fit` call per epoch.

    Returns (epoch, first step of the epoch to run, steps to run) triples. A run
    resumed in the middle of an epoch finishes that epoch first; a final
    partial epoch (train_steps not a multiple of the epoch) is short. One fit
    per epoch because each epoch has its own input pipeline, shuffled by
    (seed, epoch), which is what lets a restarted run continue the exact data
    order (see `tf_simclr.data.pretrain_dataset`).
    """
    segments = []
    step = start
    while step < total:
        epoch, offset = divmod(step, steps_per_epoch)
        n = min(steps_per_epoch - offset, total - step)
        segments.append((epoch, offset, n))
        step += n
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
    """Trains per `config` (`train_mode` pretrain or finetune); returns the final logs.

    Under MultiWorkerMirroredStrategy every worker runs this; the chief writes
    checkpoints, summaries and results to `model_dir`, the other workers write
    theirs to a temporary directory that is removed at the end (all workers
    take part in every save). Every worker resumes from `model_dir`.
    """
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
    # Before anything random is built: the file order, the per-epoch shuffles (their
    # seeds combine --seed with this global seed) and the weights. Every process of a
    # job and every restart thus draws the same order.
    keras.utils.set_random_seed(config.seed)
    source = builders.train_source(config)
    finetune = config.train_mode == "finetune"
    if finetune and source.num_classes == 0:
        raise ConfigError("train_mode", "finetune needs labels; this dataset has none")
    if finetune and config.checkpoint:
        checkpoints.resolve(config.checkpoint)  # fail now, not after building the model
    plan = StepPlan.from_config(config, source.num_examples)
    make_dataset = supervised_dataset if finetune else pretrain_dataset

    if config.cache_dataset:
        # One cache for all epochs (each epoch builds its own pipeline on top of it).
        source = dataclasses.replace(source, dataset=source.dataset.cache())

    def distributed_dataset(epoch: int, skip_steps: int):
        """Epoch `epoch` from its batch `skip_steps` on, as per-replica batches: one
        pipeline per worker, each building its share of every global batch."""
        return strategy.distribute_datasets_from_function(
            lambda context: make_dataset(
                source,
                builders.augment_config(config),
                config.train_batch_size,
                shuffle_buffer=config.shuffle_buffer or None,
                seed=config.seed,
                epoch=epoch,
                skip_steps=skip_steps,
                input_context=context,
                augment_impl=config.augment_impl,
            )
        )

    with strategy.scope():
        model = builders.build_model(config, source.num_classes)
        optimizer = builders.build_training_optimizer(config, plan.warmup_steps, plan.total_steps)
        model.compile(optimizer=optimizer, jit_compile=config.jit_compile)
        optimizer.build(model.trainable_variables)
    checkpoint_bytes = sum(
        v.numpy().nbytes for v in list(model.variables) + list(optimizer.variables)
    )
    chief = distribute.is_chief(strategy)
    write_dir = config.model_dir if chief else tempfile.mkdtemp(prefix="tf_simclr_worker_")
    try:
        prepare_model_dir(write_dir, checkpoint_bytes)  # first write: all checks passed.
        manager = checkpoints.manager_for(model, optimizer, write_dir, config.keep_checkpoint_max)
        checkpoints.restore_or_initialize(
            manager,
            config.checkpoint if finetune else "",
            builders.init_parts(model),
            resume_dir=config.model_dir,
        )
        start = int(optimizer.iterations.numpy())
        if chief:
            save_config(config, config.model_dir)
        logging.info(
            "%s on %s: %d examples, %d steps/epoch, steps %d..%d, warmup %d, %d replicas%s",
            "Fine-tuning" if finetune else "Pretraining",
            source.name,
            source.num_examples,
            plan.steps_per_epoch,
            start,
            plan.total_steps,
            plan.warmup_steps,
            replicas,
            "" if chief else f" (worker {distribute.task(strategy)}, writing to {write_dir})",
        )
        result = _fit(
            config, model, optimizer, manager, plan, start, write_dir, distributed_dataset
        )
    finally:
        if not chief:
            shutil.rmtree(write_dir, ignore_errors=True)
    if chief:
        with open(os.path.join(config.model_dir, "train_result.json"), "w") as f:
            json.dump(result, f, indent=2, sort_keys=True)
    return result


def _fit(config, model, optimizer, manager, plan, start, write_dir, distributed_dataset) -> dict:
    """`model.fit` over the remaining steps, segment by segment; the final logs."""
    saver = CheckpointEvery(manager, plan.checkpoint_steps, optimizer.iterations)
    stopper = StopOnSignal(saver)
    callbacks = [
        saver,
        stopper,
        ScalarSummaries(
            os.path.join(write_dir, "train"), config.train_summary_steps, optimizer.iterations
        ),
    ]
    logs: dict = {}
    began = time.time()
    epochs_total = math.ceil(plan.total_steps / plan.steps_per_epoch)
    with stopper.installed():
        for epoch, offset, steps in fit_segments(start, plan.total_steps, plan.steps_per_epoch):
            try:
                history = model.fit(
                    distributed_dataset(epoch, offset),
                    initial_epoch=epoch,
                    epochs=epoch + 1,
                    steps_per_epoch=steps,
                    callbacks=callbacks,
                    verbose=config.verbose,
                    shuffle=False,  # the tf.data pipeline shuffles
                )
            except (tf.errors.UnavailableError, tf.errors.DeadlineExceededError) as e:
                if distribute.task(model.distribute_strategy)[0] is None:
                    raise  # not a multi-worker job: no peer to lose
                raise WorkerLost(int(optimizer.iterations.numpy()), e) from e
            logs = {k: float(v[-1]) for k, v in history.history.items()}
            saver.raise_if_diverged()
            stopper.raise_if_stopped()
            logging.info("Finished epoch %d/%d", epoch + 1, epochs_total)
    if start >= plan.total_steps:
        logging.info("Already at step %d >= %d: nothing to train", start, plan.total_steps)
    saver.save()
    return {
        "global_step": int(optimizer.iterations.numpy()),
        "seconds": time.time() - began,
        **logs,
    }
