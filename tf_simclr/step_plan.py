"""The step plan of a training run, and the strategy checks, before anything is written.

Every failure here is a `ConfigError` (exit code 2): a batch larger than the data, a
global batch that does not split over the replicas.
"""

from __future__ import annotations

import dataclasses

import tensorflow as tf
from absl import logging

from tf_simclr.config import Config, ConfigError


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


def check_replicas(config: Config, strategy: tf.distribute.Strategy) -> None:
    """The global batch must split evenly over the replicas; XLA only on one replica."""
    replicas = strategy.num_replicas_in_sync
    if config.train_batch_size % replicas:
        raise ConfigError(
            "train_batch_size",
            f"{config.train_batch_size} is not divisible by the {replicas} replicas",
        )
    if config.jit_compile and replicas > 1:
        # Keras 3 XLA-compiles the function around `strategy.run`: one XLA program for all
        # replicas, which cannot read the other devices' variables ("Trying to access
        # resource ... located in device CPU:1 from device CPU:0"); compiling each replica's
        # step instead fails at its cross-replica sums (docs/distributed.md, tests/test_xla.py).
        raise ConfigError(
            "jit_compile",
            f"XLA with {replicas} replicas is not possible with Keras 3 / TensorFlow "
            f"{tf.__version__}: Keras compiles all replicas into one XLA program, which cannot "
            "use the variables on the other devices; use --jit_compile=false "
            "(docs/distributed.md)",
        )
