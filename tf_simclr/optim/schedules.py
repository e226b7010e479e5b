"""Learning-rate schedule and batch-size scaling of SimCLR (paper's default setting, App. B.1)."""

import math

import keras
import tensorflow as tf

from tf_simclr.choices import BOUNDS, LR_SCALINGS  # noqa: F401 (LR_SCALINGS: the `scaling`s below)


@keras.saving.register_keras_serializable(package="tf_simclr")
class WarmupCosineDecay(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warmup from 0 to `peak_learning_rate`, then cosine decay to 0.

    `lr(step) = peak * step / warmup_steps` for `step < warmup_steps`, then
    `peak * (1 + cos(pi * t)) / 2` with `t = (step - warmup_steps) /
    (total_steps - warmup_steps)` clipped to `[0, 1]`, so the rate is 0 from
    `total_steps` on. This is the reference `WarmUpAndCosineDecay` (cosine over
    the steps that remain after warmup, without restarts). As there, a warmup
    longer than the run is not shortened: the rate then only ramps to
    `total_steps / warmup_steps` of the peak.

    Args:
        peak_learning_rate: the rate reached at the end of warmup (already
            scaled for the batch size, see `scaled_learning_rate`).
        warmup_steps: number of warmup steps, >= 0 (the paper warms up for 10
            epochs).
        total_steps: the step at which the rate reaches 0 (when it is past
            `warmup_steps`), >= 0.
    """

    def __init__(self, peak_learning_rate: float, warmup_steps: int, total_steps: int):
        if peak_learning_rate not in BOUNDS["learning_rate"]:
            raise ValueError(
                f"peak_learning_rate must be {BOUNDS['learning_rate']}, got {peak_learning_rate}."
            )
        if warmup_steps < 0:
            raise ValueError(f"warmup_steps must be >= 0, got {warmup_steps}.")
        if total_steps < 0:
            raise ValueError(f"total_steps must be >= 0, got {total_steps}.")
        self.peak_learning_rate = peak_learning_rate
        self.warmup_steps = warmup_steps
        self.total_steps = total_steps

    def __call__(self, step):
        step = tf.cast(step, tf.float32)
        peak = tf.constant(self.peak_learning_rate, tf.float32)
        # max(., 1) only guards the division; the branch is unused when the count is 0.
        warmup = float(max(self.warmup_steps, 1))
        decay = float(max(self.total_steps - self.warmup_steps, 1))
        warmup_lr = peak * step / warmup
        progress = tf.clip_by_value((step - self.warmup_steps) / decay, 0.0, 1.0)
        cosine_lr = peak * 0.5 * (1.0 + tf.cos(math.pi * progress))
        return tf.where(step < self.warmup_steps, warmup_lr, cosine_lr)

    def get_config(self) -> dict:
        return {
            "peak_learning_rate": self.peak_learning_rate,
            "warmup_steps": self.warmup_steps,
            "total_steps": self.total_steps,
        }


def scaled_learning_rate(learning_rate: float, batch_size: int, scaling: str) -> float:
    """The peak learning rate for a global batch size (paper Appendix B.1).

    Args:
        learning_rate: the base rate (the reference uses 0.3 with "linear" and
            0.075 with "sqrt" for LARS).
        batch_size: the global batch size.
        scaling: "linear" for `learning_rate * batch_size / 256`, or "sqrt" for
            `learning_rate * sqrt(batch_size)`.
    """
    if scaling == "linear":
        return learning_rate * batch_size / 256.0
    if scaling == "sqrt":
        return learning_rate * math.sqrt(batch_size)
    raise ValueError(f"Unknown learning-rate scaling {scaling!r}; expected 'linear' or 'sqrt'.")
