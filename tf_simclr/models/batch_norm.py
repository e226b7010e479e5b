"""BatchNormalization on TensorFlow's fused kernel: the Keras layer, computed faster.

Keras 3 computes `keras.layers.BatchNormalization` from separate TensorFlow ops
(mean, squared difference, multiply, add, and in the backward pass their
gradients, with broadcasts and tiles). On a CPU these are memory-bound passes
over every activation, and in a ResNet-18 train step at 32 px they took about
as much time as all convolutions together (`docs/performance.md`). TensorFlow's
`FusedBatchNormV3` does the forward pass and its gradient in one kernel each
(oneDNN on x86), for float32, float16 and bfloat16 inputs with float32
statistics.

`FusedBatchNormalization` is a drop-in subclass: same arguments, variables
(`gamma`, `beta`, `moving_mean`, `moving_variance`, so checkpoints are
interchangeable), outputs and moving-average update as the Keras layer. It uses
the fused kernel for 2-D `[B, C]` and 4-D `[B, H, W, C]` inputs normalised over
the last axis, and the Keras computation otherwise (synchronized / global BN,
renorm, masks, other axes, other backends, and inside XLA-compiled functions).

Synchronized (global) BN across replicas takes its statistics from `sync_moments`, in
two passes (the global mean, then the global mean squared deviation from it). Keras
(and the reference's `SyncBatchNormalization`) compute the variance as E[x^2] - E[x]^2,
which loses most of its float32 digits when the mean is large against the spread, as in
a selective-kernel gate (BN over one pooled vector per image).
"""

from __future__ import annotations

import keras
import tensorflow as tf
from tensorflow.python.ops import control_flow_util

from tf_simclr.choices import BOUNDS

_FUSED_DTYPES = (tf.float32, tf.float16, tf.bfloat16)


def check_batch_norm_decay(batch_norm_decay: float) -> None:
    """The check of every `batch_norm_decay` argument (`ResNet`, `ProjectionHead`), against
    the bound of --batch_norm_decay; raises ValueError."""
    bound = BOUNDS["batch_norm_decay"]
    if batch_norm_decay not in bound:
        raise ValueError(f"`batch_norm_decay` must be {bound}, got {batch_norm_decay!r}.")


def _in_xla_context() -> bool:
    """Whether the op being built will be XLA-compiled (`jit_compile=True`).

    XLA's CPU backend expands the fused op into slow loops (a ResNet-18 w0.25 step took
    6x longer than with the separate ops, which XLA fuses itself), so under XLA the
    Keras computation is used.
    """
    if tf.executing_eagerly():
        return False
    graph = tf.compat.v1.get_default_graph()
    return control_flow_util.GraphOrParentsInXlaContext(graph)


@keras.saving.register_keras_serializable(package="tf_simclr")
class FusedBatchNormalization(keras.layers.BatchNormalization):
    """`keras.layers.BatchNormalization` computed with `tf.compat.v1.nn.fused_batch_norm`.

    Semantics kept from the Keras layer: in training mode (and trainable) the
    batch mean and the *biased* batch variance normalise the batch and enter
    the moving averages `moving = momentum * moving + (1 - momentum) * batch`;
    otherwise the moving statistics are used and left alone. Statistics are
    float32 for every input dtype; the output has the layer's compute dtype.

    Call:
        inputs: `[B, C]` or `[B, H, W, C]` floats (other shapes: Keras path).
        Returns the normalised tensor, same shape.
    """

    def _fusable(self, inputs, mask) -> bool:
        rank = len(inputs.shape)
        axis = self.axis if self.axis >= 0 else self.axis + rank
        return (
            keras.backend.backend() == "tensorflow"
            and mask is None
            and not self.synchronized
            and not getattr(self, "renorm", False)  # Keras >= 3.11 has batch renorm
            and rank in (2, 4)
            and axis == rank - 1
            and inputs.shape[-1] is not None
            and not _in_xla_context()
        )

    def _moments(self, inputs, mask):
        if mask is None and self.synchronized:
            return sync_moments(inputs, self._reduction_axes, tf.distribute.get_replica_context())
        return super()._moments(inputs, mask)

    def call(self, inputs, training=None, mask=None):
        if not self._fusable(inputs, mask):
            return super().call(inputs, training=training, mask=mask)
        x = tf.convert_to_tensor(inputs)
        if x.dtype not in _FUSED_DTYPES:
            x = tf.cast(x, tf.float32)
        channels = x.shape[-1]
        flat = len(x.shape) == 2
        if flat:
            x = tf.reshape(x, [-1, 1, 1, channels])
        gamma = tf.convert_to_tensor(self.gamma) if self.scale else tf.ones([channels])
        beta = tf.convert_to_tensor(self.beta) if self.center else tf.zeros([channels])

        if training and self.trainable:
            y, mean, variance = tf.compat.v1.nn.fused_batch_norm(
                x, gamma, beta, epsilon=self.epsilon, is_training=True
            )[:3]
            # The kernel normalises with the biased variance but returns the unbiased
            # one (n / (n - 1) times it) for the moving average; Keras averages the
            # biased one, so undo the correction.
            n = tf.cast(tf.size(x) // channels, tf.float32)
            variance = variance * tf.maximum(n - 1.0, 1.0) / tf.maximum(n, 1.0)
            momentum = self.momentum
            self.moving_mean.assign(self.moving_mean * momentum + mean * (1.0 - momentum))
            self.moving_variance.assign(
                self.moving_variance * momentum + variance * (1.0 - momentum)
            )
        else:
            y = tf.compat.v1.nn.fused_batch_norm(
                x,
                gamma,
                beta,
                mean=tf.convert_to_tensor(self.moving_mean),
                variance=tf.convert_to_tensor(self.moving_variance),
                epsilon=self.epsilon,
                is_training=False,
            )[0]
        if flat:
            y = tf.reshape(y, [-1, channels])
        return tf.cast(y, self.compute_dtype)


def sync_moments(x, axes, replica: tf.distribute.ReplicaContext | None):
    """Mean and biased variance of `x` over `axes` and over every replica's batch.

    Two all-reduces: the sum and count give the global mean; the sum of squared
    deviations from that mean gives the variance, as one device computes it on the whole
    batch (no E[x^2] - E[x]^2 cancellation). Float32 for half-precision inputs; the
    returned statistics are squeezed to `[C]`. Without a replica context, or with one
    replica, the same two passes over the local batch.
    """
    reduce = (
        (lambda value: replica.all_reduce(tf.distribute.ReduceOp.SUM, value))
        if replica is not None and replica.num_replicas_in_sync > 1
        else (lambda value: value)
    )
    if x.dtype in (tf.float16, tf.bfloat16):
        x = tf.cast(x, tf.float32)
    local_sum = tf.reduce_sum(x, axis=axes, keepdims=True)
    local_count = tf.cast(tf.size(x) // tf.size(local_sum), x.dtype)
    total, count = reduce([local_sum, local_count])
    mean = total / count
    squares = tf.reduce_sum(tf.square(x - mean), axis=axes, keepdims=True)
    variance = reduce(squares) / count
    return tf.squeeze(mean, axes), tf.squeeze(variance, axes)
