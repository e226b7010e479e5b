"""Class-balanced label subsets for semi-supervised fine-tuning (SimCLRv2, Section 3).

SimCLRv2 fine-tunes on 1% and 10% of the ImageNet labels. Two ways to get such
a subset:

- TFDS names and splits go through `tf_simclr.data.make_source` unchanged, so
  TFDS slicing (``--train_split='train[:1%]'``, not class-balanced) and the
  published ImageNet subsets (``--dataset=imagenet2012_subset/1pct`` or
  ``/10pct``, the exact SimCLRv2 file lists) need nothing from this module;
- `subset_source` draws a seeded, class-balanced subset from any labelled
  `Source`, e.g. an image folder or CIFAR-10.

`balanced_subset_indices` is the pure selection rule on a label array.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import tensorflow as tf

from tf_simclr.data.sources import Source

_SCAN_BATCH = 256


def balanced_subset_indices(
    labels: np.ndarray,
    *,
    fraction: float | None = None,
    per_class: int | None = None,
    seed: int = 0,
) -> np.ndarray:
    """Indices of a seeded, class-balanced subset of ``labels``.

    Give exactly one of ``fraction`` and ``per_class``. Each class present in
    ``labels`` keeps a uniformly drawn set of its examples:

    - ``fraction`` f in (0, 1]: ``round(f * n_c)`` examples of a class with n_c
      examples (halves round up), but at least 1;
    - ``per_class`` k >= 1: ``min(k, n_c)`` examples.

    Args:
      labels: int `[N]` class indices, all >= 0.
      fraction: share of every class to keep.
      per_class: examples to keep per class.
      seed: the draw is a function of ``(labels, fraction or per_class, seed)``
        only; the same seed gives the same indices.

    Returns:
      int64 `[M]` sorted indices into ``labels``.

    Raises:
      ValueError: if both or neither of ``fraction``/``per_class`` are given,
        either is out of range, or ``labels`` is empty, not 1-D or has a
        negative (unlabelled) entry.
    """
    if (fraction is None) == (per_class is None):
        raise ValueError(
            f"Give exactly one of `fraction` and `per_class`; got fraction={fraction!r}, "
            f"per_class={per_class!r}."
        )
    if fraction is not None and not 0.0 < fraction <= 1.0:
        raise ValueError(f"`fraction` must be in (0, 1], got {fraction!r}.")
    if per_class is not None and (int(per_class) != per_class or per_class < 1):
        raise ValueError(f"`per_class` must be an integer >= 1, got {per_class!r}.")
    labels = np.asarray(labels)
    if labels.ndim != 1 or labels.size == 0:
        raise ValueError(f"`labels` must be a non-empty 1-D array, got shape {labels.shape}.")
    if labels.min() < 0:
        raise ValueError("`labels` has negative (unlabelled) entries; a subset needs labels.")

    # Group the indices by class once (a stable sort keeps each class's indices
    # in ascending order), instead of scanning all labels once per class.
    order = np.argsort(labels, kind="stable")
    _, starts, counts = np.unique(labels[order], return_index=True, return_counts=True)
    rng = np.random.default_rng(seed)
    chosen = []
    for start, count in zip(starts, counts, strict=True):
        if fraction is not None:
            keep = max(1, math.floor(fraction * count + 0.5))
        else:
            keep = int(per_class)
        keep = min(keep, int(count))
        members = order[start : start + count]
        chosen.append(rng.choice(members, size=keep, replace=False))
    return np.sort(np.concatenate(chosen)).astype(np.int64)


def _example_key(example: dict[str, tf.Tensor]) -> tf.Tensor:
    """A 64-bit fingerprint of one example's image bytes, shape and label (int64 [])."""
    content = tf.strings.join(
        [tf.io.serialize_tensor(example["image"]), tf.strings.as_string(example["label"])],
        separator="|",
    )
    return tf.bitcast(tf.fingerprint(tf.reshape(content, [1]))[0], tf.int64)


def _keys_and_labels(dataset: tf.data.Dataset) -> tuple[np.ndarray, np.ndarray]:
    pairs = dataset.map(
        lambda ex: (_example_key(ex), ex["label"]), num_parallel_calls=tf.data.AUTOTUNE
    ).batch(_SCAN_BATCH)
    keys, labels = [np.zeros([0], np.int64)], [np.zeros([0], np.int64)]
    for k, y in pairs.as_numpy_iterator():
        keys.append(k)
        labels.append(y.astype(np.int64))
    return np.concatenate(keys), np.concatenate(labels)


def _membership(source: Source, fraction, per_class, seed):
    """`(is_chosen(example) -> bool tensor, examples chosen, rule text)` of the subset that
    `balanced_subset_indices` picks from one pass over `source` (see `subset_source`)."""
    if source.num_classes == 0:
        raise ValueError(f"{source.name} {source.split!r} has no labels; a subset needs labels.")
    keys, labels = _keys_and_labels(source.dataset)
    indices = balanced_subset_indices(labels, fraction=fraction, per_class=per_class, seed=seed)
    chosen = np.unique(keys[indices])  # sorted, for the membership test below
    num_examples = int(np.isin(keys, chosen).sum())
    chosen_keys = tf.constant(chosen, tf.int64)
    last = len(chosen) - 1

    def is_chosen(example):
        key = _example_key(example)
        position = tf.minimum(tf.searchsorted(chosen_keys, key[None])[0], last)
        return tf.equal(chosen_keys[position], key)

    rule = f"{fraction * 100:g}%" if fraction is not None else f"{per_class}"
    return is_chosen, num_examples, rule


def subset_source(
    source: Source,
    *,
    fraction: float | None = None,
    per_class: int | None = None,
    seed: int = 0,
) -> Source:
    """A new `Source` with a seeded, class-balanced subset of ``source``'s examples.

    The subset is chosen by `balanced_subset_indices` over the examples as
    ``source.dataset`` yields them once. Examples are then recognised by
    content, not position: each one is keyed by a 64-bit fingerprint of its
    decoded image and label, and the new dataset keeps the examples whose key
    was chosen. Position would not do: sources built with ``shuffle_files=True``
    (as training sources are) yield a new order on every iteration. The subset
    therefore keeps the source's own shuffling.

    Cost: building the subset reads (and decodes) the whole split once, and
    every pass over the subset still reads the whole split and drops the rest.
    For a 1% subset of a large split prefer a smaller stored split: TFDS
    slicing (``train[:1%]``) or ``imagenet2012_subset/1pct`` through
    `make_source`.

    Exact duplicates (identical image and label) share a key, so all copies of
    a chosen duplicate are kept; ``num_examples`` counts them, and a class can
    then hold slightly more than its target. Duplicates are rare in practice.

    Args:
      source: a labelled source (``num_classes > 0``). Its dataset must yield
        the same examples (in any order) on every iteration.
      fraction, per_class, seed: see `balanced_subset_indices`.

    Returns:
      A `Source` with the subset's ``num_examples``, the same classes and
      split, and the name suffixed by the rule: ``"cifar10[10%/class]"`` or
      ``"cifar10[25/class]"``.

    Raises:
      ValueError: as `balanced_subset_indices`, or if ``source`` is unlabelled.
    """
    is_chosen, num_examples, rule = _membership(source, fraction, per_class, seed)
    return dataclasses.replace(
        source,
        dataset=source.dataset.filter(is_chosen),
        num_examples=num_examples,
        name=f"{source.name}[{rule}/class]",
    )


def balanced_prefix(source: Source, per_class: int) -> Source:
    """A new `Source` with the first ``per_class`` examples of each class, in
    ``source``'s order, and reading stops once every class has them.

    Unlike `subset_source` this reads only as far as needed (on a shuffled
    source, about ``per_class * num_classes`` examples and a little more), so
    it is cheap on a large split: the kNN evaluation caps its training
    features with it. Build ``source`` with ``shuffle_files=True`` and a seed
    for a seeded choice that is not the first files of each class.

    Args:
      source: a labelled source (``num_classes > 0``); unlabelled examples
        (label -1) are dropped.
      per_class: examples to keep per class, >= 1.

    Returns:
      A `Source` whose ``num_examples`` is an upper bound,
      ``min(source.num_examples, per_class * num_classes)`` (a class may have
      fewer), named like ``"cifar10[first 500/class]"``.
    """
    if int(per_class) != per_class or per_class < 1:
        raise ValueError(f"`per_class` must be an integer >= 1, got {per_class!r}.")
    if source.num_classes == 0:
        raise ValueError(f"{source.name} {source.split!r} has no labels; a subset needs labels.")
    num_classes = source.num_classes

    def count(counts, example):
        label = example["label"]
        full_before = tf.reduce_all(counts >= per_class)
        keep = tf.logical_and(label >= 0, tf.gather(counts, tf.maximum(label, 0)) < per_class)
        one_hot = tf.one_hot(tf.maximum(label, 0), num_classes, dtype=tf.int64)
        counts = counts + one_hot * tf.cast(keep, tf.int64)
        return counts, (example, keep, full_before)

    dataset = (
        source.dataset.scan(tf.zeros([num_classes], tf.int64), count)
        .take_while(lambda example, keep, full_before: tf.logical_not(full_before))
        .filter(lambda example, keep, full_before: keep)
        .map(lambda example, keep, full_before: example)
    )
    return dataclasses.replace(
        source,
        dataset=dataset,
        num_examples=min(source.num_examples, int(per_class) * num_classes),
        name=f"{source.name}[first {int(per_class)}/class]",
    )


def unlabel_outside_subset(
    source: Source,
    *,
    fraction: float | None = None,
    per_class: int | None = None,
    seed: int = 0,
) -> Source:
    """All of ``source``'s examples, with the label kept only on the `subset_source` subset.

    The examples outside the seeded, class-balanced subset get label -1 (unlabelled), so
    that one pass trains on every image while a supervised term sees only the subset:
    distillation with labels (SimCLRv2 Sec. 2.3). The same arguments choose the same
    examples as `subset_source`.
    """
    is_chosen, _, rule = _membership(source, fraction, per_class, seed)

    def mark(example):
        keep = is_chosen(example)
        label = tf.where(keep, example["label"], tf.constant(-1, example["label"].dtype))
        return {**example, "label": label}

    return dataclasses.replace(
        source,
        dataset=source.dataset.map(mark, num_parallel_calls=tf.data.AUTOTUNE),
        name=f"{source.name}[labels {rule}/class]",
    )
