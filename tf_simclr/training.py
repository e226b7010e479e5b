"""The training loop the training modes share (`modes.pretrain`, `modes.finetune`).

A mode reads top to bottom: data, model, optimizer, restore, fit, save. This
module holds the parts of that story that are the same for every mode:

- `check_replicas`, `StepPlan`: the step plan and the strategy checks, before
  anything is written (every failure is a `ConfigError`, exit code 2);
- `epoch_datasets`: one input pipeline per epoch, shuffled by (seed, epoch), so
  a resumed run continues the exact data order;
- `compile_model`: the optimizer with warmup + cosine, compiled and built;
- `run_directory`: the directory this process writes to (a temporary one on
  non-chief workers), created only after all checks passed;
- `fit`: `model.fit` in segments that start and end on the exact step where a
  resumed run left off, with checkpoints, the NaN guard, stop-on-signal and
  TensorBoard scalars; `save_result` writes `train_result.json`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator

import keras
import tensorflow as tf
from absl import logging

from tf_simclr import builders, checkpoints, distribute, run_dir
from tf_simclr.callbacks import (
    CheckpointEvery,
    ImageSummaries,
    LabelFreeMonitor,
    ScalarSummaries,
    StopOnSignal,
    training_progress,
)
from tf_simclr.config import Config, ConfigError, flags_for, save_config
from tf_simclr.data import Source, pretrain_dataset
from tf_simclr.errors import WorkerLost


@dataclasses.dataclass(frozen=True)
class StepPlan:
    """Step counts derived from the config and the dataset size.

    The schedule and the total follow the reference (`tf2/model.py`
    `get_train_steps` and `WarmUpAndCosineDecay`), with N examples and global
    batch B: `N * train_epochs // B + 1` steps (or `--train_steps`) and
    `floor(warmup_epochs * N / B)` warmup steps, not clipped to the total (a
    warmup longer than the run ramps to `total / warmup` of the peak, as in the
    reference). Batches span no epoch boundary here (each epoch's pipeline drops
    its remainder, see `epoch_datasets`), so `steps_per_epoch` is `N // B` and the
    total is rarely a whole number of epochs: `fit_segments` ends on a short one.
    Deviation: the reference trains in loops of `checkpoint_steps` and so runs up
    to a loop's worth of extra steps at learning rate 0 past the total (its bug);
    we stop at the total. See docs/reference_differences.md.
    """

    steps_per_epoch: int
    total_steps: int
    warmup_steps: int
    checkpoint_steps: int

    @classmethod
    def from_config(cls, config: Config, num_examples: int) -> StepPlan:
        batch = config.train_batch_size
        steps_per_epoch = num_examples // batch
        if steps_per_epoch < 1:
            raise ConfigError(
                "train_batch_size",
                f"{batch} is larger than the {num_examples} training "
                "examples; batches drop the remainder, so use a smaller batch",
            )
        total = config.train_steps or num_examples * config.train_epochs // batch + 1
        every = config.checkpoint_steps or config.checkpoint_epochs * steps_per_epoch
        # floor(warmup_epochs * N / B), computed as the reference does (float floor division).
        warmup = int(config.warmup_epochs * num_examples // batch)
        if warmup > total:
            logging.warning(
                "Warmup (%d steps, --warmup_epochs=%g) is longer than the run (%d steps): "
                "the learning rate only ramps to %.3g of its peak",
                warmup,
                config.warmup_epochs,
                total,
                (total - 1) / warmup,
            )
        return cls(steps_per_epoch, total, warmup, every)


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


def check_replicas(config: Config, strategy: tf.distribute.Strategy) -> None:
    """The global batch must split evenly over the replicas; XLA only on one replica."""
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


@contextlib.contextmanager
def run_directory(
    config: Config, strategy: tf.distribute.Strategy, model, optimizer
) -> Iterator[str]:
    """The directory this process writes checkpoints and summaries to, checked and created.

    Under MultiWorkerMirroredStrategy every worker trains; the chief writes to
    `model_dir`, the other workers to a temporary directory that is removed at
    the end (all workers take part in every save). Every worker resumes from
    `model_dir`.
    """
    checkpoint_bytes = sum(
        v.numpy().nbytes for v in list(model.variables) + list(optimizer.variables)
    )
    chief = distribute.is_chief(strategy)
    write_dir = config.model_dir if chief else tempfile.mkdtemp(prefix="tf_simclr_worker_")
    created = not os.path.exists(write_dir)
    try:
        prepare_model_dir(write_dir, checkpoint_bytes)  # first write: all checks passed.
        yield write_dir
    except ConfigError:
        # Bad input found while restoring (a checkpoint that does not fit): leave no
        # empty model_dir behind (what was there before stays).
        if chief and created and os.path.isdir(write_dir) and not os.listdir(write_dir):
            os.rmdir(write_dir)
        raise
    finally:
        if not chief:
            shutil.rmtree(write_dir, ignore_errors=True)


def check_init_checkpoint(config: Config) -> None:
    """A `--checkpoint` to initialise from must exist: fail now, not after building models."""
    if (
        config.checkpoint
        and not checkpoints.is_saved_model(config.checkpoint)
        and not run_dir.is_reference(config.checkpoint)
    ):
        with flags_for(path="checkpoint"):
            checkpoints.resolve(config.checkpoint)


def restore(
    config: Config,
    manager: tf.train.CheckpointManager,
    init_parts: dict | None,
    classifier: keras.layers.Layer | None = None,
) -> str:
    """Resume from `model_dir`; else, given `init_parts` (e.g. the encoder and head),
    initialise them from `--checkpoint` (a checkpoint, a model_dir, our SavedModel or a
    published reference model), and `classifier` (a fine-tune run's) from its probe per
    `--init_classifier_from_probe` (`probe_part`); else start fresh. See
    `checkpoints.restore_or_initialize`."""
    init_checkpoint = config.checkpoint if init_parts else ""
    with flags_for(resume_dir="model_dir", init_checkpoint="checkpoint"):
        initial = None
        if init_checkpoint and not tf.train.latest_checkpoint(config.model_dir):
            initial = run_dir.init_model(config)
            if classifier is not None:
                init_parts = {**init_parts, **probe_part(config, classifier, initial)}
        return checkpoints.restore_or_initialize(
            manager,
            init_checkpoint,
            init_parts,
            resume_dir=config.model_dir,
            init_model=initial,
        )


def probe_part(config: Config, classifier: keras.layers.Layer, initial=None) -> dict:
    """`{saved name: classifier}` when the fine-tune classifier starts from the linear
    classifier saved in `--checkpoint` (its online probe), else `{}`.

    The reference restores its `supervised_head` with the encoder, so it fine-tunes
    from the probe; `--init_classifier_from_probe` decides here: `auto` loads it when
    its shapes fit (the same number of classes and input width) and
    `--zero_init_logits_layer` is off, else keeps the fresh classifier with a log
    line; `true` makes a misfit a ConfigError; `false` never loads it. `initial`
    is the `--checkpoint` model when it was rebuilt from a SavedModel.
    """
    mode = config.init_classifier_from_probe
    if mode == "false":
        logging.info("Classifier: fresh (--init_classifier_from_probe=false)")
        return {}
    if config.zero_init_logits_layer:  # `true` with it is rejected by Config.validate
        logging.info("Classifier: zero-initialised (--zero_init_logits_layer), not the probe")
        return {}
    saved = checkpoints.saved_classifier(config.checkpoint, initial)
    wanted = [list(w.shape) for w in classifier.weights]
    reason = None
    if saved is None:
        reason = "it has no online probe (--lineareval_while_pretraining=false?)"
    elif saved[1] != wanted:
        reason = (
            f"its probe has kernel and bias shapes {saved[1]}, this classifier {wanted} "
            "(another number of classes, or another --ft_proj_selector width)"
        )
    if reason is not None:
        if mode == "true":
            raise ConfigError("init_classifier_from_probe", f"true, but --checkpoint: {reason}")
        logging.info("Classifier: fresh, not from --checkpoint=%s: %s", config.checkpoint, reason)
        return {}
    description = run_dir.read(config.checkpoint, "checkpoint")
    read = None if description is None else description["model"]["ft_proj_selector"]
    if read is not None and read != config.proj_selector:
        logging.warning(
            "Classifier: starts from the probe of --checkpoint, which read projection-head "
            "layer %d, while this classifier reads layer %d (--ft_proj_selector); same "
            "shapes, so loaded as the reference does (--init_classifier_from_probe=false "
            "to start fresh)",
            read,
            config.proj_selector,
        )
    logging.info("Classifier: starts from the probe of %s", config.checkpoint)
    return {saved[0]: classifier}


def changed_flags(previous: dict, config: Config) -> list[tuple[str, object, object]]:
    """`(flag, previous value, value)` for each field of `config` that differs from
    `previous` (a `config.json` read back); fields `previous` lacks are not compared."""
    return [
        (f.name, previous[f.name], getattr(config, f.name))
        for f in dataclasses.fields(config)
        if f.name in previous and previous[f.name] != getattr(config, f.name)
    ]


def warn_changed_flags(config: Config) -> None:
    """Logs one warning listing the flags that differ from the previous run's `config.json`
    in `config.model_dir` (resuming with another --temperature, --train_steps, ...)."""
    path = os.path.join(config.model_dir, "config.json")
    if not os.path.exists(path):
        return
    try:
        with open(path) as f:
            previous = json.load(f)
    except (OSError, ValueError) as e:
        logging.warning("Could not read the previous %s (%s); it is overwritten", path, e)
        return
    changes = changed_flags(previous, config) if isinstance(previous, dict) else []
    if changes:
        logging.warning(
            "%s was run before with other flags; now: %s (config.json is updated)",
            config.model_dir,
            ", ".join(f"--{name}={new} (was {old})" for name, old, new in changes),
        )


def describe_run(config: Config, strategy: tf.distribute.Strategy, num_classes: int) -> None:
    """Writes `config.json` and `model.json` (see `tf_simclr.run_dir`) on the chief; a
    resumed run first warns about each flag that changed since the previous one."""
    if distribute.is_chief(strategy):
        warn_changed_flags(config)
        save_config(config, config.model_dir)
        run_dir.write(
            os.path.join(config.model_dir, run_dir.MODEL_FILE),
            run_dir.describe(config, num_classes),
        )


def log_start(config, strategy, what: str, source: Source, plan: StepPlan, start: int, write_dir):
    chief = distribute.is_chief(strategy)
    logging.info(
        "%s on %s: %d examples, %d steps/epoch, steps %d..%d, warmup %d, %d replicas%s",
        what,
        source.name,
        source.num_examples,
        plan.steps_per_epoch,
        start,
        plan.total_steps,
        plan.warmup_steps,
        strategy.num_replicas_in_sync,
        "" if chief else f" (worker {distribute.task(strategy)}, writing to {write_dir})",
    )


def save_result(config: Config, strategy: tf.distribute.Strategy, result: dict) -> dict:
    """Writes `train_result.json` on the chief; returns `result`."""
    if distribute.is_chief(strategy):
        with open(os.path.join(config.model_dir, "train_result.json"), "w") as f:
            json.dump(result, f, indent=2, sort_keys=True)
    return result


# Training images `--summary_images` shows, each beside two of its views.
SUMMARY_IMAGES = 4


def view_summaries(config: Config, source: Source, write_dir: str, step: tf.Variable) -> list:
    """`--summary_images`: the callback writing a few training images beside fresh views of
    them (the augmentation of `config`) to TensorBoard as `train/views`; [] when off."""
    if not config.summary_images:
        return []
    from tf_simclr import viz

    images = viz.take_images(source, SUMMARY_IMAGES)
    augment = builders.augment_config(config)
    return [
        ImageSummaries(
            os.path.join(write_dir, "train"),
            config.summary_images,
            step,
            lambda: viz.view_strips(images, augment),
            tag="train/views",
        )
    ]


def label_free_monitor(config: Config, source: Source, write_dir: str, step: tf.Variable) -> list:
    """`--label_free_monitor_steps`: the callback measuring RankMe, alignment, uniformity and
    the embedding std of one fixed batch of view pairs (drawn now, with the run's
    augmentation) into TensorBoard `train/label_free/*`; [] when off."""
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
            log_dir=os.path.join(write_dir, "train"),
            step=step,
            batch_size=config.eval_batch_size,
        )
    ]


class _OneEpoch(keras.callbacks.Callback):
    """Ends a `model.fit(initial_epoch=e, epochs=total)` after epoch e: one fit per epoch
    (see `fit_segments`) whose progress headers still say "Epoch e+1/total"."""

    def on_epoch_end(self, epoch, logs=None):
        self.model.stop_training = True


def fit(
    config,
    model,
    optimizer,
    manager,
    plan,
    start,
    write_dir,
    distributed_dataset,
    extra_callbacks=(),
) -> dict:
    """`model.fit` over steps [start, plan.total_steps), segment by segment; the final logs.

    `distributed_dataset` is an `epoch_datasets` result; checkpoints go through
    `manager` every `plan.checkpoint_steps` steps and at the end. `extra_callbacks`
    run after the built-in ones (e.g. `view_summaries`).
    """
    saver = CheckpointEvery(manager, plan.checkpoint_steps, optimizer.iterations)
    stopper = StopOnSignal(saver)
    verbose, progress = training_progress(
        config.verbose, optimizer.iterations, plan.total_steps, config.train_batch_size
    )
    callbacks = [
        saver,
        stopper,
        ScalarSummaries(
            os.path.join(write_dir, "train"), config.train_summary_steps, optimizer.iterations
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
