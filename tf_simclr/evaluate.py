"""Evaluation: classifier accuracy, features, weighted kNN and linear evaluation.

- `evaluate_classifier`: top-1/top-5 and loss of any model with logits (a
  fine-tuned `Classifier`, or `SimCLR`'s online probe) over a whole split;
- `extract_features` + `knn_accuracy`: the weighted kNN monitor of Wu et al.
  2018 on frozen encoder features (no training, a cheap progress signal);
- `linear_eval`: the paper's linear evaluation protocol (SimCLR Section 4.2,
  Appendix B.5): a linear classifier trained on a frozen encoder with random
  crop and flip augmentation, then tested on centre crops;
- `linear_eval_on_features`: the cheaper variant, a linear classifier trained
  on precomputed features without augmentation.

Every function takes explicit arguments; datasets are those of
`tf_simclr.data` (`eval_dataset` batches `{"image", "label"}`).
"""

from __future__ import annotations

import math
import time

import keras
import numpy as np
import tensorflow as tf

from tf_simclr.data.augment import AugmentConfig
from tf_simclr.data.pipeline import eval_dataset, steps_per_epoch, supervised_dataset
from tf_simclr.data.sources import Source
from tf_simclr.models.classifier import NUM_BLOCK_GROUPS, Classifier
from tf_simclr.models.heads import LinearClassifier
from tf_simclr.optim import WarmupCosineDecay, build_optimizer

_TOP_K = 5


def _images_and_labels(batch) -> tuple[tf.Tensor, tf.Tensor]:
    if isinstance(batch, dict):
        return batch["image"], batch["label"]
    images, labels = batch
    return images, labels


def _progbar(dataset: tf.data.Dataset, verbose: int) -> keras.utils.Progbar | None:
    if verbose != 1:
        return None
    batches = int(dataset.cardinality())
    return keras.utils.Progbar(batches if batches >= 0 else None)


def _inference_fn(model, key: str):
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
    forward = _inference_fn(model_or_encoder, "embedding")
    progbar = _progbar(dataset, verbose)
    features, labels = [], []
    for step, batch in enumerate(dataset, start=1):
        images, batch_labels = _images_and_labels(batch)
        features.append(np.asarray(forward(images), np.float32))
        labels.append(np.asarray(batch_labels, np.int64))
        if progbar is not None:
            progbar.update(step)
    if not features:
        raise ValueError("extract_features got an empty dataset.")
    return np.concatenate(features), np.concatenate(labels)


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
    forward = _inference_fn(model, "logits")
    progbar = _progbar(dataset, verbose)
    top1 = top5 = loss = 0.0
    count = 0
    for step, batch in enumerate(dataset, start=1):
        images, labels = _images_and_labels(batch)
        labels = tf.cast(labels, tf.int64)
        logits = tf.cast(forward(images), tf.float32)
        k = min(_TOP_K, int(logits.shape[-1]))
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
    if count == 0:
        raise ValueError("evaluate_classifier got an empty dataset.")
    return {"top1": top1 / count, "top5": top5 / count, "loss": loss / count, "num_examples": count}


# --- Weighted kNN ------------------------------------------------------------------------


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
    if k < 1:
        raise ValueError(f"`k` must be >= 1, got {k!r}.")
    if temperature <= 0:
        raise ValueError(f"`temperature` must be > 0, got {temperature!r}.")
    if batch_size < 1:
        raise ValueError(f"`batch_size` must be >= 1, got {batch_size!r}.")
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


# --- Linear evaluation -------------------------------------------------------------------


def _trainable_flags(layer) -> list[tuple[keras.layers.Layer, bool]]:
    """`(layer, layer.trainable)` for `layer` and its nested `.layers`, parents first."""
    flags = [(layer, layer.trainable)]
    for sublayer in getattr(layer, "layers", []):
        flags += _trainable_flags(sublayer)
    return flags


def linear_eval(
    encoder: keras.Model,
    train_source: Source,
    test_source: Source,
    *,
    image_size: int,
    num_classes: int,
    epochs: int,
    batch_size: int,
    learning_rate: float,
    weight_decay: float,
    momentum: float = 0.9,
    seed: int = 0,
    verbose: int = 0,
) -> dict:
    """The linear evaluation protocol (SimCLR Section 4.2, Appendix B.5).

    A linear classifier is trained on the frozen ``encoder`` (BatchNorm in
    inference mode: `Classifier(..., fine_tune_after_block=4)`), on random
    crop + flip views of ``train_source`` (`supervised_dataset`), with
    Nesterov momentum SGD and a cosine decay from ``learning_rate`` to 0
    without warmup; then top-1/top-5 are measured on centre crops of
    ``test_source``. The classifier starts at zero, as the reference's linear
    evaluation command (`--zero_init_logits_layer=True`).

    The encoder's ``trainable`` flags are restored on return, so the same
    encoder can go on pretraining. The run uses the current (default)
    distribution strategy; augmentation draws from TensorFlow's global seed.

    Args:
      encoder: images `[B, S, S, 3]` in [0, 1] -> features `[B, D]`.
      train_source, test_source: labelled sources.
      image_size: S for training views and test crops.
      num_classes: classes C.
      epochs: training epochs (full batches, remainder dropped).
      batch_size: batch size for training and testing.
      learning_rate: peak rate, already scaled for the batch size (the
        reference: 0.1 * batch_size / 256, `scaled_learning_rate`).
      weight_decay: coupled L2 decay of the classifier kernel (the reference
        uses 0 for linear evaluation).
      momentum: Nesterov momentum.
      seed: shuffle seed.
      verbose: Keras verbosity of `fit`.

    Returns:
      ``{"train_loss", "train_top1", "train_top5"`` (running means of the last
      epoch, on augmented views), ``"test_loss", "test_top1", "test_top5",
      "test_examples", "steps", "seconds"}``.
    """
    if epochs < 1:
        raise ValueError(f"`epochs` must be >= 1, got {epochs!r}.")
    began = time.time()
    steps = steps_per_epoch(train_source.num_examples, batch_size)
    total_steps = epochs * steps
    flags = _trainable_flags(encoder)
    try:
        model = Classifier(
            encoder,
            num_classes,
            fine_tune_after_block=NUM_BLOCK_GROUPS,
            zero_init_logits_layer=True,
            name="linear_eval",
        )
        model(tf.zeros([1, image_size, image_size, 3]))
        optimizer = build_optimizer(
            "momentum",
            WarmupCosineDecay(learning_rate, 0, total_steps),
            momentum=momentum,
            weight_decay=weight_decay,
        )
        model.compile(optimizer=optimizer)
        augment = AugmentConfig(
            image_size=image_size, color_jitter=False, grayscale=False, blur=False
        )
        train_data = supervised_dataset(train_source, augment, batch_size, seed=seed)
        history = model.fit(train_data, epochs=epochs, steps_per_epoch=steps, verbose=verbose)
        test = evaluate_classifier(model, eval_dataset(test_source, image_size, batch_size))
    finally:
        for layer, trainable in flags:
            layer.trainable = trainable
    last = {name: float(values[-1]) for name, values in history.history.items()}
    return {
        "train_loss": last["loss"],
        "train_top1": last["top1"],
        "train_top5": last["top5"],
        "test_loss": test["loss"],
        "test_top1": test["top1"],
        "test_top5": test["top5"],
        "test_examples": test["num_examples"],
        "steps": total_steps,
        "seconds": time.time() - began,
    }


def linear_eval_on_features(
    train_features: np.ndarray,
    train_labels: np.ndarray,
    test_features: np.ndarray,
    test_labels: np.ndarray,
    num_classes: int,
    *,
    epochs: int,
    batch_size: int = 256,
    learning_rate: float = 0.1,
    weight_decay: float = 0.0,
    momentum: float = 0.9,
    seed: int = 0,
    verbose: int = 0,
) -> dict:
    """A linear classifier trained on precomputed, frozen features: the cheap variant.

    The encoder runs once (`extract_features` on centre crops) instead of on
    every augmented view of every epoch, so this is much faster than
    `linear_eval`, but there is no augmentation: it is *not* the paper's
    protocol, and its accuracy is usually a little different (often lower on
    small datasets, where augmentation regularises). Use `linear_eval` for
    numbers comparable with the paper. The optimiser and schedule are those of
    `linear_eval`; batches keep their remainder (there is no BatchNorm here).

    Args:
      train_features, test_features: float `[N, D]`, `[M, D]`.
      train_labels, test_labels: int `[N]`, `[M]` in `[0, num_classes)`.
      num_classes: classes C.
      epochs: passes over the training features.
      batch_size, learning_rate, weight_decay, momentum, seed, verbose: as
        `linear_eval`.

    Returns:
      ``{"train_loss", "train_top1", "train_top5", "test_loss", "test_top1",
      "test_top5", "test_examples", "steps", "seconds"}``; the train metrics are
      running means over the last epoch.
    """
    if epochs < 1:
        raise ValueError(f"`epochs` must be >= 1, got {epochs!r}.")
    began = time.time()
    train_features = np.asarray(train_features, np.float32)
    test_features = np.asarray(test_features, np.float32)
    num_train = train_features.shape[0]
    steps = math.ceil(num_train / batch_size)

    inputs = keras.Input((train_features.shape[1],), name="features")
    logits = LinearClassifier(num_classes, zero_init=True, name="head_supervised")(inputs)
    model = keras.Model(inputs, logits, name="linear_eval_on_features")
    optimizer = build_optimizer(
        "momentum",
        WarmupCosineDecay(learning_rate, 0, epochs * steps),
        momentum=momentum,
        weight_decay=weight_decay,
    )
    model.compile(
        optimizer=optimizer,
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=[
            keras.metrics.SparseCategoricalAccuracy(name="top1"),
            keras.metrics.SparseTopKCategoricalAccuracy(k=min(_TOP_K, num_classes), name="top5"),
        ],
    )
    train_data = (
        tf.data.Dataset.from_tensor_slices((train_features, np.asarray(train_labels, np.int64)))
        .shuffle(num_train, seed=seed, reshuffle_each_iteration=True)
        .batch(batch_size)
    )
    history = model.fit(train_data, epochs=epochs, verbose=verbose)
    test_data = tf.data.Dataset.from_tensor_slices(
        (test_features, np.asarray(test_labels, np.int64))
    ).batch(batch_size)
    # Keras weights each batch's loss by its size, so these are exact means.
    test = model.evaluate(test_data, verbose=0, return_dict=True)
    last = {name: float(values[-1]) for name, values in history.history.items()}
    return {
        "train_loss": last["loss"],
        "train_top1": last["top1"],
        "train_top5": last["top5"],
        "test_loss": float(test["loss"]),
        "test_top1": float(test["top1"]),
        "test_top5": float(test["top5"]),
        "test_examples": int(test_features.shape[0]),
        "steps": epochs * steps,
        "seconds": time.time() - began,
    }
