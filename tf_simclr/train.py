"""Pretraining driver: a `Config` in, a trained and checkpointed model out.

`run(config)` is what `run.py` calls. Order of work, so that bad input never
touches an existing model directory:

1. validate the config, build the strategy, open the data source (every
   failure here is a `ConfigError`/`DataError`, turned into exit code 2);
2. build the model and optimizer under the strategy scope;
3. checkpoint precedence (one place): resume from the latest checkpoint in
   `model_dir` if there is one, else start fresh;
4. write the resolved config, then `model.fit` in segments that start and
   end on the exact step where a resumed run left off.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time

import keras
import tensorflow as tf
from absl import logging

from tf_simclr import distribute
from tf_simclr.config import Config, ConfigError, save_config
from tf_simclr.data import AugmentConfig, make_source, pretrain_dataset
from tf_simclr.models import ProjectionHead, ResNet, SimCLR
from tf_simclr.optim import WarmupCosineDecay, build_optimizer, scaled_learning_rate

CHECKPOINT_NAME = "ckpt"


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


def augment_config(config: Config) -> AugmentConfig:
    return AugmentConfig(
        image_size=config.image_size,
        crop=config.use_crop,
        flip=config.use_flip,
        color_jitter=config.use_color_jitter,
        color_jitter_strength=config.color_jitter_strength,
        grayscale=config.use_grayscale,
        blur=config.use_blur,
    )


def build_model(config: Config, num_classes: int) -> SimCLR:
    """The SimCLR model of `config`, built (variables created) at `config.image_size`."""
    synchronized = config.global_bn and distribute.num_replicas_in_scope() > 1
    encoder = ResNet(
        depth=config.resnet_depth,
        width_multiplier=config.width_multiplier,
        cifar_stem=config.cifar_stem,
        batch_norm_decay=config.batch_norm_decay,
        synchronized_bn=synchronized,
        name="encoder",
    )
    head = ProjectionHead(
        mode=config.proj_head_mode,
        out_dim=config.proj_out_dim,
        num_layers=config.num_proj_layers,
        batch_norm_decay=config.batch_norm_decay,
        synchronized_bn=synchronized,
        name="projection_head",
    )
    model = SimCLR(
        encoder,
        head,
        num_classes=num_classes if config.lineareval_while_pretraining else 0,
        temperature=config.temperature,
        hidden_norm=config.hidden_norm,
        ft_proj_selector=config.ft_proj_selector,
        name="simclr",
    )
    model(tf.zeros([1, config.image_size, config.image_size, 3]))
    return model


def build_pretrain_optimizer(config: Config, plan: StepPlan) -> keras.optimizers.Optimizer:
    peak = scaled_learning_rate(
        config.learning_rate, config.train_batch_size, config.learning_rate_scaling
    )
    schedule = WarmupCosineDecay(peak, plan.warmup_steps, plan.total_steps)
    return build_optimizer(
        config.optimizer, schedule, momentum=config.momentum, weight_decay=config.weight_decay
    )


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


class CheckpointEvery(keras.callbacks.Callback):
    """Saves model + optimizer (step, slots, LR position) every `every` steps and at the end."""

    def __init__(self, manager: tf.train.CheckpointManager, every: int, step: tf.Variable):
        super().__init__()
        self.manager, self.every, self.step = manager, every, step

    def save(self) -> None:
        step = int(self.step.numpy())
        if self.manager.latest_checkpoint != self._path(step):
            self.manager.save(checkpoint_number=step)
            logging.info("Saved checkpoint for step %d to %s", step, self.manager.directory)

    def _path(self, step: int) -> str:
        return os.path.join(self.manager.directory, f"{CHECKPOINT_NAME}-{step}")

    def on_train_batch_end(self, batch, logs=None):
        if int(self.step.numpy()) % self.every == 0:
            self.save()

    def on_train_end(self, logs=None):
        self.save()


class ScalarSummaries(keras.callbacks.Callback):
    """Writes the train_step logs to TensorBoard every `every` steps, keyed by global step."""

    def __init__(self, log_dir: str, every: int, step: tf.Variable):
        super().__init__()
        self.writer = tf.summary.create_file_writer(log_dir)
        self.every, self.step = every, step

    def on_train_batch_end(self, batch, logs=None):
        step = int(self.step.numpy())
        if step % self.every == 0 and logs:
            with self.writer.as_default(step=step):
                for name, value in logs.items():
                    tf.summary.scalar(f"train/{name}", float(value))
            self.writer.flush()


def prepare_model_dir(model_dir: str) -> None:
    """Creates model_dir and proves it is writable, before any training starts."""
    try:
        os.makedirs(model_dir, exist_ok=True)
        probe = os.path.join(model_dir, ".write_test")
        with open(probe, "w") as f:
            f.write("ok")
        os.remove(probe)
    except OSError as e:
        raise ConfigError("model_dir", f"{model_dir} is not writable: {e.strerror}") from e


def pretrain(config: Config, strategy: tf.distribute.Strategy) -> dict:
    """SimCLR pretraining per `config`; returns the final logs plus step and timing."""
    replicas = strategy.num_replicas_in_sync
    if config.train_batch_size % replicas:
        raise ConfigError(
            "train_batch_size",
            f"{config.train_batch_size} is not divisible by the {replicas} replicas",
        )
    source = make_source(
        config.dataset,
        config.train_split,
        data_dir=config.data_dir or None,
        split_flag="train_split",
        shuffle_files=True,
        seed=config.seed,
    )
    plan = StepPlan.from_config(config, source.num_examples)
    dataset = pretrain_dataset(
        source,
        augment_config(config),
        config.train_batch_size,
        shuffle_buffer=config.shuffle_buffer or None,
        seed=config.seed,
        cache=config.cache_dataset,
    )
    prepare_model_dir(config.model_dir)  # first write to model_dir: all checks passed.

    keras.utils.set_random_seed(config.seed)
    with strategy.scope():
        model = build_model(config, source.num_classes)
        optimizer = build_pretrain_optimizer(config, plan)
        model.compile(optimizer=optimizer)
        optimizer.build(model.trainable_variables)
    checkpoint = tf.train.Checkpoint(model=model, optimizer=optimizer)
    manager = tf.train.CheckpointManager(
        checkpoint, config.model_dir, config.keep_checkpoint_max, checkpoint_name=CHECKPOINT_NAME
    )
    if manager.latest_checkpoint:
        checkpoint.restore(manager.latest_checkpoint).assert_existing_objects_matched()
        logging.info("Resumed from %s", manager.latest_checkpoint)
    start = int(optimizer.iterations.numpy())
    save_config(config, config.model_dir)
    logging.info(
        "Pretraining %s: %d examples, %d steps/epoch, steps %d..%d, warmup %d, %d replicas",
        source.name,
        source.num_examples,
        plan.steps_per_epoch,
        start,
        plan.total_steps,
        plan.warmup_steps,
        replicas,
    )

    saver = CheckpointEvery(manager, plan.checkpoint_steps, optimizer.iterations)
    callbacks = [
        saver,
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
        )
        logs = {k: float(v[-1]) for k, v in history.history.items()}
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


def run(config: Config) -> dict:
    """Entry point for `run.py`: validate, build the strategy, dispatch on `config.mode`."""
    config.validate()
    strategy = distribute.build_strategy(config.strategy)
    if config.mode == "train":
        return pretrain(config, strategy)
    raise ConfigError("mode", f"{config.mode!r} is not supported")
