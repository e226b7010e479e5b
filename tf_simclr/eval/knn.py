"""Weighted kNN on frozen features (Wu et al. 2018): a training-free progress signal."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from tf_simclr.choices import BOUNDS


def knn_predict(
    train_features: np.ndarray,
    train_labels: np.ndarray,
    test_features: np.ndarray,
    num_classes: int,
    k: int = 200,
    temperature: float = 0.1,
    batch_size: int = 1024,
) -> np.ndarray:
    """Weighted kNN class predictions (Wu et al. 2018, "Unsupervised Feature Learning
    via Non-Parametric Instance Discrimination", Section 3.4).

    Features are l2-normalised, so similarity is cosine. Each test row takes
    its ``k`` most similar training rows (all of them when the training set
    is smaller), weights each by ``exp(sim / temperature)``, sums the weights
    per class and predicts the class with the largest sum (the lowest class
    index on ties). Test rows are processed ``batch_size`` at a time, so memory
    is `O(batch_size * N_train)`: 50k training and 10k test rows at D=512 need
    a few hundred MB.

    Args:
      train_features: float `[N, D]`.
      train_labels: int `[N]` in `[0, num_classes)`.
      test_features: float `[M, D]`.
      num_classes: number of classes C.
      k: neighbours (>= 1); 200 and temperature 0.1 are InstDisc's values.
      temperature: vote temperature (> 0).
      batch_size: test rows per batch (>= 1).

    Returns:
      int64 `[M]` predicted classes.
    """
    train_features = np.asarray(train_features, np.float32)
    test_features = np.asarray(test_features, np.float32)
    train_labels = np.asarray(train_labels, np.int64)
    # The bounds of the flags that feed them: --knn_k, --knn_temperature, --eval_batch_size.
    if k not in BOUNDS["knn_k"]:
        raise ValueError(f"`k` must be {BOUNDS['knn_k']}, got {k!r}.")
    if temperature not in BOUNDS["knn_temperature"]:
        raise ValueError(f"`temperature` must be {BOUNDS['knn_temperature']}, got {temperature!r}.")
    if batch_size not in BOUNDS["eval_batch_size"]:
        raise ValueError(f"`batch_size` must be {BOUNDS['eval_batch_size']}, got {batch_size!r}.")
    if num_classes < 1:
        raise ValueError(f"`num_classes` must be >= 1, got {num_classes!r}.")
    if train_features.ndim != 2 or test_features.ndim != 2:
        raise ValueError(
            f"Features must be [N, D]; got {train_features.shape} and {test_features.shape}."
        )
    if train_features.shape[1] != test_features.shape[1]:
        raise ValueError(
            f"Train and test features differ in dimension: {train_features.shape[1]} "
            f"vs {test_features.shape[1]}."
        )
    if train_labels.shape != (train_features.shape[0],) or train_labels.size == 0:
        raise ValueError(
            f"Need one label per training row; got {train_labels.shape} labels for "
            f"{train_features.shape[0]} rows."
        )
    if train_labels.min() < 0 or train_labels.max() >= num_classes:
        raise ValueError(f"Training labels must be in [0, {num_classes}).")

    train = tf.math.l2_normalize(tf.constant(train_features), axis=1)
    labels = tf.constant(train_labels)
    k = min(k, train_features.shape[0])

    @tf.function(reduce_retracing=True)
    def predict(queries):
        sims = tf.matmul(tf.math.l2_normalize(queries, axis=1), train, transpose_b=True)
        top_sims, top_indices = tf.math.top_k(sims, k=k)  # [b, k]
        weights = tf.exp(top_sims / temperature)
        rows = tf.range(tf.shape(queries, out_type=tf.int64)[0])
        # Sum the weights per (row, class): segment row * C + class of a [b * C] vector.
        segments = rows[:, None] * num_classes + tf.gather(labels, top_indices)
        votes = tf.math.unsorted_segment_sum(
            tf.reshape(weights, [-1]), tf.reshape(segments, [-1]), tf.size(rows) * num_classes
        )
        return tf.argmax(tf.reshape(votes, [-1, num_classes]), axis=1)

    predictions = [
        predict(tf.constant(test_features[start : start + batch_size])).numpy()
        for start in range(0, test_features.shape[0], batch_size)
    ]
    return np.concatenate(predictions) if predictions else np.zeros([0], np.int64)


def knn_accuracy(
    train_features: np.ndarray,
    train_labels: np.ndarray,
    test_features: np.ndarray,
    test_labels: np.ndarray,
    num_classes: int,
    k: int = 200,
    temperature: float = 0.1,
    batch_size: int = 1024,
) -> float:
    """Top-1 accuracy of `knn_predict` on ``test_labels`` (int `[M]`); see there."""
    test_labels = np.asarray(test_labels, np.int64)
    if test_labels.shape != (np.shape(test_features)[0],) or test_labels.size == 0:
        raise ValueError(
            f"Need one label per test row; got {test_labels.shape} labels for "
            f"{np.shape(test_features)[0]} rows."
        )
    predictions = knn_predict(
        train_features, train_labels, test_features, num_classes, k, temperature, batch_size
    )
    return float(np.mean(predictions == test_labels))


def knn_top1(
    features: dict[str, tuple[np.ndarray, np.ndarray]],
    num_classes: int,
    k: int = 200,
    temperature: float = 0.1,
) -> float:
    """Weighted kNN top-1 of `features["test"]` against `features["train"]`, each a
    `(features [N, D], labels [N])` pair as `tf_simclr.eval.features.frozen_features`
    returns them; see `knn_accuracy`."""
    (train_x, train_y), (test_x, test_y) = features["train"], features["test"]
    return knn_accuracy(
        train_x, train_y, test_x, test_y, num_classes=num_classes, k=k, temperature=temperature
    )
