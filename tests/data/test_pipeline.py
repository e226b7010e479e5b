"""Tests for tf_simclr.data.pipeline on a tiny in-memory source."""

import numpy as np
import pytest
import tensorflow as tf

from tf_simclr.data import pipeline
from tf_simclr.data.augment import AugmentConfig
from tf_simclr.data.augment_batch import two_views_batch
from tf_simclr.data.sources import DataError, Source

SIZE = 8
NUM = 10


def _source(num=NUM, labeled=True) -> Source:
    """``num`` random 16x16 RGB images; label i for image i (or -1)."""
    images = np.random.default_rng(0).integers(0, 256, (num, 16, 16, 3), dtype=np.uint8)
    labels = np.arange(num, dtype=np.int64) if labeled else np.full(num, -1, np.int64)
    dataset = tf.data.Dataset.from_tensor_slices({"image": images, "label": labels})
    return Source(
        dataset=dataset,
        num_examples=num,
        num_classes=num if labeled else 0,
        class_names=tuple(str(i) for i in range(num)) if labeled else (),
        name="synthetic",
        split="train",
    )


def _cfg():
    return AugmentConfig(image_size=SIZE)


def _labels(ds, num_batches):
    return [b["label"].numpy().tolist() for b in ds.take(num_batches)]


def test_pretrain_batches_shapes_dtypes_range():
    ds = pipeline.pretrain_dataset(_source(), _cfg(), batch_size=4, seed=0)
    spec = ds.element_spec
    assert set(spec) == {"view1", "view2", "label"}
    assert spec["view1"].shape == (4, SIZE, SIZE, 3) and spec["view1"].dtype == tf.float32
    assert spec["view2"].shape == (4, SIZE, SIZE, 3) and spec["view2"].dtype == tf.float32
    assert spec["label"].shape == (4,) and spec["label"].dtype == tf.int64
    for batch in ds.take(3):  # 12 images > 10 examples: repeat is on by default
        for key in ("view1", "view2"):
            views = batch[key].numpy()
            assert views.shape == (4, SIZE, SIZE, 3)
            assert views.min() >= 0.0 and views.max() <= 1.0
        # Two independent augmentations of the same image are not identical.
        assert np.abs(batch["view1"].numpy() - batch["view2"].numpy()).max() > 1e-3


def test_pretrain_one_epoch_passes_every_label_once():
    ds = pipeline.pretrain_dataset(
        _source(), _cfg(), batch_size=4, seed=0, repeat=False, drop_remainder=False
    )
    batches = _labels(ds, 10)
    assert [len(b) for b in batches] == [4, 4, 2]
    labels = sum(batches, [])
    assert sorted(labels) == list(range(NUM))
    assert labels != list(range(NUM))  # shuffled (fixed seed, so not flaky)


def test_pretrain_drop_remainder():
    ds = pipeline.pretrain_dataset(_source(), _cfg(), batch_size=4, seed=0, repeat=False)
    assert [len(b) for b in _labels(ds, 10)] == [4, 4]


def test_pretrain_unlabeled_passes_minus_one():
    ds = pipeline.pretrain_dataset(_source(labeled=False), _cfg(), batch_size=5, seed=0)
    assert _labels(ds, 2) == [[-1] * 5, [-1] * 5]


def test_pretrain_seeded_shuffle_is_reproducible():
    def first_batches(seed):
        ds = pipeline.pretrain_dataset(_source(), _cfg(), batch_size=5, seed=seed)
        return _labels(ds, 6)  # three epochs

    run = first_batches(1)
    assert run == first_batches(1)
    assert run != first_batches(2)
    epochs = [sum(run[i : i + 2], []) for i in (0, 2, 4)]
    assert all(sorted(e) == list(range(NUM)) for e in epochs)
    assert epochs[0] != epochs[1] or epochs[1] != epochs[2]  # reshuffled each epoch


def test_an_epoch_is_whole_batches_in_an_order_fixed_by_seed_and_epoch():
    # 10 examples, batch 4: an epoch is 2 batches of 8 distinct examples. Its order is a
    # function of (seed, epoch) alone: rebuilt identically, different for another epoch.
    def epoch(e, seed=0):
        ds = pipeline.pretrain_dataset(_source(), _cfg(), batch_size=4, seed=seed, epoch=e)
        return _labels(ds, 5)

    epochs = [epoch(e) for e in range(4)]
    for batches in epochs:
        assert [len(b) for b in batches] == [4, 4]
        assert len(set(sum(batches, []))) == 8
    assert epoch(2) == epochs[2]
    assert len({str(e) for e in epochs}) == 4
    assert epoch(2, seed=1) != epochs[2]


@pytest.mark.parametrize("skip_steps", [1, 2])
def test_skip_steps_continues_the_epoch(skip_steps):
    # 10 examples, batch 3: 3 batches per epoch.
    def batches(skip=0):
        ds = pipeline.pretrain_dataset(
            _source(), _cfg(), batch_size=3, seed=4, epoch=5, skip_steps=skip
        )
        return _labels(ds, 5)

    assert batches(skip_steps) == batches()[skip_steps:]


def test_per_worker_shards_make_up_the_single_pipeline_global_batch():
    # 2 workers x 2 replicas, global batch 8: each worker builds per-replica batches of
    # 2; its two replicas take consecutive batches. Per step the 4 per-replica batches
    # hold exactly the examples of the single pipeline's global batch.
    num, batch, workers, per_worker = 20, 8, 2, 2

    def labels(epoch, context=None, skip=0):
        ds = pipeline.pretrain_dataset(
            _source(num),
            _cfg(),
            batch,
            seed=3,
            epoch=epoch,
            input_context=context,
            skip_steps=skip,
        )
        return _labels(ds, 10)

    def context(worker):
        return tf.distribute.InputContext(workers, worker, workers * per_worker)

    for epoch in (0, 1):
        single = labels(epoch)
        shards = [labels(epoch, context(w)) for w in range(workers)]
        assert [len(s) for s in shards] == [len(single) * per_worker] * workers
        for step, want in enumerate(single):
            got = [shards[w][step * per_worker + r] for w in range(workers) for r in range(2)]
            assert [len(g) for g in got] == [2] * 4
            assert sorted(sum(got, [])) == sorted(want)
    # Resuming a shard after step 1 continues it.
    assert labels(1, context(1), skip=1) == shards[1][per_worker:]


def test_pretrain_cache_keeps_views_fresh():
    ds = pipeline.pretrain_dataset(
        _source(), _cfg(), batch_size=NUM, seed=0, cache=True, repeat=False
    )

    def views_by_label():
        (batch,) = list(ds)
        order = np.argsort(batch["label"].numpy())
        return batch["view1"].numpy()[order]

    first, second = views_by_label(), views_by_label()
    assert first.shape == (NUM, SIZE, SIZE, 3)
    assert np.abs(first - second).max() > 1e-3  # cached images, new augmentations


@pytest.mark.parametrize("seed", [0, None])
@pytest.mark.parametrize(
    "make, impl",
    [
        (pipeline.pretrain_dataset, "per_image"),
        (pipeline.pretrain_dataset, "batched"),
        (pipeline.pretrain_dataset, "device"),
        (pipeline.supervised_dataset, "per_image"),
    ],
)
def test_training_pipelines_run_without_the_autotuning_thread(make, impl, seed):
    # Deleting an iterator joins tf.data's autotuning thread, which TF 2.21 sometimes
    # leaves in its timed wait (up to 60 s): 3 of 10 runs stopped mid-epoch waited 8-21 s
    # idle at the end of `fit` (benchmarks/stall.py). Training pipelines turn it off.
    ds = make(_source(), _cfg(), batch_size=4, seed=seed, augment_impl=impl)
    assert ds.options().autotune.enabled is False
    if seed is None:
        assert ds.options().deterministic is False  # still set alongside


def test_pretrain_batch_larger_than_split():
    with pytest.raises(DataError) as info:
        pipeline.pretrain_dataset(_source(), _cfg(), batch_size=NUM + 1)
    assert info.value.argument == "batch_size"
    assert str(info.value).startswith(f"batch_size={NUM + 1}: ")  # Python terms, no flag
    assert str(NUM) in str(info.value)
    # Without drop_remainder a single partial batch is allowed.
    ds = pipeline.pretrain_dataset(
        _source(), _cfg(), batch_size=NUM + 1, repeat=False, drop_remainder=False
    )
    assert [len(b) for b in _labels(ds, 5)] == [NUM]


def test_eval_dataset_keeps_order_and_remainder():
    ds = pipeline.eval_dataset(_source(), SIZE, batch_size=4)
    spec = ds.element_spec
    assert set(spec) == {"image", "label"}
    assert spec["image"].shape.as_list() == [None, SIZE, SIZE, 3]
    assert spec["image"].dtype == tf.float32 and spec["label"].dtype == tf.int64
    batches = list(ds)
    assert [b["label"].numpy().tolist() for b in batches] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    images = np.concatenate([b["image"].numpy() for b in batches])
    assert images.shape == (NUM, SIZE, SIZE, 3)
    assert images.min() >= 0.0 and images.max() <= 1.0
    again = np.concatenate([b["image"].numpy() for b in pipeline.eval_dataset(_source(), SIZE, 4)])
    np.testing.assert_array_equal(images, again)  # deterministic preprocessing


def test_eval_dataset_cache():
    ds = pipeline.eval_dataset(_source(), SIZE, batch_size=3, cache=True)
    first = [b["label"].numpy().tolist() for b in ds]
    assert (
        first == [b["label"].numpy().tolist() for b in ds] == [[0, 1, 2], [3, 4, 5], [6, 7, 8], [9]]
    )


def test_steps_per_epoch():
    assert pipeline.steps_per_epoch(10, 4) == 2
    assert pipeline.steps_per_epoch(8, 4) == 2
    with pytest.raises(DataError) as info:
        pipeline.steps_per_epoch(3, 4)
    assert info.value.argument == "batch_size" and info.value.value == 4


# --- supervised_dataset (fine-tuning / linear evaluation) --------------------------


def _crop_flip_cfg():
    return AugmentConfig(image_size=SIZE, color_jitter=False, grayscale=False, blur=False)


def test_supervised_batches_shapes_dtypes_range():
    ds = pipeline.supervised_dataset(_source(), _crop_flip_cfg(), batch_size=4, seed=0)
    spec = ds.element_spec
    assert set(spec) == {"image", "label"}
    assert spec["image"].shape == (4, SIZE, SIZE, 3) and spec["image"].dtype == tf.float32
    assert spec["label"].shape == (4,) and spec["label"].dtype == tf.int64
    for batch in ds.take(3):  # 12 images > 10 examples: repeat is on by default
        images = batch["image"].numpy()
        assert images.min() >= 0.0 and images.max() <= 1.0


def test_supervised_one_epoch_passes_every_label_once_with_its_image():
    # Without any augmentation the view is the source image itself (16 px, no resize),
    # so each image can be matched with its label.
    cfg = AugmentConfig(
        image_size=16, crop=False, flip=False, color_jitter=False, grayscale=False, blur=False
    )
    source_images = np.stack([ex["image"] for ex in _source().dataset.as_numpy_iterator()])
    ds = pipeline.supervised_dataset(
        _source(), cfg, batch_size=4, seed=0, repeat=False, drop_remainder=False
    )
    batches = list(ds)
    assert [len(b["label"]) for b in batches] == [4, 4, 2]
    labels = np.concatenate([b["label"].numpy() for b in batches])
    assert sorted(labels.tolist()) == list(range(NUM)) and labels.tolist() != list(range(NUM))
    images = np.concatenate([b["image"].numpy() for b in batches])
    np.testing.assert_allclose(images, source_images[labels] / 255.0, atol=1e-6)


def test_supervised_views_are_fresh_each_epoch():
    ds = pipeline.supervised_dataset(
        _source(), _crop_flip_cfg(), batch_size=NUM, seed=0, cache=True, repeat=False
    )

    def images_by_label():
        (batch,) = list(ds)
        return batch["image"].numpy()[np.argsort(batch["label"].numpy())]

    assert np.abs(images_by_label() - images_by_label()).max() > 1e-3


def test_supervised_batch_larger_than_split():
    with pytest.raises(DataError) as info:
        pipeline.supervised_dataset(_source(), _crop_flip_cfg(), batch_size=NUM + 1)
    assert info.value.argument == "batch_size"


# --- augment_impl: batched and device -------------------------------------------------


def _mixed_size_source() -> Source:
    """Six RGB images of three sizes, as a decoder yields them (unknown static shape)."""
    shapes = [(16, 20), (24, 12), (16, 20), (30, 30), (24, 12), (16, 20)]
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (*s, 3), dtype=np.uint8) for s in shapes]
    dataset = tf.data.Dataset.from_generator(
        lambda: ({"image": im, "label": np.int64(i)} for i, im in enumerate(images)),
        output_signature={
            "image": tf.TensorSpec([None, None, 3], tf.uint8),
            "label": tf.TensorSpec([], tf.int64),
        },
    )
    return Source(dataset, len(images), len(images), (), "mixed", "train")


def test_augment_impls_match_the_config_flag():
    from tf_simclr.config import AUGMENT_IMPLS

    assert pipeline.AUGMENT_IMPLS == AUGMENT_IMPLS


@pytest.mark.parametrize("source", [_source, _mixed_size_source])
def test_pretrain_batched_views(source):
    ds = pipeline.pretrain_dataset(source(), _cfg(), batch_size=3, seed=0, augment_impl="batched")
    assert set(ds.element_spec) == {"view1", "view2", "label"}
    for batch in ds.take(3):
        for key in ("view1", "view2"):
            views = batch[key].numpy()
            assert views.shape == (3, SIZE, SIZE, 3) and views.dtype == np.float32
            assert views.min() >= 0.0 and views.max() <= 1.0
        assert np.abs(batch["view1"].numpy() - batch["view2"].numpy()).max() > 1e-3


def _images_by_label(source):
    return {int(ex["label"]): ex["image"] for ex in source.dataset.as_numpy_iterator()}


@pytest.mark.parametrize("source", [_source, _mixed_size_source])
def test_pretrain_batched_views_with_everything_off_are_the_resized_images(source):
    off = dict(crop=False, flip=False, color_jitter=False, grayscale=False, blur=False)
    cfg = AugmentConfig(image_size=SIZE, **off)
    ds = pipeline.pretrain_dataset(source(), cfg, batch_size=3, seed=0, augment_impl="batched")
    images = _images_by_label(source())
    for batch in ds.take(3):
        for i, label in enumerate(batch["label"].numpy()):
            # Each image at its own size (a padded batch must not resize the padding).
            expected = tf.image.resize(images[label] / 255.0, [SIZE, SIZE], method="bilinear")
            for key in ("view1", "view2"):
                np.testing.assert_allclose(batch[key][i], expected, atol=1e-5, err_msg=key)


def test_pretrain_batched_views_are_two_views_batch_of_the_batch():
    """The pipeline's views are `two_views_batch` of its batch: same draws under the same
    global seed. The views come from stateful random ops, whose op seeds TensorFlow
    derives from the global seed when the augmentation is traced; the config is unique
    to this test, so its traced function (cached per config) is traced here."""
    cfg = AugmentConfig(image_size=SIZE, color_jitter_strength=0.5, blur_prob=0.7)
    try:
        tf.random.set_seed(3)
        ds = pipeline.pretrain_dataset(
            _source(), cfg, batch_size=NUM, seed=0, repeat=False, augment_impl="batched"
        )
        (batch,) = list(ds)  # one map call: no parallel calls reorder the draws
        images = _images_by_label(_source())
        labels = batch["label"].numpy()
        tf.random.set_seed(3)
        direct = tf.function(lambda b: two_views_batch(b, cfg, one_by_one=True))(
            {"image": np.stack([images[i] for i in labels]), "label": labels}
        )
    finally:
        tf.random.set_seed(None)
    for key in ("view1", "view2", "label"):
        np.testing.assert_array_equal(batch[key], direct[key], err_msg=key)
    assert np.abs(batch["view1"].numpy() - batch["view2"].numpy()).max() > 1e-2


def test_pretrain_batched_one_epoch_and_fresh_cached_views():
    ds = pipeline.pretrain_dataset(
        _source(), _cfg(), batch_size=NUM, seed=0, cache=True, repeat=False, augment_impl="batched"
    )

    def views_by_label():
        (batch,) = list(ds)
        assert sorted(batch["label"].numpy().tolist()) == list(range(NUM))
        return batch["view1"].numpy()[np.argsort(batch["label"].numpy())]

    assert np.abs(views_by_label() - views_by_label()).max() > 1e-3


def test_pretrain_device_yields_decoded_images():
    ds = pipeline.pretrain_dataset(_source(), _cfg(), batch_size=4, seed=0, augment_impl="device")
    spec = ds.element_spec
    assert set(spec) == {"image", "label"}
    assert spec["image"].shape == (4, 16, 16, 3) and spec["image"].dtype == tf.uint8
    source_images = np.stack([ex["image"] for ex in _source().dataset.as_numpy_iterator()])
    batch = next(iter(ds))
    np.testing.assert_array_equal(batch["image"], source_images[batch["label"].numpy()])


def test_pretrain_device_takes_the_first_image_size_and_rejects_others():
    ds = pipeline.pretrain_dataset(
        _mixed_size_source(), _cfg(), batch_size=2, seed=None, augment_impl="device", repeat=False
    )
    assert ds.element_spec["image"].shape == (2, 16, 20, 3)
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"expected shape \[16,20,3\]"):
        list(ds)


def test_supervised_batched_and_unknown_impls():
    ds = pipeline.supervised_dataset(
        _source(), _crop_flip_cfg(), batch_size=4, seed=0, augment_impl="batched"
    )
    images = next(iter(ds))["image"].numpy()
    assert images.shape == (4, SIZE, SIZE, 3) and 0.0 <= images.min() <= images.max() <= 1.0
    with pytest.raises(DataError) as info:
        pipeline.supervised_dataset(_source(), _crop_flip_cfg(), 4, augment_impl="device")
    assert info.value.argument == "augment_impl"
    with pytest.raises(DataError) as info:
        pipeline.pretrain_dataset(_source(), _cfg(), 4, augment_impl="gpu")
    assert info.value.argument == "augment_impl"
