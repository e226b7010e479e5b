"""What a training run writes into its model_dir besides checkpoints, and where it writes.

- `run_directory`: the directory this process writes to (a temporary one on non-chief
  workers), created only after every check passed, and proven writable with room for
  two checkpoints (`prepare_model_dir`);
- `describe_run`: `config.json` and `model.json` (`tf_simclr.run_dir`) at step 0, after
  a warning for each flag that changed since the run being resumed (`warn_changed_flags`);
- `log_start`, `save_result` (`train_result.json`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
import tempfile
from collections.abc import Iterator

import tensorflow as tf
from absl import logging

from tf_simclr import distribute, precision, run_dir
from tf_simclr.config import Config, ConfigError, save_config
from tf_simclr.data import Source
from tf_simclr.step_plan import StepPlan


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
    config = config.replace(precision=precision.resolve(config.precision))  # not "auto"
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
