"""Tests for tf_simclr.data.augment.

Every op runs eagerly and inside `tf.data.Dataset.map`; in the tf.data mode the
image comes from a generator with unknown height and width (like a decoder), so
the graph code paths for dynamic shapes are exercised. Rate tests allow four
binomial standard deviations.
"""

import math

import numpy as np
import pytest
import tensorflow as tf

from tf_simclr.data import augment

MODES = ["eager", "tf_data"]


def _run(fn, image, mode, n=1, unknown_channels=False):
    """Applies `fn` to `image` `n` times; returns the `n` results stacked.

    In "tf_data" mode H and W (and C if `unknown_channels`) are unknown inside
    the map function.
    """
    image = np.asarray(image)
    if mode == "eager":
        return np.stack([np.asarray(fn(tf.constant(image))) for _ in range(n)])
    channels = None if unknown_channels else image.shape[-1]
    spec = tf.TensorSpec([None, None, channels], tf.as_dtype(image.dtype))
    ds = tf.data.Dataset.from_generator(lambda: (image for _ in range(n)), output_signature=spec)

    def check_and_apply(x):
        assert x.shape[0] is None and x.shape[1] is None  # dynamic H, W in the graph
        return fn(x)

    return next(iter(ds.map(check_and_apply).batch(n))).numpy()


def _rate_tolerance(p, n):
    return 4 * math.sqrt(p * (1 - p) / n)


def _colour_image(height=8, width=8, seed=0):
    """float32 [H, W, 3] in [0, 1] with clearly unequal channels at every pixel."""
    rng = np.random.default_rng(seed)
    image = rng.uniform(0.1, 0.9, size=(height, width, 3)).astype(np.float32)
    image[..., 0] = 0.9
    image[..., 2] = 0.1
    return image


def _is_gray(images):
    """Per image: are all three channels equal everywhere?"""
    spread = images.max(axis=-1) - images.min(axis=-1)
    return spread.reshape(len(images), -1).max(axis=1) < 1e-6


@pytest.fixture
def global_seed():
    yield tf.random.set_seed
    tf.random.set_seed(None)


# --- to_float_image -------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_to_float_image_scales_uint8(mode):
    image = np.arange(5 * 6 * 3, dtype=np.uint8).reshape(5, 6, 3) * 3
    out = _run(augment.to_float_image, image, mode)[0]
    assert out.dtype == np.float32 and out.shape == (5, 6, 3)
    np.testing.assert_allclose(out, image / 255.0, rtol=1e-6)


def test_to_float_image_only_casts_float():
    image = np.linspace(0.0, 1.0, 4 * 4 * 3).reshape(4, 4, 3)  # float64
    out = augment.to_float_image(image)
    assert out.dtype == tf.float32
    np.testing.assert_allclose(out, image, rtol=1e-6)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("channels", [1, 2, 4])
def test_to_float_image_makes_rgb(mode, channels):
    rng = np.random.default_rng(channels)
    image = rng.integers(0, 256, size=(5, 7, channels), dtype=np.uint8)
    out = _run(augment.to_float_image, image, mode, unknown_channels=True)[0]
    assert out.shape == (5, 7, 3)
    if channels < 3:  # gray (+ alpha): the gray channel tiled
        expected = np.repeat(image[..., :1], 3, axis=-1) / 255.0
    else:  # RGBA: alpha dropped
        expected = image[..., :3] / 255.0
    np.testing.assert_allclose(out, expected, rtol=1e-6)


def test_to_float_image_unknown_rank_gets_static_channels():
    @tf.function(input_signature=[tf.TensorSpec(None, tf.uint8)])
    def convert(image):
        out = augment.to_float_image(image)
        assert out.shape.as_list() == [None, None, 3]
        return out

    assert convert(np.zeros((3, 4, 4), np.uint8)).shape == (3, 4, 3)


def test_to_float_image_rejects_other_channel_counts():
    with pytest.raises(ValueError, match="channels"):
        augment.to_float_image(np.zeros((4, 4, 5), np.uint8))
    with pytest.raises(tf.errors.InvalidArgumentError, match="channels"):
        _run(
            augment.to_float_image, np.zeros((4, 4, 5), np.uint8), "tf_data", unknown_channels=True
        )


# --- random_apply, random_flip --------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_random_apply_probability(mode):
    image = np.zeros((1, 1, 1), np.float32)
    n = 1000
    for p in (0.0, 1.0):
        out = _run(lambda x, p=p: augment.random_apply(lambda y: y + 1.0, p, x), image, mode, 50)
        np.testing.assert_array_equal(out, p)
    out = _run(lambda x: augment.random_apply(lambda y: y + 1.0, 0.3, x), image, mode, n)
    assert set(np.unique(out)) <= {0.0, 1.0}
    assert abs(out.mean() - 0.3) < _rate_tolerance(0.3, n)


@pytest.mark.parametrize("mode", MODES)
def test_random_flip_rate(mode):
    image = _colour_image(4, 5)
    n = 1000
    out = _run(augment.random_flip, image, mode, n)
    flipped = np.all(out == image[:, ::-1], axis=(1, 2, 3))
    unchanged = np.all(out == image, axis=(1, 2, 3))
    assert np.all(flipped ^ unchanged)
    assert abs(flipped.mean() - 0.5) < _rate_tolerance(0.5, n)


# --- crops ----------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_sample_crop_box_area_and_aspect_ratio(mode):
    height, width, n = 100, 100, 300
    sample = lambda _: tf.stack(augment.sample_crop_box(tf.constant([height, width, 3])))
    if mode == "eager":
        boxes = np.stack([sample(None).numpy() for _ in range(n)])
    else:
        boxes = next(iter(tf.data.Dataset.range(n).map(sample).batch(n))).numpy()
    offset_y, offset_x, crop_h, crop_w = boxes.T
    assert np.all(offset_y >= 0) and np.all(offset_y + crop_h <= height)
    assert np.all(offset_x >= 0) and np.all(offset_x + crop_w <= width)
    area = crop_h * crop_w / (height * width)
    assert np.all((area >= 0.08) & (area <= 1.0))
    # The width is rounded to an integer: allow half a pixel of error.
    aspect = crop_w / crop_h
    slack = 0.5 / crop_h
    assert np.all(aspect >= 3 / 4 - slack) and np.all(aspect <= 4 / 3 + slack)
    # The whole ranges are used, and the boxes are not all the same.
    assert area.min() < 0.25 and area.max() > 0.75
    assert aspect.min() < 0.85 and aspect.max() > 1.15
    assert len({tuple(b) for b in boxes}) > n // 2


def test_sample_crop_box_falls_back_to_whole_image():
    # No box can have area <= 5% and cover 10% of the image: the whole image.
    for _ in range(5):
        box = augment.sample_crop_box([50, 40, 3], area_range=(0.01, 0.05))
        assert [int(v) for v in box] == [0, 0, 50, 40]


@pytest.mark.parametrize("mode", MODES)
def test_random_resized_crop_shape_and_range(mode):
    image = np.random.default_rng(0).uniform(size=(40, 60, 3)).astype(np.float32)
    out = _run(lambda x: augment.random_resized_crop(x, 16), image, mode, 20)
    assert out.shape == (20, 16, 16, 3) and out.dtype == np.float32
    assert out.min() >= 0.0 and out.max() <= 1.0
    assert not np.allclose(out[0], out[1:])  # different crops


@pytest.mark.parametrize("mode", MODES)
def test_random_resized_crop_uses_the_box(mode):
    # Channels 0 and 1 hold the row and column coordinate, so the range of each
    # output channel measures the crop's height and width.
    side = 64
    ramp = np.arange(side, dtype=np.float32) / (side - 1)
    image = np.stack([*np.meshgrid(ramp, ramp, indexing="ij"), np.full((side, side), 0.5)], -1)
    image = image.astype(np.float32)

    def spans(area):
        crop = lambda x: augment.random_resized_crop(x, 16, (area, area), (1.0, 1.0))
        out = _run(crop, image, mode, 5)
        return np.ptp(out[..., 0], axis=(1, 2)), np.ptp(out[..., 1], axis=(1, 2))

    # A 32x32 crop resized to 16 samples input rows 0.5 ... 30.5: a span of 30/63.
    for span in spans(0.25):
        np.testing.assert_allclose(span, 30 / 63, atol=0.02)
    for span in spans(1.0):  # the whole image: rows 1.5 ... 61.5
        np.testing.assert_allclose(span, 60 / 63, atol=0.02)


@pytest.mark.parametrize("mode", MODES)
def test_center_crop_returns_the_centre(mode):
    square = np.arange(10 * 10 * 3, dtype=np.float32).reshape(10, 10, 3) / 300
    out = _run(lambda x: augment.center_crop(x, 6, crop_proportion=0.6), square, mode)[0]
    np.testing.assert_allclose(out, square[2:8, 2:8], atol=1e-6)
    # An odd margin (10 - 7 = 3) puts the extra pixel before the crop.
    out = _run(lambda x: augment.center_crop(x, 7, crop_proportion=0.7), square, mode)[0]
    np.testing.assert_allclose(out, square[2:9, 2:9], atol=1e-6)
    # Non-square: the crop is 0.75 * 8 = 6 of the shorter side, centred.
    wide = np.arange(8 * 12 * 3, dtype=np.float32).reshape(8, 12, 3) / 300
    out = _run(lambda x: augment.center_crop(x, 6, crop_proportion=0.75), wide, mode)[0]
    np.testing.assert_allclose(out, wide[1:7, 3:9], atol=1e-6)
    out = _run(lambda x: augment.center_crop(x, 3, crop_proportion=0.75), wide, mode)[0]
    assert out.shape == (3, 3, 3)


# --- colour ---------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_to_grayscale(mode):
    image = np.zeros((2, 3, 3), np.float32)
    image[0, 0] = [1.0, 0.0, 0.0]
    image[1, 2] = [0.0, 0.0, 1.0]
    out = _run(augment.to_grayscale, image, mode)[0]
    assert out.shape == (2, 3, 3)
    assert _is_gray(out[None])[0]
    # ITU-R 601 luma weights, as tf.image.rgb_to_grayscale.
    np.testing.assert_allclose(out[0, 0], 0.2989, atol=1e-3)
    np.testing.assert_allclose(out[1, 2], 0.1140, atol=1e-3)


@pytest.mark.parametrize("mode", MODES)
def test_color_jitter_changes_colours_within_range(mode):
    # Seeded: unseeded, two of the 20 draws could both clip the image to all ones (it
    # happened once on a clean-clone CI run).
    tf.random.set_seed(7)
    image = _colour_image()
    out = _run(lambda x: augment.color_jitter(x, 1.0), image, mode, 20)
    assert out.shape == (20, 8, 8, 3) and out.dtype == np.float32
    assert out.min() >= 0.0 and out.max() <= 1.0
    assert np.all(np.abs(out - image).max(axis=(1, 2, 3)) > 1e-3)
    assert not np.allclose(out[0], out[1])


@pytest.mark.parametrize("mode", MODES)
def test_color_jitter_brightness_is_multiplicative(mode):
    # "simclrv2" brightness scales the image: black stays black (contrast,
    # saturation and hue also keep it). An additive delta would lift it.
    black = np.zeros((4, 4, 3), np.float32)
    out = _run(lambda x: augment.color_jitter(x, 1.0), black, mode, 50)
    np.testing.assert_array_equal(out, 0.0)
    grey = np.full((4, 4, 3), 0.5, np.float32)
    out = _run(lambda x: augment.color_jitter(x, 1.0), grey, mode, 200)
    # Factor ~ U[0.2, 1.8]: 0.5 * factor spans [0.1, 0.9], clipped at 1.
    assert 0.1 - 1e-6 <= out.min() < 0.15 and out.max() > 0.85


def test_color_jitter_strength_zero_is_identity():
    image = _colour_image()
    np.testing.assert_array_equal(augment.color_jitter(image, 0.0), image)


@pytest.mark.parametrize("mode", MODES)
def test_color_jitter_order_is_random(mode):
    n = 200
    if mode == "eager":
        orders = np.stack([augment.color_jitter_order().numpy() for _ in range(n)])
    else:
        ds = tf.data.Dataset.range(n).map(lambda _: augment.color_jitter_order())
        orders = next(iter(ds.batch(n))).numpy()
    np.testing.assert_array_equal(np.sort(orders, axis=1), np.tile(np.arange(4), (n, 1)))
    assert len({tuple(o) for o in orders}) >= 20  # of the 24 permutations
    np.testing.assert_array_equal(augment.color_jitter_order(random_order=False), np.arange(4))


def test_color_jitter_applies_ops_in_the_sampled_order(monkeypatch, global_seed):
    # Same seed, so the same factors: any difference comes from the order alone.
    image = _colour_image()

    def jitter_with_order(order):
        monkeypatch.setattr(augment, "color_jitter_order", lambda random_order: tf.constant(order))
        global_seed(1)
        return augment.color_jitter(image, 1.0).numpy()

    forward = jitter_with_order([0, 1, 2, 3])
    np.testing.assert_array_equal(forward, jitter_with_order([0, 1, 2, 3]))
    assert np.abs(forward - jitter_with_order([3, 2, 1, 0])).max() > 1e-3


# --- blur -----------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("padding", ["REFLECT", "SAME"])
def test_gaussian_blur_keeps_a_constant_image(mode, padding):
    image = np.full((12, 12, 3), 0.6, np.float32)
    out = _run(lambda x: augment.gaussian_blur(x, 5, 1.5, padding), image, mode)[0]
    assert out.shape == image.shape
    np.testing.assert_allclose(out[2:-2, 2:-2], 0.6, rtol=1e-5)  # radius 2
    if padding == "REFLECT":
        np.testing.assert_allclose(out, 0.6, rtol=1e-5)
    else:  # zero padding darkens the border band, as in the reference
        assert out[0, 0, 0] < 0.55


@pytest.mark.parametrize("kernel_size", [0, 1, 4, 5, 7])
def test_gaussian_blur_kernel_support(kernel_size):
    impulse = np.zeros((15, 15, 3), np.float32)
    impulse[7, 7] = 1.0
    out = augment.gaussian_blur(impulse, kernel_size, 5.0).numpy()
    radius = kernel_size // 2
    rows, cols = np.nonzero(out[..., 0] > 1e-6)
    assert set(rows) == set(range(7 - radius, 8 + radius))
    assert set(cols) == set(range(7 - radius, 8 + radius))
    np.testing.assert_allclose(out.sum(axis=(0, 1)), 1.0, rtol=1e-5)
    np.testing.assert_allclose(out, out[::-1, ::-1], atol=1e-7)  # symmetric


@pytest.mark.parametrize("mode", MODES)
def test_gaussian_blur_smooths_more_with_larger_sigma(mode):
    noise = np.random.default_rng(0).uniform(size=(32, 32, 3)).astype(np.float32)
    variance = {}
    for sigma in (0.5, 2.0):
        out = _run(lambda x, s=sigma: augment.gaussian_blur(x, 9, s), noise, mode)[0]
        variance[sigma] = out.var()
    assert variance[2.0] < variance[0.5] < 0.8 * noise.var()


@pytest.mark.parametrize("mode", MODES)
def test_random_blur(mode):
    noise = np.random.default_rng(0).uniform(size=(40, 40, 3)).astype(np.float32)
    never = _run(lambda x: augment.random_blur(x, p=0.0), noise, mode, 5)
    np.testing.assert_array_equal(never, np.broadcast_to(noise, never.shape))
    # Kernel size 40 // 10 = 4 (radius 2); sigma >= 0.1 always changes the image.
    n = 300
    out = _run(lambda x: augment.random_blur(x, p=0.5), noise, mode, n)
    assert out.min() >= 0.0 and out.max() <= 1.0
    blurred = np.abs(out - noise).max(axis=(1, 2, 3)) > 1e-4
    assert abs(blurred.mean() - 0.5) < _rate_tolerance(0.5, n)
    assert np.all(out[blurred].var(axis=(1, 2, 3)) < noise.var())
    # Sigma varies from draw to draw.
    assert len(np.unique(out[blurred].var(axis=(1, 2, 3)).round(6))) > 10


def test_random_blur_small_image_is_unchanged():
    # 15 // 10 = 1: a kernel of length 1.
    noise = np.random.default_rng(0).uniform(size=(15, 15, 3)).astype(np.float32)
    np.testing.assert_allclose(augment.random_blur(noise, p=1.0), noise, rtol=1e-6)


# --- views ----------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(
    "shape,dtype",
    [
        ((40, 30, 3), np.uint8),
        ((24, 24, 1), np.uint8),
        ((30, 40, 4), np.uint8),
        ((20, 20, 3), np.float32),
    ],
)
def test_simclr_view_shape_dtype_range(mode, shape, dtype):
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, size=shape).astype(dtype)
    if dtype == np.float32:
        image /= 255
    cfg = augment.AugmentConfig(image_size=16)
    out = _run(lambda x: augment.simclr_view(x, cfg), image, mode, 4, unknown_channels=True)
    assert out.shape == (4, 16, 16, 3) and out.dtype == np.float32
    assert out.min() >= 0.0 and out.max() <= 1.0


def _only(image_size=8, **switches):
    """A config with every component off except `switches`."""
    off = dict(crop=False, flip=False, color_jitter=False, grayscale=False, blur=False)
    return augment.AugmentConfig(image_size=image_size, **{**off, **switches})


@pytest.mark.parametrize("mode", MODES)
def test_simclr_view_with_everything_off_is_the_image(mode):
    image = (_colour_image() * 255).astype(np.uint8)
    out = _run(lambda x: augment.simclr_view(x, _only()), image, mode)[0]
    np.testing.assert_allclose(out, image / 255.0, rtol=1e-6)
    out = _run(lambda x: augment.simclr_view(x, _only(image_size=4)), image, mode)[0]
    expected = tf.image.resize(image / 255.0, [4, 4], method="bicubic")
    np.testing.assert_allclose(out, tf.clip_by_value(expected, 0.0, 1.0), atol=1e-5)


@pytest.mark.parametrize("mode", MODES)
def test_simclr_view_grayscale_rate(mode):
    image = _colour_image()
    n = 2000
    out = _run(lambda x: augment.simclr_view(x, _only(grayscale=True)), image, mode, n)
    gray = _is_gray(out)
    np.testing.assert_array_equal(out[~gray], np.broadcast_to(image, out[~gray].shape))
    assert abs(gray.mean() - 0.2) < _rate_tolerance(0.2, n)


@pytest.mark.parametrize("mode", MODES)
def test_simclr_view_color_jitter_rate(mode):
    image = _colour_image()
    n = 2000
    out = _run(lambda x: augment.simclr_view(x, _only(color_jitter=True)), image, mode, n)
    jittered = np.abs(out - image).max(axis=(1, 2, 3)) > 1e-4
    assert abs(jittered.mean() - 0.8) < _rate_tolerance(0.8, n)


def test_simclr_view_follows_the_global_seed(global_seed):
    image = _colour_image(24, 32)
    cfg = augment.AugmentConfig(image_size=16)
    global_seed(7)
    first, second = augment.simclr_view(image, cfg), augment.simclr_view(image, cfg)
    global_seed(7)
    np.testing.assert_array_equal(augment.simclr_view(image, cfg), first)
    assert np.abs(first - second).max() > 1e-3


@pytest.mark.parametrize("mode", MODES)
def test_eval_view_is_identity_at_cifar_size(mode):
    image = np.random.default_rng(0).integers(0, 256, size=(32, 32, 3), dtype=np.uint8)
    out = _run(lambda x: augment.eval_view(x, 32), image, mode)[0]
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, image / 255.0, rtol=1e-6)


@pytest.mark.parametrize("mode", MODES)
def test_eval_view_center_crops_above_cifar_size(mode):
    image = np.random.default_rng(0).uniform(size=(64, 80, 3)).astype(np.float32)
    out = _run(lambda x: augment.eval_view(x, 48), image, mode)[0]
    # 0.875 * 64 = 56 pixels of the shorter side, centred: rows 4:60, cols 12:68.
    expected = tf.image.resize(image[4:60, 12:68], [48, 48], method="bicubic")
    np.testing.assert_allclose(out, tf.clip_by_value(expected, 0.0, 1.0), atol=1e-5)
    uncropped = _run(lambda x: augment.eval_view(x, 16), image, mode)[0]
    expected = tf.image.resize(image, [16, 16], method="bicubic")
    np.testing.assert_allclose(uncropped, tf.clip_by_value(expected, 0.0, 1.0), atol=1e-5)


@pytest.mark.parametrize("mode", MODES)
def test_two_views(mode):
    image = np.random.default_rng(0).integers(0, 256, size=(24, 32, 3), dtype=np.uint8)
    cfg = augment.AugmentConfig(image_size=16)
    example = {"image": image, "label": np.int64(7)}
    if mode == "eager":
        out = augment.two_views(example, cfg)
    else:
        ds = tf.data.Dataset.from_generator(
            lambda: iter([example]),
            output_signature={
                "image": tf.TensorSpec([None, None, 3], tf.uint8),
                "label": tf.TensorSpec([], tf.int64),
            },
        )
        out = next(iter(ds.map(lambda ex: augment.two_views(ex, cfg))))
    assert set(out) == {"view1", "view2", "label"}
    assert out["label"].dtype == tf.int64 and int(out["label"]) == 7
    for key in ("view1", "view2"):
        assert out[key].shape == (16, 16, 3) and out[key].dtype == tf.float32
    assert np.abs(out["view1"] - out["view2"]).max() > 1e-3
    # With every augmentation off, both views are the image itself.
    plain = augment.two_views({"image": image[:16, :16], "label": 7}, _only(image_size=16))
    np.testing.assert_allclose(plain["view1"], image[:16, :16] / 255.0, rtol=1e-6)
    np.testing.assert_allclose(plain["view2"], image[:16, :16] / 255.0, rtol=1e-6)


# --- AugmentConfig --------------------------------------------------------------------


def test_augment_config_defaults_follow_the_paper():
    cfg = augment.AugmentConfig()
    assert cfg.image_size == 224
    assert cfg.crop_area_range == (0.08, 1.0)
    assert cfg.aspect_ratio_range == pytest.approx((3 / 4, 4 / 3))
    assert (cfg.color_jitter_strength, cfg.color_jitter_prob) == (1.0, 0.8)
    assert (cfg.grayscale_prob, cfg.blur_prob) == (0.2, 0.5)
    assert all((cfg.crop, cfg.flip, cfg.color_jitter, cfg.grayscale, cfg.blur))
    listed = augment.AugmentConfig(crop_area_range=[0.2, 1.0])
    assert listed.crop_area_range == (0.2, 1.0)
    hash(listed)


@pytest.mark.parametrize(
    "kwargs,message",
    [
        (dict(image_size=0), "image_size"),
        (dict(image_size=2.5), "image_size"),
        (dict(color_jitter_prob=1.2), "color_jitter_prob"),
        (dict(grayscale_prob=-0.1), "grayscale_prob"),
        (dict(blur_prob=2.0), "blur_prob"),
        (dict(color_jitter_strength=-0.5), "color_jitter_strength"),
        (dict(crop_area_range=(0.5, 0.2)), "crop_area_range"),
        (dict(crop_area_range=(0.5, 1.5)), "crop_area_range"),
        (dict(aspect_ratio_range=(0.0, 1.0)), "aspect_ratio_range"),
    ],
)
def test_augment_config_validation(kwargs, message):
    with pytest.raises(ValueError, match=message):
        augment.AugmentConfig(**kwargs)
