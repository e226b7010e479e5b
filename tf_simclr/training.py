"""The training loop the training modes share (`modes.pretrain`, `finetune`, `distill`).

A mode reads top to bottom: data, model, optimizer, restore, fit, save. This module
holds the loop and what it threads:

- `epoch_datasets`: one input pipeline per epoch, shuffled by (seed, epoch), so
  a resumed run continues the exact data order;
- `compile_model`: the optimizer with warmup + cosine, compiled and built;
- `start`: the run directory (`tf_simclr.records`), the checkpoint manager, the
  restore (`tf_simclr.initialise`: resumed, from `--checkpoint`, or fresh) and the
  run's files, as one `Run`: the state the loop needs, in one object;
- `fit`: `model.fit` in segments that start and end on the exact step where a
  resumed run left off, with checkpoints, the NaN guard, stop-on-signal and
  TensorBoard scalars.

The step plan is `tf_simclr.step_plan`; `records.save_result` writes `train_result.json`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import time
from collections.abc import Callable, Iterator

import keras
import tensorflow as tf
from absl import logging

from tf_simclr import builders, checkpoints, distribute, initialise, records
from tf_simclr.callbacks import (
    CheckpointEvery,
    ImageSummaries,
    LabelFreeMonitor,
    ScalarSummaries,
    StopOnSignal,
    training_progress,
)
from tf_simclr.config import Config, flags_for
from tf_simclr.data import Source, pretrain_dataset
from tf_simclr.errors import WorkerLost
from tf_simclr.step_plan import StepPlan, fit_segments


@dataclasses.dataclass(frozen=True)
class Run:
    """The state of one training run that the loop threads (`start` makes it).

    `model` is what the checkpoints hold; `trainer` what `fit` trains (the same model,
    or a `Distiller` around it); `start_step` the step restored (0 when fresh);
    `write_dir` where this process writes (model_dir on the chief).
    """

    config: Config
    strategy: tf.distribute.Strategy
    model: keras.Model
    trainer: keras.Model
    optimizer: keras.optimizers.Optimizer
    plan: StepPlan
    manager: tf.train.CheckpointManager
    start_step: int
    write_dir: str


@contextlib.contextmanager
def start(
    resolved,
    strategy: tf.distribute.Strategy,
    model: keras.Model,
    optimizer: keras.optimizers.Optimizer,
    plan: StepPlan,
    source: Source,
    what: str,
    *,
    trainer: keras.Model | None = None,
    init_parts: dict | None = None,
    classifier: keras.layers.Layer | None = None,
) -> Iterator[Run]:
    """The `Run` of `resolved` (a `resolver.Resolved`) in its directory: created once every
    check passed, the weights restored (resumed, else `init_parts` and `classifier` from
    `--checkpoint`, else fresh), `config.json` and `model.json` written, the start logged.

    Args:
      resolved: the completed config and its locations.
      strategy: the strategy the model and optimizer were built under.
      model: what the checkpoints hold; `trainer`: what `fit` trains (default `model`).
      optimizer: compiled (`compile_model`).
      plan: the step plan; `source`: the training data (for the log and the description).
      what: the log's name for the run ("Pretraining", ...).
      init_parts: the parts `--checkpoint` initialises (`builders.init_parts`); None: none.
      classifier: a fine-tune run's classifier, initialised from the checkpoint's probe
        when it fits (`initialise.probe_part`).
    """
    config = resolved.config
    with records.run_directory(config, strategy, model, optimizer) as write_dir:
        manager = checkpoints.manager_for(model, optimizer, write_dir, config.keep_checkpoint_max)
        initialise.restore(resolved, manager, init_parts, classifier)
        step = int(optimizer.iterations.numpy())
        records.describe_run(config, strategy, source.num_classes)
        records.log_start(config, strategy, what, source, plan, step, write_dir)
        yield Run(
            config, strategy, model, trainer or model, optimizer, plan, manager, step, write_dir
        )


def epoch_datasets(
    config: Config, strategy: tf.distribute.Strategy, source: Source, make_dataset: Callable
) -> Callable[[int, int], tf.distribute.DistributedDataset]:
    """`(epoch, skip_steps) ->` epoch `epoch` from its batch `skip_steps` on, per replica.

    `make_dataset` is `pretrain_dataset` or `supervised_dataset`; one pipeline per
    worker, each building its share of every global batch.
    """
    if config.cache_dataset:
        # One cache for all epochs (each epoch builds its own pipeline on top of it).
        source = dataclasses.replace(source, dataset=source.dataset.cache())
    augment = builders.augment_config(config)

    def distributed(epoch: int, skip_steps: int):
        def one_worker(context):
            with flags_for(batch_size="train_batch_size"):
                return make_dataset(
                    source,
                    augment,
                    config.train_batch_size,
                    shuffle_buffer=config.shuffle_buffer or None,
                    seed=config.seed,
                    epoch=epoch,
                    skip_steps=skip_steps,
                    input_context=context,
                    augment_impl=config.augment_impl,
                )

        return strategy.distribute_datasets_from_function(one_worker)

    return distributed


def compile_model(config: Config, model: keras.Model, plan: StepPlan) -> keras.optimizers.Optimizer:
    """Compiles `model` with the optimizer of `config` and builds its slots (call under the
    strategy's scope)."""
    optimizer = builders.build_training_optimizer(config, plan.warmup_steps, plan.total_steps)
    model.compile(optimizer=optimizer, jit_compile=config.jit_compile)
    optimizer.build(model.trainable_variables)
    return optimizer


# Training images `--summary_images` shows, each beside two of its views.
SUMMARY_IMAGES = 4


def view_summaries(run: Run, source: Source) -> list:
    """`--summary_images`: the callback writing a few training images beside fresh views of
    them (the run's augmentation) to TensorBoard as `train/views`; [] when off."""
    config = run.config
    if not config.summary_images:
        return []
    from tf_simclr import summaries

    images = summaries.take_images(source, SUMMARY_IMAGES)
    augment = builders.augment_config(config)
    return [
        ImageSummaries(
            os.path.join(run.write_dir, "train"),
            config.summary_images,
            run.optimizer.iterations,
            lambda: summaries.view_strips(images, augment),
            tag="train/views",
        )
    ]


def label_free_monitor(run: Run, source: Source) -> list:
    """`--label_free_monitor_steps`: the callback measuring RankMe, alignment, uniformity and
    the embedding std of one fixed batch of view pairs (drawn now, with the run's
    augmentation) into TensorBoard `train/label_free/*`; [] when off."""
    config = run.config
    if not config.label_free_monitor_steps:
        return []
    images = min(config.label_free_monitor_images, source.num_examples)
    # The device augmentation leaves views to the model: draw this batch's views with the
    # batched implementation, the same distribution.
    impl = "batched" if config.augment_impl == "device" else config.augment_impl
    dataset = pretrain_dataset(
        source,
        builders.augment_config(config),
        images,
        seed=config.seed,
        repeat=False,
        augment_impl=impl,
    )
    batch = next(iter(dataset.take(1)))
    return [
        LabelFreeMonitor(
            batch["view1"],
            batch["view2"],
            every=config.label_free_monitor_steps,
            log_dir=os.path.join(run.write_dir, "train"),
            step=run.optimizer.iterations,
            batch_size=config.eval_batch_size,
        )
    ]


class _OneEpoch(keras.callbacks.Callback):
    """Ends a `model.fit(initial_epoch=e, epochs=total)` after epoch e: one fit per epoch
    (see `fit_segments`) whose progress headers still say "Epoch e+1/total"."""

    def on_epoch_end(self, epoch, logs=None):
        self.model.stop_training = True


def fit(run: Run, distributed_dataset, extra_callbacks=()) -> dict:
    """`model.fit` of `run.trainer` over steps [start, plan.total_steps), segment by
    segment; the final logs.

    `distributed_dataset` is an `epoch_datasets` result; checkpoints go through the run's
    manager every `plan.checkpoint_steps` steps and at the end. `extra_callbacks` run
    after the built-in ones (e.g. `view_summaries`).
    """
    config, model, optimizer, plan = run.config, run.trainer, run.optimizer, run.plan
    start = run.start_step
    saver = CheckpointEvery(run.manager, plan.checkpoint_steps, optimizer.iterations)
    stopper = StopOnSignal(saver)
    verbose, progress = training_progress(
        config.verbose, optimizer.iterations, plan.total_steps, config.train_batch_size
    )
    callbacks = [
        saver,
        stopper,
        ScalarSummaries(
            os.path.join(run.write_dir, "train"), config.train_summary_steps, optimizer.iterations
        ),
        *extra_callbacks,
        *progress,  # after those that may stop training: it logs the step reached
    ]
    # Keras numbers its "Epoch e/n" headers from fit's initial_epoch and epochs: give it the
    # run's epoch and total, and stop each fit after its one epoch (see `_OneEpoch`).
    callbacks.append(_OneEpoch())
    logs: dict = {}
    began = time.time()
    epochs_total = math.ceil(plan.total_steps / plan.steps_per_epoch)
    with stopper.installed():
        for epoch, offset, steps in fit_segments(start, plan.total_steps, plan.steps_per_epoch):
            try:
                history = model.fit(
                    distributed_dataset(epoch, offset),
                    initial_epoch=epoch,
                    epochs=epochs_total,
                    steps_per_epoch=steps,
                    callbacks=callbacks,
                    verbose=verbose,
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
        "start_step": start,
        "seconds": time.time() - began,
        **logs,
    }
