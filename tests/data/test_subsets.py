"""Tests for tf_simclr.data.subsets: exact per-class counts, seeding, shuffled sources."""

import collections

import numpy as np
import pytest
import tensorflow as tf

from tf_simclr.data import sources, subsets
from tf_simclr.data.sources import Source

# 10, 20 and 35 examples of classes 0, 1, 2, interleaved.
LABELS = np.array([0] * 10 + [1] * 20 + [2] * 35)[np.random.default_rng(0).permutation(65)]


def per_class(labels):
    return dict(sorted(collections.Counter(np.asarray(labels).tolist()).items()))


@pytest.mark.parametrize(
    ("kwargs", "counts"),
    [
        ({"fraction": 0.1}, {0: 1, 1: 2, 2: 4}),  # 3.5 rounds up
        ({"fraction": 0.01}, {0: 1, 1: 1, 2: 1}),  # at least one per class
        ({"fraction": 1.0}, {0: 10, 1: 20, 2: 35}),
        ({"per_class": 5}, {0: 5, 1: 5, 2: 5}),
        ({"per_class": 15}, {0: 10, 1: 15, 2: 15}),  # capped at the class size
    ],
)
def test_balanced_subset_counts(kwargs, counts):
    indices = subsets.balanced_subset_indices(LABELS, seed=0, **kwargs)
    assert indices.dtype == np.int64
    assert np.all(np.diff(indices) > 0)  # sorted, no repeats
    assert per_class(LABELS[indices]) == counts


def test_balanced_subset_is_seeded():
    first = subsets.balanced_subset_indices(LABELS, per_class=5, seed=3)
    np.testing.assert_array_equal(
        first, subsets.balanced_subset_indices(LABELS, per_class=5, seed=3)
    )
    other = subsets.balanced_subset_indices(LABELS, per_class=5, seed=4)
    assert not np.array_equal(first, other)


@pytest.mark.parametrize(
    ("labels", "kwargs", "message"),
    [
        (LABELS, {}, "exactly one"),
        (LABELS, {"fraction": 0.1, "per_class": 2}, "exactly one"),
        (LABELS, {"fraction": 0.0}, r"\(0, 1\]"),
        (LABELS, {"fraction": 1.5}, r"\(0, 1\]"),
        (LABELS, {"per_class": 0}, ">= 1"),
        (LABELS, {"per_class": 2.5}, ">= 1"),
        (np.array([0, 1, -1]), {"per_class": 1}, "unlabelled"),
        (np.array([], np.int64), {"per_class": 1}, "non-empty"),
    ],
)
def test_balanced_subset_rejects_bad_arguments(labels, kwargs, message):
    with pytest.raises(ValueError, match=message):
        subsets.balanced_subset_indices(labels, **kwargs)


def memory_source(num=30, num_classes=3, labeled=True):
    """``num`` distinct random 4x4 images; label i % num_classes (or -1)."""
    images = np.random.default_rng(0).integers(0, 256, (num, 4, 4, 3), dtype=np.uint8)
    labels = np.arange(num) % num_classes if labeled else np.full(num, -1)
    return Source(
        dataset=tf.data.Dataset.from_tensor_slices({"image": images, "label": labels}),
        num_examples=num,
        num_classes=num_classes if labeled else 0,
        class_names=tuple(str(c) for c in range(num_classes)) if labeled else (),
        name="synthetic",
        split="train",
    )


def examples(source):
    """The source's examples as a sorted list of (label, image bytes)."""
    return sorted(
        (int(ex["label"]), ex["image"].tobytes()) for ex in source.dataset.as_numpy_iterator()
    )


def test_subset_source_on_an_in_memory_source():
    source = memory_source()
    subset = subsets.subset_source(source, per_class=4, seed=1)
    assert subset.num_examples == 12 and subset.name == "synthetic[4/class]"
    assert (subset.num_classes, subset.class_names, subset.split) == (
        source.num_classes,
        source.class_names,
        source.split,
    )
    chosen = examples(subset)
    assert per_class([label for label, _ in chosen]) == {0: 4, 1: 4, 2: 4}
    assert set(chosen) <= set(examples(source))
    # Which examples: exactly those of balanced_subset_indices over the source's labels.
    labels = np.arange(30) % 3
    want = subsets.balanced_subset_indices(labels, per_class=4, seed=1)
    all_examples = [
        (int(ex["label"]), ex["image"].tobytes()) for ex in source.dataset.as_numpy_iterator()
    ]
    assert chosen == sorted(all_examples[i] for i in want)

    assert examples(subsets.subset_source(source, per_class=4, seed=1)) == chosen
    assert examples(subsets.subset_source(source, per_class=4, seed=2)) != chosen
    assert subsets.subset_source(source, fraction=0.1).name == "synthetic[10%/class]"


def test_subset_of_a_shuffled_image_folder_is_the_same_every_epoch(image_folder):
    """Whatever order a source yields its files in, the subset must not change with it."""
    source = sources.image_folder_source(str(image_folder), "train", shuffle_files=True, seed=0)
    subset = subsets.subset_source(source, fraction=0.5, seed=0)
    assert subset.num_examples == 8 and subset.name == "image_folder[50%/class]"
    first, second = (
        list(subset.dataset.as_numpy_iterator()),
        list(subset.dataset.as_numpy_iterator()),
    )
    assert sorted((int(e["label"]), e["image"].tobytes()) for e in first) == sorted(
        (int(e["label"]), e["image"].tobytes()) for e in second
    )
    assert per_class([e["label"] for e in first]) == {0: 4, 1: 4}
    whole = examples(source)
    assert all((int(e["label"]), e["image"].tobytes()) in whole for e in first)


def test_subset_source_needs_labels():
    with pytest.raises(ValueError, match="no labels"):
        subsets.subset_source(memory_source(labeled=False), per_class=1)


def test_balanced_prefix_keeps_the_first_per_class_and_stops_reading():
    """The kNN cap (--knn_train_examples): the first 2 of each of 3 classes in the source's
    order; reading stops when every class has them (the rest of the split is never read)."""
    labels = [0, 0, 1, 0, 2, 1, -1, 1, 2, 0]  # every class full after index 8
    images = tf.reshape(tf.cast(tf.range(10), tf.uint8), [10, 1, 1, 1])
    head = tf.data.Dataset.from_tensor_slices(
        {"image": images, "label": tf.constant(labels, tf.int64)}
    )

    def never_read(_):
        raise AssertionError("read past the examples it needed")

    # Reading one more element than needed would run this and fail.
    tail = tf.data.Dataset.range(1).map(
        lambda i: {
            "image": tf.numpy_function(never_read, [i], tf.uint8, stateful=True)[None, None, None],
            "label": tf.constant(0, tf.int64),
        }
    )
    source = Source(head.concatenate(tail), 11, 3, ("a", "b", "c"), "toy", "train")
    capped = subsets.balanced_prefix(source, 2)
    examples = list(capped.dataset.as_numpy_iterator())
    assert [int(e["image"][0, 0, 0]) for e in examples] == [0, 1, 2, 4, 5, 8]
    assert [int(e["label"]) for e in examples] == [0, 0, 1, 2, 1, 2]
    assert capped.num_examples == 6 and capped.name == "toy[first 2/class]"
    with pytest.raises(ValueError, match="no labels"):
        subsets.balanced_prefix(Source(head, 10, 0, (), "toy", "train"), 2)
