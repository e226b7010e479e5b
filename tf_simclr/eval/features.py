"""Frozen features: every example of a dataset through a model in inference mode.

`extract_features` feeds the kNN monitor (`tf_simclr.eval.knn`), the cheap
linear probe (`tf_simclr.eval.linear.linear_eval_on_features`) and any
notebook analysis. The helpers here are shared by the other protocols.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf


def images_and_labels(batch) -> tuple[tf.Tensor, tf.Tensor]:
    if isinstance(batch, dict):
        return batch["image"], batch["label"]
    images, labels = batch
    return images, labels


def progress_bar(dataset: tf.data.Dataset, verbose: int) -> keras.utils.Progbar | None:
    if verbose != 1:
        return None
    batches = int(dataset.cardinality())
    return keras.utils.Progbar(batches if batches >= 0 else None)


def inference_fn(model, key: str):
    """`images -> model(images, training=False)[key]` as a tf.function (or the tensor output)."""

    @tf.function(reduce_retracing=True)  # the last batch may be smaller
    def forward(images):
        outputs = model(images, training=False)
        return outputs[key] if isinstance(outputs, dict) else outputs

    return forward


def extract_features(
    model_or_encoder: keras.Model, dataset: tf.data.Dataset, verbose: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Features of every example of ``dataset``, in inference mode.

    Args:
      model_or_encoder: an encoder (images -> features `[B, D]`) or a model
        returning a dict with ``"embedding"`` (`SimCLR`, `Classifier`).
      dataset: batches ``{"image": [B, S, S, 3], "label": [B]}`` (or
        ``(images, labels)``), e.g. `tf_simclr.data.eval_dataset`.
      verbose: 1 shows a progress bar.

    Returns:
      features float32 `[N, D]` and labels int64 `[N]`, in dataset order.
    """
    forward = inference_fn(model_or_encoder, "embedding")
    progbar = progress_bar(dataset, verbose)
    features, labels = [], []
    for step, batch in enumerate(dataset, start=1):
        images, batch_labels = images_and_labels(batch)
        features.append(np.asarray(forward(images), np.float32))
        labels.append(np.asarray(batch_labels, np.int64))
        if progbar is not None:
            progbar.update(step)
    if not features:
        raise ValueError("extract_features got an empty dataset.")
    return np.concatenate(features), np.concatenate(labels)
