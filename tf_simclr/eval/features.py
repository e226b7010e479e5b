"""Frozen features: every example of a dataset through a model in inference mode.

`extract_features` feeds the kNN monitor (`tf_simclr.eval.knn`), the cheap
linear probe (`tf_simclr.eval.linear.linear_eval_on_features`) and any
notebook analysis; `frozen_features` runs it over named sources (the kNN
evaluation's train and test splits). The helpers here are shared by the other
protocols.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Mapping

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from tf_simclr.data import Source, eval_dataset
from tf_simclr.logs import interactive


def images_and_labels(batch) -> tuple[tf.Tensor, tf.Tensor]:
    if isinstance(batch, dict):
        return batch["image"], batch["label"]
    images, labels = batch
    return images, labels


def progress_bar(dataset: tf.data.Dataset, verbose: int) -> keras.utils.Progbar | None:
    """A Keras progress bar for `verbose=1` on a terminal; None elsewhere (in a log file
    the bar is control characters, and its last update has no line end)."""
    if verbose != 1 or not interactive():
        return None
    batches = int(dataset.cardinality())
    return keras.utils.Progbar(batches if batches >= 0 else None)


class Progress:
    """Progress over the batches of a dataset: a Keras progress bar on a terminal, else (a
    log file, a pipe) one log line every `every_seconds` and one at the end.

    `verbose=0` says nothing; on a terminal `verbose=2` logs like a pipe does.
    """

    def __init__(
        self, dataset: tf.data.Dataset, verbose: int, description: str, every_seconds=30.0
    ):
        batches = int(dataset.cardinality())
        self.total = batches if batches >= 0 else None
        self.verbose = verbose
        self.description = description
        self.every_seconds = every_seconds
        self.began = self.last = time.monotonic()
        self.batches = 0
        self.bar = None
        if verbose == 1 and sys.stdout.isatty():
            self.bar = keras.utils.Progbar(self.total)

    def _log(self) -> None:
        of = f"/{self.total}" if self.total is not None else ""
        logging.info(
            "%s: %d%s batches, %.0f s",
            self.description,
            self.batches,
            of,
            time.monotonic() - self.began,
        )

    def update(self) -> None:
        self.batches += 1
        if self.bar is not None:
            self.bar.update(self.batches)
        elif self.verbose and time.monotonic() - self.last >= self.every_seconds:
            self.last = time.monotonic()
            self._log()

    def done(self) -> None:
        if self.bar is None and self.verbose:
            self._log()


def inference_fn(model, key: str):
    """`images -> model(images, training=False)[key]` as a tf.function (or the tensor output)."""

    @tf.function(reduce_retracing=True)  # the last batch may be smaller
    def forward(images):
        outputs = model(images, training=False)
        return outputs[key] if isinstance(outputs, dict) else outputs

    return forward


def extract_features(
    model_or_encoder: keras.Model,
    dataset: tf.data.Dataset,
    verbose: int = 0,
    description: str = "features",
) -> tuple[np.ndarray, np.ndarray]:
    """Features of every example of ``dataset``, in inference mode.

    Args:
      model_or_encoder: an encoder (images -> features `[B, D]`) or a model
        returning a dict with ``"embedding"`` (`SimCLR`, `Classifier`).
      dataset: batches ``{"image": [B, S, S, 3], "label": [B]}`` (or
        ``(images, labels)``), e.g. `tf_simclr.data.eval_dataset`.
      verbose: 1 shows a progress bar on a terminal; elsewhere (and with 2) a log
        line every 30 s and at the end names ``description`` and the batches done.
      description: what is extracted, for the progress lines.

    Returns:
      features float32 `[N, D]` and labels int64 `[N]`, in dataset order.
    """
    forward = inference_fn(model_or_encoder, "embedding")
    progress = Progress(dataset, verbose, description)
    features, labels = [], []
    for batch in dataset:
        images, batch_labels = images_and_labels(batch)
        features.append(np.asarray(forward(images), np.float32))
        labels.append(np.asarray(batch_labels, np.int64))
        progress.update()
    progress.done()
    if not features:
        raise ValueError("extract_features got an empty dataset.")
    return np.concatenate(features), np.concatenate(labels)


def frozen_features(
    model_or_encoder: keras.Model,
    sources: Mapping[str, Source],
    image_size: int,
    batch_size: int,
    verbose: int = 0,
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """`{name: (features, labels)}`: `extract_features` of each source, read with the
    eval preprocessing (`tf_simclr.data.eval_dataset`: no augmentation).

    Args:
      model_or_encoder: as in `extract_features`.
      sources: e.g. `{"train": ..., "test": ...}` for `tf_simclr.eval.knn.knn_top1`
        (`tf_simclr.builders.knn_sources` builds them from a `Config`).
      image_size: the side S of the square images.
      batch_size: images per batch.
      verbose: as in `extract_features`.

    Returns:
      per name, features float32 `[N, D]` and labels int64 `[N]`, in the source's order.
    """
    return {
        name: extract_features(
            model_or_encoder,
            eval_dataset(source, image_size, batch_size),
            verbose=verbose,
            description=f"features of {source.name} {source.split}",
        )
        for name, source in sources.items()
    }
