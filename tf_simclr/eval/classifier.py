"""Classifier accuracy: exact top-1 / top-5 and cross-entropy over a whole split."""

from __future__ import annotations

import keras
import tensorflow as tf

from tf_simclr.eval.features import images_and_labels, inference_fn, progress_bar

TOP_K = 5


def evaluate_classifier(model: keras.Model, dataset: tf.data.Dataset, verbose: int = 0) -> dict:
    """Top-1, top-5 accuracy and mean cross-entropy of ``model`` over a whole split.

    Exact over all examples, the last partial batch included (sums, not means
    of batch means). Works for any model whose output is logits `[B, C]` or a
    dict with ``"logits"`` (a `Classifier`, or `SimCLR` with its probe).

    Args:
      model: the classifier, run with ``training=False``.
      dataset: batches ``{"image", "label"}`` or ``(images, labels)``.
      verbose: 1 shows a progress bar.

    Returns:
      ``{"top1": float, "top5": float, "loss": float, "num_examples": int}``;
      top5 is top-min(5, C) accuracy. Ties count as in Keras' top-k metric
      (`tf.math.in_top_k`).
    """
    forward = inference_fn(model, "logits")
    progbar = progress_bar(dataset, verbose)
    top1 = top5 = loss = 0.0
    count = 0
    for step, batch in enumerate(dataset, start=1):
        images, labels = images_and_labels(batch)
        labels = tf.cast(labels, tf.int64)
        logits = tf.cast(forward(images), tf.float32)
        k = min(TOP_K, int(logits.shape[-1]))
        top1 += float(tf.reduce_sum(tf.cast(tf.argmax(logits, -1) == labels, tf.float64)))
        top5 += float(tf.reduce_sum(tf.cast(tf.math.in_top_k(labels, logits, k), tf.float64)))
        loss += float(
            tf.reduce_sum(
                tf.cast(
                    tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits),
                    tf.float64,
                )
            )
        )
        count += int(labels.shape[0])
        if progbar is not None:
            progbar.update(step)
    if progbar is not None and count:
        progbar.update(step, finalize=True)  # ends its line (of an unknown length, never)
    if count == 0:
        raise ValueError("evaluate_classifier got an empty dataset.")
    return {"top1": top1 / count, "top5": top5 / count, "loss": loss / count, "num_examples": count}
