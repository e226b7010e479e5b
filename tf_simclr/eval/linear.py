"""Linear evaluation (SimCLR Sec. 4.2, App. B.5) and its cheap variant on precomputed features.

- `linear_eval`: the paper's protocol, a linear classifier on a frozen encoder
  (BatchNorm in inference mode), trained on random crop + flip views, tested on
  centre crops. `linear_classifier` and `data.finetune_augment` are its model and
  its augmentation; `run.py --train_mode=finetune --fine_tune_after_block=4`
  (the command-line linear evaluation, with checkpoints and resume) builds the
  same model (`Classifier(fine_tune_after_block=4)`) with the same augmentation.
- `linear_eval_on_features`: a linear classifier on features extracted once,
  without augmentation: not the paper's protocol, but cheap; the ablation study
  and `scripts/feature_eval.py` report it.
"""

from __future__ import annotations

import math
import time

import keras
import numpy as np
import tensorflow as tf

from tf_simclr.data.augment import finetune_augment
from tf_simclr.data.pipeline import eval_dataset, steps_per_epoch, supervised_dataset
from tf_simclr.data.sources import Source
from tf_simclr.eval.classifier import TOP_K, evaluate_classifier
from tf_simclr.models.classifier import NUM_BLOCK_GROUPS, Classifier
from tf_simclr.models.heads import LinearClassifier
from tf_simclr.optim import WarmupCosineDecay, build_optimizer


def linear_classifier(encoder: keras.Model, num_classes: int, **kwargs) -> Classifier:
    """The linear-evaluation model: `Classifier` with the whole encoder frozen (inference-mode
    BatchNorm, no gradient) and a zero-initialised linear layer, as the reference's
    linear-evaluation command (`--fine_tune_after_block=4 --zero_init_logits_layer`)."""
    return Classifier(
        encoder,
        num_classes,
        fine_tune_after_block=NUM_BLOCK_GROUPS,
        zero_init_logits_layer=True,
        **kwargs,
    )


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
        model = linear_classifier(encoder, num_classes, name="linear_eval")
        model(tf.zeros([1, image_size, image_size, 3]))
        optimizer = build_optimizer(
            "momentum",
            WarmupCosineDecay(learning_rate, 0, total_steps),
            momentum=momentum,
            weight_decay=weight_decay,
        )
        model.compile(optimizer=optimizer)
        train_data = supervised_dataset(
            train_source, finetune_augment(image_size), batch_size, seed=seed
        )
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
            keras.metrics.SparseTopKCategoricalAccuracy(k=min(TOP_K, num_classes), name="top5"),
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
