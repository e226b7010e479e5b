"""The augmentation's random parameters against the paper, and the seeded stream.

The per-image and batched paths draw every parameter from the samplers of
`tf_simclr.data.augment_params`, so the distribution tests that compare the
two paths (`test_augment_batch.py`) cannot see a wrong range in a sampler:
both paths would share it. Here the ranges are pinned to Appendix A of Chen et
al. (2020): colour strength s gives brightness, contrast and saturation factors
in [1 - 0.8 s, 1 + 0.8 s] and a hue shift in [-0.2 s, 0.2 s]; the blur sigma is
in [0.1, 2.0] and the kernel is 10% of the image side.

Those tests are unseeded; the train step (`--augment_impl=device`) draws from a
seeded `RandomStream`, one sub-seed per draw. The last tests check, on seeded
draws, that the coin flips of one view are independent of each other.

Parameters are drawn directly (thousands per test, at no cost) or on 8 px views.
"""

import math

import numpy as np
import pytest
import tensorflow as tf

from tf_simclr.data import augment, augment_params
from tf_simclr.data import augment_batch as ab
from tf_simclr.data import blur_batch as bb
from tf_simclr.data import color_batch as cb
from tf_simclr.data.augment import AugmentConfig
from tf_simclr.data.augment_params import RandomStream

N = 4000
SEED = tf.constant([11, 12])


def _assert_uniform(samples, low, high, what):
    """One-sample Kolmogorov-Smirnov test against U[low, high] at level 1e-4, and the
    samples fill the interval (they come within 1% of its width of both ends)."""
    samples = np.sort(np.ravel(samples))
    n = len(samples)
    cdf = np.clip((samples - low) / (high - low), 0.0, 1.0)
    distance = max(np.max(np.arange(1, n + 1) / n - cdf), np.max(cdf - np.arange(n) / n))
    critical = math.sqrt(-0.5 * math.log(1e-4 / 2)) / math.sqrt(n)
    assert distance < critical, f"{what}: KS distance {distance:.3f} >= {critical:.3f}"
    margin = 0.01 * (high - low)
    assert low <= samples[0] < low + margin and high - margin < samples[-1] <= high, what


def _assert_rate(flags, p, what):
    """Boolean samples: rate within four binomial standard deviations of p."""
    flags = np.asarray(flags)
    tolerance = 4 * math.sqrt(p * (1 - p) / len(flags))
    assert abs(flags.mean() - p) < tolerance, (what, flags.mean(), p, tolerance)


def _assert_independent(a, b, what):
    """Two boolean samples: their correlation (phi) within four standard errors of 0."""
    phi = np.corrcoef(np.asarray(a, float), np.asarray(b, float))[0, 1]
    assert abs(phi) < 4 / math.sqrt(len(a)), (what, phi)


# --- Ranges ---------------------------------------------------------------------------


@pytest.mark.parametrize("strength", [0.5, 1.0])
def test_color_jitter_ranges_follow_the_paper(strength):
    s = strength
    assert augment_params.jitter_max_deltas(s) == pytest.approx(
        (0.8 * s, 0.8 * s, 0.8 * s, 0.2 * s)
    )
    # The draws of both paths (`augment._jitter_ops` and the batch sampler below use
    # the same samplers), through the batched path's own sampler.
    _, (brightness, contrast, saturation, hue) = cb.sample_color_jitter(RandomStream(SEED), N, s)
    for name, factors in (
        ("brightness", brightness),
        ("contrast", contrast),
        ("saturation", saturation),
    ):
        _assert_uniform(factors.numpy(), 1 - 0.8 * s, 1 + 0.8 * s, f"s={s} {name}")
    _assert_uniform(hue.numpy(), -0.2 * s, 0.2 * s, f"s={s} hue")
    # "simclrv1" (`--color_jitter_impl`): the brightness is a delta in [-0.8 s, 0.8 s]
    # (added to the image); the other three are drawn as for "simclrv2".
    _, (delta, *others) = cb.sample_color_jitter(RandomStream(SEED), N, s, impl="simclrv1")
    _assert_uniform(delta.numpy(), -0.8 * s, 0.8 * s, f"s={s} simclrv1 brightness")
    np.testing.assert_array_equal(others[0], contrast)


def test_hue_shift_is_capped_at_half_a_turn():
    # Documented deviation: 0.2 s is capped at 0.5 (the reference raises for s > 2.5).
    assert augment_params.jitter_max_deltas(3.0)[3] == 0.5


def test_blur_sigma_range_and_kernel_size_follow_the_paper():
    assert augment_params.BLUR_SIGMA_RANGE == (0.1, 2.0)
    _, sigma = bb.sample_blur(RandomStream(SEED), N, 0.5)
    _assert_uniform(sigma.numpy(), 0.1, 2.0, "blur sigma")
    for side, kernel in [(224, 22), (96, 9), (40, 4), (32, 3), (19, 1)]:
        assert augment_params.blur_kernel_size(side) == kernel, side


def _support_radius(views, centre):
    """Largest distance (in rows or columns) from `centre` of a pixel a view changed."""
    rows, cols = np.nonzero(views.max(axis=(0, 3)) > 1e-7)
    return int(max(np.abs(rows - centre).max(), np.abs(cols - centre).max()))


def test_both_blurs_use_a_kernel_of_10_percent_of_the_side():
    """A point of light at 40 px is spread over radius 40 // 10 // 2 = 2, not further."""
    side, centre, n = 40, 20, 32
    image = np.zeros((side, side, 3), np.float32)
    image[centre, centre] = 1.0
    # Per image: sigma ~ U[0.1, 2]; of 32 draws some exceed 0.5, reaching distance 2.
    per_image = np.stack([augment.random_blur(image, p=1.0).numpy() for _ in range(n)])
    assert _support_radius(per_image, centre) == 2
    cfg = AugmentConfig(
        image_size=side, crop=False, flip=False, color_jitter=False, grayscale=False, blur_prob=1.0
    )
    batched = ab.simclr_view_batch(np.broadcast_to(image, (n, side, side, 3)), cfg, seed=SEED)
    assert _support_radius(batched.numpy(), centre) == 2


# --- The seeded stream ----------------------------------------------------------------


def test_seeded_stream_draws_independent_coin_flips():
    """The draws of one `simclr_view_batch` call, in its order: flip, jitter, grayscale."""
    rng = RandomStream(SEED)
    flip, jitter, gray = (augment_params.sample_apply(rng, p, [N]).numpy() for p in (0.5, 0.8, 0.2))
    _assert_rate(flip, 0.5, "flip")
    _assert_rate(jitter, 0.8, "jitter")
    _assert_rate(gray, 0.2, "grayscale")
    _assert_independent(flip, gray, "flip, grayscale")
    _assert_independent(flip, jitter, "flip, jitter")
    _assert_independent(jitter, gray, "jitter, grayscale")
    _assert_rate(gray[jitter], 0.2, "grayscale of jittered")
    _assert_rate(gray[~jitter], 0.2, "grayscale of not jittered")


def _ramp_image(side=8):
    """uint8: luminance rises from left to right, channels clearly unequal."""
    ramp = np.linspace(0.1, 0.9, side)[None, :].repeat(side, 0)
    image = np.stack([0.9 * ramp + 0.1, ramp, 0.6 * ramp], axis=-1)
    return np.round(image * 255).astype(np.uint8)


def _is_gray(views):
    return (views.max(axis=-1) - views.min(axis=-1)).max(axis=(1, 2)) < 1e-6


def test_seeded_views_flip_jitter_and_grayscale_independently():
    image = _ramp_image()
    images = np.broadcast_to(image, (N, *image.shape))
    only = dict(crop=False, blur=False, image_size=8)

    cfg = AugmentConfig(**only, color_jitter=False)  # flip and grayscale
    views = ab.simclr_view_batch(images, cfg, seed=SEED).numpy()
    flipped = views[:, :, :4].mean(axis=(1, 2, 3)) > views[:, :, 4:].mean(axis=(1, 2, 3))
    gray = _is_gray(views)
    _assert_rate(flipped, 0.5, "flip")
    _assert_rate(gray, 0.2, "grayscale")
    _assert_independent(flipped, gray, "flip, grayscale")

    cfg = AugmentConfig(**only, flip=False)  # jitter and grayscale
    views = ab.simclr_view_batch(images, cfg, seed=SEED).numpy()
    gray = _is_gray(views)
    plain = image / 255.0
    gray_image = augment.to_grayscale(plain.astype(np.float32)).numpy()
    unjittered = np.where(gray[:, None, None, None], gray_image, plain)
    jittered = np.abs(views - unjittered).max(axis=(1, 2, 3)) > 1e-4
    _assert_rate(jittered, 0.8, "jitter")
    _assert_rate(gray, 0.2, "grayscale")
    _assert_rate(gray[jittered], 0.2, "grayscale of jittered")
    _assert_rate(gray[~jittered], 0.2, "grayscale of not jittered")
