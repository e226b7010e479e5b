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


def reference_weight_decay(model: keras.Model) -> tf.Tensor:
    """The weight-decay term the reference adds to its loss (and to its logged `total_loss`).

    Our optimizers apply weight decay themselves (coupled: `weight_decay * w` added to the
    gradient), so no loss here includes it; this is the equivalent L2 term, for logging
    only. Which variables count follows the reference's `add_weight_decay`: with LARS it
    decays everything but the supervised head inside the optimizer and adds the head's
    term to the loss; with the other optimizers every decayed variable's term is in the
    loss. Decoupled decay (adamw) is never a loss term: 0. Float32 scalar.
    """
    optimizer = getattr(model.optimizer, "inner_optimizer", model.optimizer)  # loss scaling
    l2_loss = getattr(optimizer, "l2_loss", None)
    if l2_loss is None:
        return tf.constant(0.0)
    variables = model.trainable_variables
    if getattr(optimizer, "layer_adaptation", False):  # --optimizer=lars
        variables = [v for v in variables if "head_supervised" in v.path]
    return tf.cast(l2_loss(variables), tf.float32)
