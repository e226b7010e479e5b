"""The gradient step every model's `train_step` shares: loss -> replica-scaled gradients.

Keras sums gradients over replicas (an all-reduce SUM inside
`optimizer.apply`). Each model's loss is a per-replica mean, so it is divided
here, and only here, by the replica count: the applied gradient is then that
of the global-batch mean, equal to single-device training
(`tests/test_distribute.py` checks it for 2 and 4 replicas). Cross-replica
negatives of NT-Xent need no other scaling: see `tf_simclr.distribute`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import keras
import tensorflow as tf

from tf_simclr import distribute


def replica_scaled_step(
    model: keras.Model, loss_fn: Callable[[], tuple[tf.Tensor, Any]]
) -> tuple[Any, tf.Tensor]:
    """Runs `loss_fn` under a tape and applies its gradient to `model.trainable_variables`.

    Args:
      model: a compiled model; its optimizer applies the step (a
        `LossScaleOptimizer` scales the loss first and skips non-finite steps).
      loss_fn: `() -> (loss, aux)`: the forward pass, with `loss` the
        per-replica mean to minimise (float32 scalar) and `aux` anything the
        caller wants back (outputs for metrics).

    Returns:
      `(aux, learning_rate)`: `loss_fn`'s aux and the learning rate this step applied.
    """
    with tf.GradientTape() as tape:
        loss, aux = loss_fn()
        scaled = loss / tf.cast(distribute.num_replicas(), loss.dtype)  # see module docstring
        scaled = model.optimizer.scale_loss(scaled)
    variables = model.trainable_variables
    grads = tape.gradient(scaled, variables)
    learning_rate = model.optimizer.learning_rate  # read before apply advances the step
    model.optimizer.apply(grads, variables)
    return aux, learning_rate
