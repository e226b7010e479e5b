"""The SimCLR contrastive loss (NT-Xent), as a pure function.

Chen et al. 2020, "A Simple Framework for Contrastive Learning of Visual
Representations", Sec. 2.1 eq. (1): for a positive pair of views, the other
`2(N - 1)` augmented examples of the batch are the negatives. The semantics
follow `add_contrastive_loss` of the reference code (google-research/simclr,
`tf2/objective.py`); deviations are marked in comments.
"""

from typing import NamedTuple

import tensorflow as tf

from tf_simclr import distribute

# Subtracted from the self-similarity logits so that an example is never its
# own negative. Only ever applied in float32: in float16 it would overflow to
# -inf and turn the loss into NaN.
_LARGE_NUM = 1e9


class ContrastiveOutput(NamedTuple):
    """What `nt_xent` returns.

    Attributes:
        loss: scalar float32, the loss of this replica (see `nt_xent`).
        logits: float32 `[n, N]`, similarities of the local view-1 projections
            with all view-2 projections of the global batch, divided by the
            temperature (the reference's `logits_ab`). `n` is the local batch
            size, `N` the global one (`N == n` without gathering).
        labels: int32 `[n]`, the column of `logits` that holds each row's
            positive.
    """

    loss: tf.Tensor
    logits: tf.Tensor
    labels: tf.Tensor


def nt_xent(
    z1: tf.Tensor,
    z2: tf.Tensor,
    temperature: float = 0.1,
    hidden_norm: bool = True,
    gather_distributed: bool = True,
) -> ContrastiveOutput:
    """Normalized temperature-scaled cross-entropy loss (NT-Xent).

    Each example `i` contributes two classification problems: view 1 of `i`
    must pick view 2 of `i` among all `2N - 1` other projections of the
    (global) batch, and vice versa. The loss is

        loss = mean_i CE(view1_i -> view2_i) + mean_i CE(view2_i -> view1_i)

    i.e. the *sum* of the two directional cross-entropies, each averaged over
    the batch. This is the reference convention and twice the paper's
    `L = 1/(2N) sum_k [l(2k-1, 2k) + l(2k, 2k-1)]` (Sec. 2.1, Algorithm 1);
    keeping it means the published learning rates and weight decays transfer
    unchanged.

    Distributed use: with `gather_distributed=True` and more than one replica,
    the negatives are gathered from all replicas (`distribute.cross_replica_concat`)
    and the returned `loss` is this replica's share scaled so that the *mean over
    replicas* of `loss` is the loss of the global batch. The caller divides it by
    the replica count once before taking gradients, because the optimizer sums
    the gradients of all replicas. For equal shards (the usual case) `loss` is
    exactly the local mean above; for unequal shards (a partial last batch)
    each row is weighted `R / N` instead of `1 / n` so that the global result
    stays exact.

    Args:
        z1: projections of view 1 of the local batch, `[n, d]`, any float dtype.
        z2: projections of view 2 of the same examples in the same order, `[n, d]`.
        temperature: softmax temperature `tau` of eq. (1); the reference runs
            use 0.1 on ImageNet and 0.5 on CIFAR-10.
        hidden_norm: l2-normalise the projections first, so logits are cosine
            similarities over `temperature`.
        gather_distributed: use the examples of all replicas as negatives. It has
            no effect outside a multi-replica strategy.

    Returns:
        A `ContrastiveOutput`. Everything is computed in float32 whatever the
        input dtype (mixed-precision safe).
    """
    z1 = tf.cast(z1, tf.float32)
    z2 = tf.cast(z2, tf.float32)
    if hidden_norm:
        z1 = tf.math.l2_normalize(z1, axis=-1)
        z2 = tf.math.l2_normalize(z2, axis=-1)

    n = tf.shape(z1)[0]
    if gather_distributed and distribute.num_replicas() > 1:
        z1_large = distribute.cross_replica_concat(z1)
        z2_large = distribute.cross_replica_concat(z2)
        # Rows before ours. The reference uses `replica_id * n`, which is only
        # right when all replicas hold the same number of examples.
        shard_sizes = distribute.cross_replica_concat(tf.reshape(n, [1]))
        offset = tf.reduce_sum(shard_sizes[: distribute.replica_id()])
        # Per-row weight R / N (== 1 / n for equal shards), see the docstring.
        row_weight = distribute.num_replicas() / tf.cast(tf.shape(z1_large)[0], tf.float32)
    else:
        z1_large, z2_large = z1, z2
        offset = 0
        row_weight = 1.0 / tf.cast(tf.maximum(n, 1), tf.float32)

    labels = tf.range(n, dtype=tf.int32) + offset
    self_mask = tf.one_hot(labels, tf.shape(z1_large)[0], dtype=tf.float32)

    logits_aa = tf.matmul(z1, z1_large, transpose_b=True) / temperature - self_mask * _LARGE_NUM
    logits_bb = tf.matmul(z2, z2_large, transpose_b=True) / temperature - self_mask * _LARGE_NUM
    logits_ab = tf.matmul(z1, z2_large, transpose_b=True) / temperature
    logits_ba = tf.matmul(z2, z1_large, transpose_b=True) / temperature

    # The positive sits in the first block, so `labels` index the concatenation too.
    ce_a = tf.nn.sparse_softmax_cross_entropy_with_logits(
        labels=labels, logits=tf.concat([logits_ab, logits_aa], axis=1)
    )
    ce_b = tf.nn.sparse_softmax_cross_entropy_with_logits(
        labels=labels, logits=tf.concat([logits_ba, logits_bb], axis=1)
    )
    loss = tf.reduce_sum(ce_a) * row_weight + tf.reduce_sum(ce_b) * row_weight
    return ContrastiveOutput(loss=loss, logits=logits_ab, labels=labels)


def contrastive_accuracy(logits: tf.Tensor, labels: tf.Tensor) -> tf.Tensor:
    """Fraction of rows whose largest logit is the positive; scalar float32 in [0, 1].

    Args:
        logits: `[n, N]`, e.g. `ContrastiveOutput.logits`.
        labels: int `[n]`, e.g. `ContrastiveOutput.labels`.
    """
    predictions = tf.argmax(logits, axis=1, output_type=tf.int32)
    correct = tf.equal(predictions, tf.cast(labels, tf.int32))
    return tf.reduce_mean(tf.cast(correct, tf.float32))


def contrastive_entropy(logits: tf.Tensor) -> tf.Tensor:
    """Mean over rows of the entropy of `softmax(logits)`, in nats.

    A scalar float32 in `[0, log N]` for `[n, N]` logits: 0 when every row is
    certain, `log N` when every row is uniform. The reference logs it to watch
    the contrastive task get easier.
    """
    logits = tf.cast(logits, tf.float32)
    log_p = tf.nn.log_softmax(logits, axis=1)
    return tf.reduce_mean(-tf.reduce_sum(tf.exp(log_p) * log_p, axis=1))
