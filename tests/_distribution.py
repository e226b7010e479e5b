"""Statistical checks shared by the augmentation tests (`tests/data/test_augment_batch.py`,
`tests/test_layers.py`): do two samples, or a sample and a rate, agree?

Rates are compared with four binomial standard deviations; continuous quantities with
the two-sample Kolmogorov-Smirnov distance at significance 1e-4, whose critical value
follows from the two sample sizes. Import it as `from tests import _distribution`.
"""

import math

import numpy as np


def ks_distance(a, b):
    """Two-sample Kolmogorov-Smirnov statistic: the largest gap of the two ECDFs."""
    a, b = np.sort(np.ravel(a)), np.sort(np.ravel(b))
    grid = np.concatenate([a, b])
    cdf_a = np.searchsorted(a, grid, side="right") / len(a)
    cdf_b = np.searchsorted(b, grid, side="right") / len(b)
    return float(np.max(np.abs(cdf_a - cdf_b)))


def ks_critical(n, m, alpha=1e-4):
    """KS distance above which two samples of sizes n, m differ at level alpha."""
    return math.sqrt(-0.5 * math.log(alpha / 2)) * math.sqrt((n + m) / (n * m))


def assert_same_distribution(a, b, what):
    distance, critical = ks_distance(a, b), ks_critical(len(a), len(b))
    assert distance < critical, f"{what}: KS distance {distance:.3f} >= {critical:.3f}"


def assert_different_distribution(a, b, what):
    distance, critical = ks_distance(a, b), ks_critical(len(a), len(b))
    assert distance >= critical, f"{what}: KS distance {distance:.3f} < {critical:.3f}"


def assert_same_rate(a, b, what):
    """Boolean samples a, b: rates within four standard deviations of their difference."""
    p = (np.sum(a) + np.sum(b)) / (len(a) + len(b))
    sd = math.sqrt(max(p * (1 - p), 1e-12) * (1 / len(a) + 1 / len(b)))
    assert abs(np.mean(a) - np.mean(b)) < 4 * sd + 1e-9, (what, np.mean(a), np.mean(b))


def assert_rate(flags, p, what):
    """Boolean sample: rate within four binomial standard deviations of p."""
    tolerance = 4 * math.sqrt(p * (1 - p) / len(flags))
    assert abs(np.mean(flags) - p) < tolerance, (what, np.mean(flags), p, tolerance)


def colour_image(height=16, width=16, seed=0):
    """uint8 [H, W, 3] with clearly unequal channels everywhere and some texture."""
    rng = np.random.default_rng(seed)
    image = rng.uniform(0.2, 0.8, size=(height, width, 3))
    image[..., 0] = 0.85 - 0.1 * image[..., 1]
    image[..., 2] = 0.15 + 0.1 * image[..., 1]
    return np.round(image * 255).astype(np.uint8)


def is_gray(images):
    """bool [N]: each image of [N, H, W, 3] has three equal channels."""
    spread = images.max(axis=-1) - images.min(axis=-1)
    return spread.reshape(len(images), -1).max(axis=1) < 1e-6
