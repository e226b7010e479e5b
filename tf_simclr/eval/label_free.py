"""Label-free measures of a representation: is pretraining working, without a labelled probe?

- `rankme`: the effective rank of an embedding matrix (Garrido et al. 2023, "RankMe:
  Assessing the downstream performance of pretrained self-supervised representations by
  their rank", Eq. 1): exp of the entropy of its normalised singular values. Between 1
  (every image maps to one direction: collapse) and min(N, D); higher ranked their
  models' downstream accuracy in the paper.
- `alignment` and `uniformity` (Wang & Isola 2020, "Understanding contrastive
  representation learning through alignment and uniformity on the hypersphere", Sec. 4.1)
  of l2-normalised projections: the mean squared distance of positive pairs (0 is perfect;
  low is good, but 0 together with high uniformity means collapse) and the log of the mean
  Gaussian potential over all pairs (-4 at best for t=2 on a large sphere, 0 when every
  point is the same: higher is worse).
- `embedding_std`: the per-dimension standard deviation of l2-normalised embeddings,
  averaged over dimensions (SimSiam's collapse alarm, Chen & He 2021, Sec. 4.1): about
  1/sqrt(D) when the embeddings spread over the sphere, 0 at collapse.

All take float `[N, D]` arrays or tensors and return Python floats.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

# RankMe's epsilon in the normalised singular values (the paper's value).
RANKME_EPSILON = 1e-7


def _float64(x) -> tf.Tensor:
    x = tf.convert_to_tensor(x)
    if x.shape.rank != 2:
        raise ValueError(f"expected a [N, D] matrix, got shape {x.shape}")
    return tf.cast(x, tf.float64)


def rankme(embeddings) -> float:
    """RankMe of `[N, D]` embeddings: exp(-sum p_k log p_k), p_k = s_k / sum(s) + eps, with
    s the singular values. 1 for a rank-1 matrix, min(N, D) for equal singular values."""
    singular = tf.linalg.svd(_float64(embeddings), compute_uv=False)
    p = singular / tf.maximum(tf.reduce_sum(singular), 1e-300) + RANKME_EPSILON
    return float(tf.exp(-tf.reduce_sum(p * tf.math.log(p))))


def _normalized(x) -> tf.Tensor:
    return tf.math.l2_normalize(_float64(x), axis=1)


def alignment(z1, z2, alpha: float = 2.0) -> float:
    """Mean ||f(x) - f(y)||^alpha over the positive pairs (rows of `z1`, `z2`), after l2
    normalisation: in [0, 2^alpha]; Wang & Isola's L_align with alpha=2."""
    a, b = _normalized(z1), _normalized(z2)
    if a.shape != b.shape:
        raise ValueError(f"z1 and z2 must have the same shape, got {a.shape} and {b.shape}")
    return float(tf.reduce_mean(tf.norm(a - b, axis=1) ** alpha))


def uniformity(z, t: float = 2.0) -> float:
    """log mean over pairs i < j of exp(-t ||z_i - z_j||^2), after l2 normalisation:
    Wang & Isola's L_uniform; 0 when all points coincide, lower is more uniform."""
    z = _normalized(z)
    n = int(z.shape[0])
    if n < 2:
        raise ValueError(f"uniformity needs at least 2 rows, got {n}")
    squared = tf.maximum(
        2.0 - 2.0 * tf.matmul(z, z, transpose_b=True), 0.0
    )  # ||a - b||^2 of unit vectors
    upper = np.triu(np.ones((n, n), bool), k=1)
    pairs = tf.boolean_mask(squared, upper)
    # log-mean-exp, stable.
    return float(tf.reduce_logsumexp(-t * pairs) - tf.math.log(tf.cast(tf.size(pairs), tf.float64)))


def embedding_std(embeddings) -> float:
    """Mean over dimensions of the standard deviation of l2-normalised `[N, D]` embeddings:
    ~1/sqrt(D) when spread over the sphere, 0 at collapse."""
    return float(tf.reduce_mean(tf.math.reduce_std(_normalized(embeddings), axis=0)))


def label_free_metrics(embeddings, projections1, projections2) -> dict[str, float]:
    """The four measures of a fixed batch: `embeddings` `[M, D]` of encoder outputs (any
    images), `projections1/2` `[N, P]` of the two views of N images (row i of each is a
    positive pair)."""
    both = tf.concat([tf.convert_to_tensor(projections1), tf.convert_to_tensor(projections2)], 0)
    return {
        "rankme": rankme(embeddings),
        "embedding_std": embedding_std(embeddings),
        "alignment": alignment(projections1, projections2),
        "uniformity": uniformity(both),
    }
