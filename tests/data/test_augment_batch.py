"""Tests for tf_simclr.data.augment_batch, the batched SimCLR augmentation.

Two kinds of test:

- Exactness: each batched op, given its parameters, equals the per-image op
  (or the `tf.image` op it replaces) applied image by image.
- Distribution: the batched path and the per-image path (`augment`) produce
  the same distribution of augmentations. Rates are compared with four
  binomial standard deviations of their difference; continuous quantities
  (crop area and aspect ratio, brightness, saturation, blur strength, ...)
  with the two-sample Kolmogorov-Smirnov distance at significance 1e-4,
  whose critical value follows from the two sample sizes. Each distribution
  test also checks a deliberately different distribution fails the same
  criterion, so the criterion can fail.

The batched path runs eagerly and inside `tf.data` (after `batch`); the
per-image path runs inside `tf.data.Dataset.map`, like the real pipelines.
The distribution tests also run the Keras layers of `tf_simclr.layers` (mode
"layers": a `keras.Sequential` of the separate layers; "simclr_augment": the
whole view as one layer) against the per-image path. The criteria are in
`tests/_distribution.py`.
"""

import dataclasses

import keras
import numpy as np
import pytest
import tensorflow as tf

from tests import _distribution as dist
from tf_simclr import layers
from tf_simclr.data import augment, augment_params
from tf_simclr.data import augment_batch as ab
from tf_simclr.data import blur_batch as bb
from tf_simclr.data import color_batch as cb
from tf_simclr.data.augment import AugmentConfig
from tf_simclr.data.augment_params import RandomStream

MODES = ["eager", "tf_data"]
# The same distribution tests for the augmentation layers (see `_layer_views`).
VIEW_MODES = [*MODES, "layers", "simclr_augment"]
N = 400  # samples per path in the distribution tests


@pytest.fixture(autouse=True)
def _seeded():
    """Fixed draws, so a run is repeatable; the tolerances hold for any seed."""
    tf.random.set_seed(0)
    yield
    tf.random.set_seed(None)


def _per_image_views(image, cfg, n):
    """n views of `image` by `augment.simclr_view` inside tf.data.Dataset.map."""
    ds = tf.data.Dataset.from_tensors(image).repeat(n)
    ds = ds.map(lambda x: augment.simclr_view(x, cfg), num_parallel_calls=tf.data.AUTOTUNE)
    return next(iter(ds.batch(n))).numpy()


def _layer_views(images, cfg, mode):
    """The views of `images` ([N, H, W, 3] in [0, 1]) by `tf_simclr.layers` built from
    `cfg`: one `SimCLRAugment`, or ("layers") a `keras.Sequential` of the separate
    layers in the order of the recipe, with Keras's own horizontal flip. Fixed seeds
    (the layers' draws ignore `tf.random.set_seed`), so a run is repeatable."""
    if mode == "simclr_augment":
        augment = layers.SimCLRAugment.from_augment_config(cfg, seed=0)
    else:
        stages = []
        if cfg.crop:
            stages.append(
                layers.RandomResizedCrop(
                    cfg.image_size, cfg.crop_area_range, cfg.aspect_ratio_range, seed=1
                )
            )
        else:
            assert images.shape[1:3] == (cfg.image_size, cfg.image_size)  # nothing to resize
        if cfg.flip:
            stages.append(keras.layers.RandomFlip("horizontal", seed=2))
        if cfg.applies_color_jitter:
            jitter = (cfg.color_jitter_strength, cfg.color_jitter_prob, cfg.color_jitter_impl)
            stages.append(layers.RandomColorJitter(*jitter, seed=3))
        if cfg.applies_grayscale:
            stages.append(layers.RandomGrayscale(cfg.grayscale_prob, seed=4))
        if cfg.blur:
            stages.append(layers.RandomGaussianBlur(cfg.blur_prob, seed=5))
        augment = keras.Sequential(stages)
    batches = np.split(images.astype(np.float32), 4)
    return np.concatenate([augment(b, training=True).numpy() for b in batches])


def _batched_views(image, cfg, n, mode):
    """n views of `image` by `augment_batch.simclr_view_batch`, eagerly or in tf.data,
    or by the augmentation layers (`_layer_views`)."""
    images = np.broadcast_to(image, (n, *image.shape))
    if mode in ("layers", "simclr_augment"):
        return _layer_views(images / 255.0, cfg, mode)
    if mode == "eager":
        return ab.simclr_view_batch(tf.constant(images), cfg).numpy()
    ds = tf.data.Dataset.from_tensor_slices(images).batch(n // 4)
    ds = ds.map(lambda x: ab.simclr_view_batch(x, cfg))
    return np.concatenate([b.numpy() for b in ds])


def _only(image_size=16, **switches):
    """A config with every component off except `switches`."""
    off = dict(crop=False, flip=False, color_jitter=False, grayscale=False, blur=False)
    return AugmentConfig(image_size=image_size, **{**off, **switches})


# --- Crop boxes -----------------------------------------------------------------------


def _kernel_boxes(height, width, n, **kwargs):
    """n boxes from `augment.sample_crop_box` (TF's SampleDistortedBoundingBox kernel)."""
    shape = tf.constant([height, width, 3])
    ds = tf.data.Dataset.range(n).map(lambda _: tf.stack(augment.sample_crop_box(shape, **kwargs)))
    return next(iter(ds.batch(n))).numpy()


def _batched_boxes(height, width, n, mode, **kwargs):
    def sample(_=None):
        heights, widths = tf.fill([n], height), tf.fill([n], width)
        return tf.stack(ab.sample_crop_boxes(heights, widths, RandomStream(), **kwargs), axis=1)

    if mode == "eager":
        return sample().numpy()
    return next(iter(tf.data.Dataset.range(1).map(sample))).numpy()


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("height,width", [(100, 100), (40, 120)])
def test_crop_boxes_follow_the_kernel_distribution(mode, height, width):
    n = 1500
    kernel = _kernel_boxes(height, width, n)
    batched = _batched_boxes(height, width, n, mode)
    for boxes in (kernel, batched):
        offset_y, offset_x, crop_h, crop_w = boxes.T
        assert np.all(offset_y >= 0) and np.all(offset_y + crop_h <= height)
        assert np.all(offset_x >= 0) and np.all(offset_x + crop_w <= width)
        assert np.all(crop_h * crop_w >= 0.1 * height * width)  # MIN_OBJECT_COVERED

    def stats(boxes):
        offset_y, offset_x, crop_h, crop_w = boxes.T.astype(np.float64)
        return {
            "area fraction": crop_h * crop_w / (height * width),
            "aspect ratio": crop_w / crop_h,
            "height": crop_h,
            "relative offset_y": offset_y / np.maximum(height - crop_h, 1),
            "relative offset_x": offset_x / np.maximum(width - crop_w, 1),
        }

    kernel_stats, batched_stats = stats(kernel), stats(batched)
    for name in kernel_stats:
        dist.assert_same_distribution(kernel_stats[name], batched_stats[name], name)
    # Whole-image fallbacks (no valid box in 100 attempts) are equally frequent.
    whole = lambda b: (b[:, 2] == height) & (b[:, 3] == width)
    dist.assert_same_rate(whole(kernel), whole(batched), "whole image")
    # The criterion has power: a crop area range of (0.2, 1) instead of
    # (0.08, 1) is detected.
    other = _batched_boxes(height, width, n, mode, area_range=(0.2, 1.0))
    dist.assert_different_distribution(
        kernel_stats["area fraction"], stats(other)["area fraction"], "area (0.2, 1)"
    )


def test_crop_boxes_fall_back_to_the_whole_image():
    # No box can have area <= 5% and cover 10% of the image (as the kernel test).
    boxes = _batched_boxes(50, 40, 20, "eager", area_range=(0.01, 0.05))
    np.testing.assert_array_equal(boxes, np.tile([0, 0, 50, 40], (20, 1)))


def test_crop_boxes_per_image_sizes():
    heights, widths = tf.constant([30, 200, 64]), tf.constant([90, 20, 64])
    for _ in range(20):
        offset_y, offset_x, crop_h, crop_w = (
            v.numpy() for v in ab.sample_crop_boxes(heights, widths, RandomStream())
        )
        assert np.all(offset_y + crop_h <= heights.numpy())
        assert np.all(offset_x + crop_w <= widths.numpy())
        assert np.all(crop_h * crop_w >= 0.1 * heights.numpy() * widths.numpy())


# --- Exactness of the batched ops -----------------------------------------------------


@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
@pytest.mark.parametrize("size", [8, 24, 64])
def test_crop_and_resize_equals_resize_of_the_crop(dtype, size):
    rng = np.random.default_rng(0)
    images = rng.uniform(size=(5, 40, 50, 3))
    if dtype == np.uint8:
        images = np.round(images * 255).astype(np.uint8)
        as_float = images / 255.0
    else:
        images = images.astype(np.float32)
        as_float = images
    # Whole image, inner crops, crops touching each border, a one-pixel column.
    boxes = np.array(
        [[0, 0, 40, 50], [3, 5, 10, 12], [10, 0, 30, 17], [0, 20, 40, 30], [7, 9, 1, 1]]
    )
    flip = np.array([False, True, False, True, False])
    out = ab.crop_and_resize_batch(images, tuple(boxes.T), size, tf.constant(flip)).numpy()
    assert out.shape == (5, size, size, 3) and out.dtype == np.float32
    for i, (y, x, h, w) in enumerate(boxes):
        expected = tf.image.resize(as_float[i, y : y + h, x : x + w], [size, size], "bilinear")
        expected = expected.numpy()[:, ::-1] if flip[i] else expected.numpy()
        np.testing.assert_allclose(out[i], expected, atol=1e-5)  # uint8: /255 rounding


@pytest.mark.parametrize("mode", MODES)
def test_padded_batch_reads_only_each_image(mode):
    # A 20x30 image padded into a 40x50 batch: padding holds 255, which a crop
    # reading beyond the image would pick up.
    rng = np.random.default_rng(1)
    small = rng.integers(0, 200, (20, 30, 3), dtype=np.uint8)
    padded = np.full((2, 40, 50, 3), 255, np.uint8)
    padded[0, :20, :30] = small
    padded[1] = rng.integers(0, 200, (40, 50, 3), dtype=np.uint8)
    sizes = np.array([[20, 30], [40, 50]], np.int32)
    cfg = AugmentConfig(image_size=12, color_jitter=False, grayscale=False, blur=False)

    # 50 copies of the two images in one batch: 50 draws each.
    padded, sizes = np.tile(padded, (50, 1, 1, 1)), np.tile(sizes, (50, 1))

    def views(images, sizes):
        return ab.simclr_view_batch(images, cfg, sizes=sizes)

    if mode == "eager":
        out = views(tf.constant(padded), tf.constant(sizes)).numpy()
    else:
        ds = tf.data.Dataset.from_tensors((padded, sizes)).map(views)
        out = next(iter(ds)).numpy()
    assert out[0::2].max() <= 200 / 255 + 1e-6  # never a padding pixel
    # Without crop, the padded image is resized from its own 20x30 pixels.
    whole = _only(image_size=12)
    resized = ab.simclr_view_batch(padded[:2], whole, sizes=sizes[:2]).numpy()[0]
    np.testing.assert_allclose(
        resized, tf.image.resize(small / 255.0, [12, 12], "bilinear"), atol=2e-6
    )


def test_colour_ops_equal_tf_image_ops_per_image():
    rng = np.random.default_rng(0)
    images = rng.uniform(size=(7, 6, 5, 3)).astype(np.float32)
    images[0] = 0.5  # gray: saturation and hue leave it unchanged
    images[1, :, :, 0] = images[1, :, :, 1]  # ties between channels
    planar = tf.transpose(images, [0, 3, 1, 2])
    factors = np.array([0.0, 0.3, 1.0, 1.5, 1.8, 3.0, 0.7], np.float32)
    deltas = np.array([-0.5, -0.2, 0.0, 0.1, 0.3, 0.5, 0.45], np.float32)
    cases = [
        (cb.adjust_brightness_planar, lambda x, f: x * f, factors),
        (cb.adjust_contrast_planar, tf.image.adjust_contrast, factors),
        (cb.adjust_saturation_planar, tf.image.adjust_saturation, factors),
        (cb.adjust_hue_planar, tf.image.adjust_hue, deltas),
    ]
    for batched, per_image, params in cases:
        out = tf.transpose(batched(planar, params), [0, 2, 3, 1]).numpy()
        for i in range(len(images)):
            np.testing.assert_allclose(out[i], per_image(images[i], params[i]), atol=2e-6)


def test_color_jitter_batch_applies_each_images_ops_in_its_order():
    # Redraw the parameters from the same seed, in the documented draw order,
    # and apply the tf.image ops image by image in each image's order.
    images = np.random.default_rng(0).uniform(size=(12, 6, 6, 3)).astype(np.float32)
    seed, strength = tf.constant([3, 4]), 1.0
    apply = tf.constant([True] * 10 + [False] * 2)
    out = cb.color_jitter_batch(images, strength, RandomStream(seed), apply=apply).numpy()

    rng = RandomStream(seed)
    max_b, max_c, max_s, max_h = augment_params.jitter_max_deltas(strength)
    n = len(images)
    b = augment_params.sample_jitter_factor(rng, max_b, [n]).numpy()
    c = augment_params.sample_jitter_factor(rng, max_c, [n]).numpy()
    s = augment_params.sample_jitter_factor(rng, max_s, [n]).numpy()
    h = augment_params.sample_hue_delta(rng, max_h, [n]).numpy()
    order = augment_params.sample_jitter_order(rng, [n]).numpy()
    assert len({tuple(o) for o in order}) > 3  # several orders in the batch
    for i in range(n):
        ops = [
            lambda x, i=i: x * b[i],
            lambda x, i=i: tf.image.adjust_contrast(x, c[i]),
            lambda x, i=i: tf.image.adjust_saturation(x, s[i]),
            lambda x, i=i: tf.image.adjust_hue(x, h[i]),
        ]
        expected = images[i]
        if apply[i]:
            for k in order[i]:
                expected = tf.clip_by_value(ops[k](expected), 0.0, 1.0)
        np.testing.assert_allclose(out[i], expected, atol=1e-5)


def test_grayscale_equals_per_image_grayscale():
    images = np.random.default_rng(0).uniform(size=(3, 5, 4, 3)).astype(np.float32)
    expected = np.stack([augment.to_grayscale(x) for x in images])
    out = cb.random_grayscale_batch(images, RandomStream(), 1.0).numpy()
    np.testing.assert_allclose(out, expected, atol=1e-6)
    np.testing.assert_array_equal(cb.random_grayscale_batch(images, RandomStream(), 0.0), images)
    # Fused into the last colour-jitter step: without jitter, just the grayscale.
    gray = tf.constant([True, False, True])
    none = tf.zeros([3], tf.bool)
    out = cb.color_jitter_batch(images, 1.0, RandomStream(), apply=none, gray=gray).numpy()
    np.testing.assert_allclose(out[[0, 2]], expected[[0, 2]], atol=1e-6)
    np.testing.assert_allclose(out[1], images[1], atol=1e-6)


def test_gaussian_blur_batch_equals_per_image_blur():
    images = np.random.default_rng(0).uniform(size=(4, 30, 26, 3)).astype(np.float32)
    sigma = np.array([0.1, 0.7, 1.3, 2.0], np.float32)
    for kernel_size in (0, 3, 8, 60):  # 60: radius capped at min(H, W) - 1
        out = bb.gaussian_blur_batch(tf.constant(images), kernel_size, sigma).numpy()
        for i in range(4):
            expected = augment.gaussian_blur(images[i], kernel_size, sigma[i], "REFLECT")
            np.testing.assert_allclose(out[i], expected, atol=1e-5)


@pytest.mark.parametrize("p", [0.0, 1.0])
def test_random_blur_batch_when_no_or_every_image_is_drawn(p):
    """A batch with no image drawn for blur (common at small per-replica batches) used
    to fail in the padding op; with p=1 every image is blurred."""
    images = tf.constant(np.random.default_rng(0).uniform(size=(3, 32, 32, 3)), tf.float32)
    blur = tf.function(lambda x: bb.random_blur_batch(x, RandomStream(), p))
    out = blur(images).numpy()
    assert out.shape == (3, 32, 32, 3)
    if p == 0.0:
        np.testing.assert_array_equal(out, images.numpy())
    else:
        assert min(np.abs(out[i] - images.numpy()[i]).max() for i in range(3)) > 1e-3


# --- Views: same distribution as the per-image path -----------------------------------


def test_view_shape_dtype_range_and_seeds():
    images = np.random.default_rng(0).integers(0, 256, (6, 30, 20, 3), dtype=np.uint8)
    cfg = AugmentConfig(image_size=24)
    out = ab.simclr_view_batch(images, cfg)
    assert out.shape == (6, 24, 24, 3) and out.dtype == tf.float32
    assert float(tf.reduce_min(out)) >= 0.0 and float(tf.reduce_max(out)) <= 1.0
    first = ab.simclr_view_batch(images, cfg, seed=tf.constant([1, 2])).numpy()
    np.testing.assert_array_equal(first, ab.simclr_view_batch(images, cfg, seed=[1, 2]))
    assert np.abs(first - ab.simclr_view_batch(images, cfg, seed=[1, 3])).max() > 1e-2
    # Each image of the batch gets its own draw.
    same = np.broadcast_to(images[:1], images.shape)
    views = ab.simclr_view_batch(same, cfg, seed=[5, 6]).numpy()
    assert min(np.abs(views[0] - views[i]).max() for i in range(1, 6)) > 1e-2


@pytest.mark.parametrize(
    "cfg",
    [
        AugmentConfig(image_size=24),
        AugmentConfig(image_size=48, blur_prob=0.5),  # blur radius 2
        AugmentConfig(image_size=24, color_jitter_strength=0.0),
        _only(24, grayscale=True, grayscale_prob=0.5),
        _only(24, color_jitter=True, color_jitter_prob=1.0),
        _only(24, flip=True, blur=True),
    ],
    ids=["default", "blur", "strength0", "gray_only", "jitter_only", "no_crop"],
)
def test_one_by_one_equals_batch_wide_for_a_seed(cfg):
    """Both ways of running the ops draw the same parameters: equal views for a seed.
    (So the distribution tests below, which run the default, cover both.)"""
    images = np.random.default_rng(1).integers(0, 256, (8, 52, 50, 3), dtype=np.uint8)
    images[:4] = dist.colour_image(52, 50)  # smooth colours too, not only noise
    seed = tf.constant([7, 8])
    loop = ab.simclr_view_batch(images, cfg, seed=seed, one_by_one=True).numpy()
    wide = ab.simclr_view_batch(images, cfg, seed=seed, one_by_one=False).numpy()
    np.testing.assert_allclose(loop, wide, atol=2e-6)
    assert np.abs(loop - images[:, :1, :1] / 255.0).max() > 1e-2  # not a no-op


@pytest.mark.parametrize("traced", [False, True])
def test_one_by_one_equals_batch_wide_on_a_padded_batch(traced):
    """Images of different sizes padded into one batch, eagerly and traced with
    unknown height and width (as a padded batch in tf.data)."""
    rng = np.random.default_rng(2)
    shapes = [(40, 30), (24, 36), (33, 33)]
    images = np.zeros((3, 40, 36, 3), np.uint8)
    for i, (h, w) in enumerate(shapes):
        images[i, :h, :w] = rng.integers(0, 256, (h, w, 3))
    sizes = np.array(shapes, np.int32)
    cfg = AugmentConfig(image_size=20)

    def both(x, sz):
        return [
            ab.simclr_view_batch(x, cfg, sizes=sz, seed=[3, 4], one_by_one=flag)
            for flag in (True, False)
        ]

    if traced:
        spec = [tf.TensorSpec([None, None, None, 3], tf.uint8), tf.TensorSpec([None, 2], tf.int32)]
        both = tf.function(both, input_signature=spec)
    loop, wide = both(tf.constant(images), tf.constant(sizes))
    np.testing.assert_allclose(loop.numpy(), wide.numpy(), atol=2e-6)


def test_view_with_everything_off_is_the_image():
    image = dist.colour_image()
    out = ab.simclr_view_batch(image[None], _only(image_size=16)).numpy()[0]
    np.testing.assert_allclose(out, image / 255.0, atol=1e-6)


@pytest.mark.parametrize("mode", VIEW_MODES)
def test_flip_grayscale_jitter_blur_rates_match(mode):
    image = dist.colour_image(24, 24)
    checks = {
        "flip": (
            _only(24, flip=True),
            lambda v: np.all(np.abs(v - image[:, ::-1] / 255.0) < 1e-5, axis=(1, 2, 3)),
            0.5,
        ),
        "grayscale": (_only(24, grayscale=True), dist.is_gray, 0.2),
        "jitter": (
            _only(24, color_jitter=True),
            lambda v: np.abs(v - image / 255.0).max(axis=(1, 2, 3)) > 1e-4,
            0.8,
        ),
        # 24 px: kernel 2, radius 1; sigma >= 0.1 always changes a textured image.
        "blur": (
            _only(24, blur=True),
            lambda v: np.abs(v - image / 255.0).max(axis=(1, 2, 3)) > 1e-4,
            0.5,
        ),
    }
    for name, (cfg, detect, p) in checks.items():
        per_image = detect(_per_image_views(image, cfg, N))
        batched = detect(_batched_views(image, cfg, N, mode))
        dist.assert_same_rate(per_image, batched, name)
        dist.assert_rate(batched, p, name)
    # Power: a rate of 0.45 instead of 0.2 is detected at this sample size.
    gray = dist.is_gray(_batched_views(image, _only(24, grayscale=True), N, mode))
    other = dist.is_gray(
        _batched_views(image, _only(24, grayscale=True, grayscale_prob=0.45), N, mode)
    )
    with pytest.raises(AssertionError):
        dist.assert_same_rate(gray, other, "grayscale 0.2 vs 0.45")


@pytest.mark.parametrize("path", ["per_image", "batched"])
def test_grayscale_rate_does_not_depend_on_the_jitter(path):
    """Jitter (p = 0.8) and grayscale (p = 0.2) together: 20% of the views are gray.

    4000 views make four standard deviations 0.025, so a grayscale drawn only
    for jittered images (rate 0.16) fails; the N = 400 above would accept it.
    """
    n_rate = 4000
    image = dist.colour_image(8, 8)
    cfg = _only(8, color_jitter=True, grayscale=True)
    if path == "per_image":
        views = _per_image_views(image, cfg, n_rate)
    else:
        images = tf.constant(np.broadcast_to(image, (n_rate, 8, 8, 3)))
        views = ab.simclr_view_batch(images, cfg).numpy()
    dist.assert_rate(dist.is_gray(views), 0.2, path)


def _colour_stats(views):
    """Per view: mean intensity (brightness), mean max-min channel spread
    (saturation), mean per-channel std over pixels (contrast), mean red-minus-blue
    (hue shifts move it)."""
    return {
        "brightness": views.mean(axis=(1, 2, 3)),
        "saturation": (views.max(axis=-1) - views.min(axis=-1)).mean(axis=(1, 2)),
        "contrast": views.std(axis=(1, 2)).mean(axis=-1),
        "red minus blue": (views[..., 0] - views[..., 2]).mean(axis=(1, 2)),
    }


@pytest.mark.parametrize("impl", ["simclrv2", "simclrv1"])
@pytest.mark.parametrize("mode", VIEW_MODES)
def test_color_jitter_distribution_matches(mode, impl):
    image = dist.colour_image(16, 16)
    for strength in (0.5, 1.0):
        cfg = _only(
            16,
            color_jitter=True,
            color_jitter_strength=strength,
            color_jitter_prob=1.0,
            color_jitter_impl=impl,
        )
        per_image = _colour_stats(_per_image_views(image, cfg, N))
        batched = _colour_stats(_batched_views(image, cfg, N, mode))
        for name in per_image:
            dist.assert_same_distribution(per_image[name], batched[name], f"s={strength} {name}")
    # Power: strength 0.4 instead of 1.0 gives detectably different brightness.
    weaker = dataclasses.replace(cfg, color_jitter_strength=0.4)
    dist.assert_different_distribution(
        per_image["brightness"],
        _colour_stats(_batched_views(image, weaker, N, mode))["brightness"],
        "strength 1.0 vs 0.4",
    )
    # And the other implementation gives a detectably different brightness.
    other = "simclrv1" if impl == "simclrv2" else "simclrv2"
    other_views = _batched_views(image, dataclasses.replace(cfg, color_jitter_impl=other), N, mode)
    dist.assert_different_distribution(
        per_image["brightness"], _colour_stats(other_views)["brightness"], f"{impl} vs {other}"
    )


def _black_views(cfg, n, path):
    """n views of a black 8 px image by `path`: per_image (tf.data map), batched
    (`simclr_view_batch`, batch-wide or one by one) or device (`DeviceViews`)."""
    black = np.zeros((8, 8, 3), np.uint8)
    if path == "per_image":
        return _per_image_views(black, cfg, n)
    images = tf.constant(np.broadcast_to(black, (n, 8, 8, 3)))
    if path == "device":
        views = ab.DeviceViews(cfg)({"image": images, "label": tf.zeros([n])}, tf.constant([1, 2]))
        return views["view1"].numpy()
    return ab.simclr_view_batch(images, cfg, one_by_one=path == "one_by_one").numpy()


@pytest.mark.parametrize("path", ["per_image", "batch_wide", "one_by_one", "device"])
def test_color_jitter_impl_brightness_in_every_path(path):
    """On a black image only the brightness can act (contrast, saturation and hue keep
    it black). "simclrv2" multiplies: every view stays black. "simclrv1" adds
    U[-0.8 s, 0.8 s]: half the views turn a flat gray of value U(0, 0.8 s)."""
    s = 0.5
    cfg = _only(8, color_jitter=True, color_jitter_prob=1.0, color_jitter_strength=s)
    np.testing.assert_array_equal(_black_views(cfg, 50, path), 0.0)
    cfg = dataclasses.replace(cfg, color_jitter_impl="simclrv1")
    views = _black_views(cfg, N, path)
    values = views.reshape(N, -1)
    np.testing.assert_allclose(values.max(axis=1), values.min(axis=1), atol=1e-6)  # flat
    lifted = values[:, 0] > 0
    dist.assert_rate(lifted, 0.5, f"{path}: views lifted")
    uniform = np.random.default_rng(0).uniform(0, 0.8 * s, lifted.sum())
    dist.assert_same_distribution(values[lifted, 0], uniform, f"{path}: brightness deltas")


@pytest.mark.parametrize("path", ["per_image", "batch_wide", "one_by_one", "device"])
def test_strength_zero_turns_the_colour_stage_off_grayscale_included(path):
    """As the reference: `--color_jitter_strength=0` skips jitter and grayscale (p = 0.2
    of each view otherwise: 200 views all in colour would then have chance 0.8^200)."""
    image = dist.colour_image(8, 8)
    cfg = _only(8, color_jitter=True, grayscale=True, color_jitter_strength=0.0)
    assert not cfg.applies_color_jitter and not cfg.applies_grayscale
    n = 200
    if path == "per_image":
        views = _per_image_views(image, cfg, n)
    else:
        images = tf.constant(np.broadcast_to(image, (n, 8, 8, 3)))
        if path == "device":
            batch = {"image": images, "label": tf.zeros([n])}
            views = ab.DeviceViews(cfg)(batch, tf.constant([1, 2]))["view1"].numpy()
        else:
            views = ab.simclr_view_batch(images, cfg, one_by_one=path == "one_by_one").numpy()
    np.testing.assert_allclose(views, np.broadcast_to(image / 255.0, views.shape), atol=1e-6)
    # Control: at strength 0.5 the same config converts about 20% of views to gray.
    on = dataclasses.replace(cfg, color_jitter=False, color_jitter_strength=0.5)
    assert dist.is_gray(_per_image_views(image, on, n)).mean() > 0.1


@pytest.mark.parametrize("mode", VIEW_MODES)
def test_crop_and_blur_distribution_matches(mode):
    # Channels 0 and 1 are row and column ramps: the range of each in a view
    # measures the crop's height and width. Channel 2 is noise: its variance
    # in a view falls with the blur's sigma.
    side = 48
    ramp = np.linspace(0.0, 1.0, side)
    noise = np.random.default_rng(0).uniform(size=(side, side))
    image = np.stack([*np.meshgrid(ramp, ramp, indexing="ij"), noise], axis=-1)
    image = np.round(image * 255).astype(np.uint8)

    size = 24

    def extent(span):
        """The crop side (in pixels) whose resize to `size` spans `span` ramp pixels.

        Both paths sample a crop of h pixels at (i + 0.5) h / size - 0.5,
        clamped to [0, h - 1]. Snapping to the integer h makes the statistic
        insensitive to the interpolation kernel (which moves spans by < 1%).
        """
        h = np.arange(1, side + 1)[:, None]
        first = np.maximum(0.5 * h / size - 0.5, 0)
        last = np.minimum(h - 0.5 * h / size - 0.5, h - 1)
        return 1 + np.argmin(np.abs((last - first) - span[None] * (side - 1)), axis=0)

    def stats(views):
        heights = extent(np.ptp(views[..., 0], axis=(1, 2)))
        widths = extent(np.ptp(views[..., 1], axis=(1, 2)))
        return {"crop height": heights, "crop width": widths, "aspect": widths / heights}

    crop = _only(size, crop=True)
    per_image = stats(_per_image_views(image, crop, N))
    batched = stats(_batched_views(image, crop, N, mode))
    for name in per_image:
        dist.assert_same_distribution(per_image[name], batched[name], name)
    narrow = dataclasses.replace(crop, aspect_ratio_range=(0.9, 1.1))
    dist.assert_different_distribution(
        per_image["aspect"], stats(_batched_views(image, narrow, N, mode))["aspect"], "ratio"
    )

    # Blur at 48 px: kernel 4, radius 2; sigma ~ U[0.1, 2].
    blur = _only(48, blur=True, blur_prob=1.0)
    variance = lambda views: views[..., 2].var(axis=(1, 2))
    per_image = variance(_per_image_views(image, blur, N))
    batched = variance(_batched_views(image, blur, N, mode))
    dist.assert_same_distribution(per_image, batched, "blurred variance")
    sharper = bb.random_blur_batch(
        tf.constant(np.broadcast_to(image / 255.0, (N, *image.shape)), tf.float32),
        RandomStream(),
        1.0,
        sigma_range=(0.1, 1.0),
    ).numpy()
    dist.assert_different_distribution(per_image, variance(sharper), "sigma range (0.1, 1)")


@pytest.mark.parametrize("mode", VIEW_MODES)
def test_full_recipe_distribution_matches(mode):
    # A smooth image: on pixel-level noise the two paths' interpolations
    # (bilinear here, bicubic per image) differ visibly when a crop is
    # enlarged, bicubic keeping more texture; that is the one deliberate
    # difference between the paths (see the augment_batch docstring).
    ramp = np.linspace(0.0, 1.0, 40)
    rows, cols = np.meshgrid(ramp, ramp, indexing="ij")
    image = np.stack([0.2 + 0.6 * rows, 0.3 + 0.4 * cols, 0.8 - 0.5 * rows * cols], axis=-1)
    image = np.round(image * 255).astype(np.uint8)
    cfg = AugmentConfig(image_size=24)
    per_image = _colour_stats(_per_image_views(image, cfg, N))
    batched = _colour_stats(_batched_views(image, cfg, N, mode))
    for name in per_image:
        dist.assert_same_distribution(per_image[name], batched[name], f"full recipe {name}")


@pytest.mark.parametrize("mode", MODES)
def test_two_views_batch(mode):
    images = np.random.default_rng(0).integers(0, 256, (4, 20, 28, 3), dtype=np.uint8)
    batch = {"image": images, "label": np.arange(4, dtype=np.int64)}
    cfg = AugmentConfig(image_size=16)
    if mode == "eager":
        out = ab.two_views_batch(batch, cfg)
    else:
        ds = tf.data.Dataset.from_tensors(batch).map(lambda b: ab.two_views_batch(b, cfg))
        out = next(iter(ds))
    assert set(out) == {"view1", "view2", "label"}
    np.testing.assert_array_equal(out["label"], np.arange(4))
    assert out["view1"].shape == (4, 16, 16, 3)
    assert np.abs(out["view1"].numpy() - out["view2"].numpy()).max() > 1e-2
    seeded = ab.two_views_batch(batch, cfg, seed=[0, 9])
    again = ab.two_views_batch(batch, cfg, seed=[0, 9])
    np.testing.assert_array_equal(seeded["view1"], again["view1"])
    np.testing.assert_array_equal(seeded["view2"], again["view2"])
    assert np.abs(seeded["view1"].numpy() - seeded["view2"].numpy()).max() > 1e-2


def test_rejects_non_rgb_batches():
    with pytest.raises(ValueError, match="RGB"):
        ab.simclr_view_batch(np.zeros((2, 8, 8, 1), np.uint8), AugmentConfig(image_size=8))
    with pytest.raises(ValueError, match="RGB"):
        ab.simclr_view_batch(np.zeros((8, 8, 3), np.uint8), AugmentConfig(image_size=8))
