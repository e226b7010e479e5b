"""The random parameters of SimCLR's augmentation, defined once for both paths.

Every distribution (crop area and aspect ratio, jitter factors and order, blur
sigma, the coin flips) is drawn here: `tf_simclr.data.augment` draws a scalar
per image, `tf_simclr.data.augment_batch` a vector of N per batch, from the same
functions. Values follow Appendix A of Chen et al. (2020) and the official
google-research/simclr `data_util.py`.
"""

from __future__ import annotations

import tensorflow as tf

from tf_simclr.choices import COLOR_JITTER_IMPLS

# Appendix A, "Random crop and resize": the crop covers 8% to 100% of the image
# area, with aspect ratio in [3/4, 4/3].
CROP_AREA_RANGE = (0.08, 1.0)
ASPECT_RATIO_RANGE = (3 / 4, 4 / 3)
# Reference `crop_and_resize`: the crop must cover at least 10% of the
# whole-image box, so in effect crops smaller than 10% of the area never occur.
MIN_OBJECT_COVERED = 0.1
# Appendix A, "Gaussian blur": sigma in [0.1, 2.0], kernel 10% of the image side.
BLUR_SIGMA_RANGE = (0.1, 2.0)
BLUR_PROB = 0.5
# Number of rejection-sampling attempts for a crop box (reference
# `distorted_bounding_box_crop`).
CROP_MAX_ATTEMPTS = 100


# The crop box is the exception: the per-image op uses TensorFlow's
# SampleDistortedBoundingBox kernel (`augment.sample_crop_box`) and the batched op
# re-implements that kernel's algorithm (`augment_batch.sample_crop_boxes`).


class RandomStream:
    """Uniform random numbers for the augmentation samplers.

    Without a seed every draw is a stateful `tf.random.uniform` op, governed by
    `tf.random.set_seed` like any other TF random op. With a seed (int `[2]`
    tensor) every draw is a `tf.random.stateless_uniform` with its own sub-seed
    (the seed folded with the draw's index), so the same seed gives the same
    draws in every replica, trace and process: that is how the train step gives
    each step and replica its own, reproducible augmentation.
    """

    def __init__(self, seed: tf.Tensor | None = None):
        self._seed = None if seed is None else tf.cast(seed, tf.int64)
        self._draws = 0

    def uniform(
        self, shape, minval: float | tf.Tensor = 0.0, maxval: float | tf.Tensor = 1.0
    ) -> tf.Tensor:
        """float32 of `shape`, uniform in [minval, maxval)."""
        if self._seed is None:
            return tf.random.uniform(shape, minval, maxval)
        seed = tf.random.experimental.stateless_fold_in(self._seed, self._draws)
        self._draws += 1
        return tf.random.stateless_uniform(shape, seed, minval, maxval)


def sample_apply(rng: RandomStream, p: float | tf.Tensor, shape=()) -> tf.Tensor:
    """bool of `shape`: True with probability `p` (in [0, 1]), independently."""
    return rng.uniform(shape) < tf.cast(p, tf.float32)


def jitter_max_deltas(strength: float) -> tuple[float, float, float, float]:
    """Maximum (brightness, contrast, saturation, hue) changes at colour strength s.

    Appendix A: 0.8 s for brightness, contrast and saturation, 0.2 s for hue.
    """
    # Deviation: the hue shift is capped at 0.5, which already reaches every
    # hue; the reference (tf.image.random_hue) raises for s > 2.5 instead.
    return 0.8 * strength, 0.8 * strength, 0.8 * strength, min(0.2 * strength, 0.5)


def sample_brightness(rng: RandomStream, max_delta: float, impl: str, shape=()) -> tf.Tensor:
    """The brightness change of `impl`, float32 of `shape`.

    "simclrv2" (the reference default): a factor ~ U[max(0, 1 - d), 1 + d] that
    multiplies the image. "simclrv1" (the v1 paper's results, its Appendix A
    pseudo-code, `tf.image.random_brightness`): a delta ~ U[-d, d] added to it.
    """
    if impl == "simclrv2":
        return sample_jitter_factor(rng, max_delta, shape)
    if impl == "simclrv1":
        return rng.uniform(shape, -max_delta, max_delta)
    raise ValueError(f"color_jitter_impl must be one of {COLOR_JITTER_IMPLS}, got {impl!r}.")


def sample_jitter_factor(rng: RandomStream, max_delta: float, shape=()) -> tf.Tensor:
    """Brightness, contrast or saturation factors ~ U[max(0, 1 - d), 1 + d]."""
    return rng.uniform(shape, max(0.0, 1.0 - max_delta), 1.0 + max_delta)


def sample_hue_delta(rng: RandomStream, max_delta: float, shape=()) -> tf.Tensor:
    """Hue shifts ~ U[-d, d] (in turns: 1.0 is the full hue circle)."""
    return rng.uniform(shape, -max_delta, max_delta)


def sample_jitter_order(rng: RandomStream, shape=()) -> tf.Tensor:
    """int32 `[*shape, 4]`: independent uniformly random permutations of 0..3.

    The rank order of four uniform numbers is a uniformly random permutation.
    """
    keys = rng.uniform([*shape, 4])
    return tf.argsort(keys, axis=-1, stable=True, direction="ASCENDING")


def sample_blur_sigma(
    rng: RandomStream, shape=(), sigma_range: tuple[float, float] = BLUR_SIGMA_RANGE
) -> tf.Tensor:
    """Gaussian-blur sigmas in pixels ~ U[sigma_range] (Appendix A)."""
    return rng.uniform(shape, sigma_range[0], sigma_range[1])


def blur_kernel_size(image_height: int | tf.Tensor) -> int | tf.Tensor:
    """Appendix A: the blur kernel is 10% of the image height."""
    return image_height // 10


def gaussian_kernel(radius: int | tf.Tensor, sigma: float | tf.Tensor) -> tf.Tensor:
    """Normalised 1-D Gaussian kernels of length `2 * radius + 1`.

    Args:
      radius: int or int32 scalar >= 0.
      sigma: float32 of any shape `[...]`, > 0.

    Returns:
      float32 `[..., 2 * radius + 1]`, each kernel summing to 1.
    """
    x = tf.cast(tf.range(-radius, radius + 1), tf.float32)
    sigma = tf.cast(sigma, tf.float32)[..., tf.newaxis]
    kernel = tf.exp(-tf.square(x) / (2.0 * tf.square(sigma)))
    return kernel / tf.reduce_sum(kernel, axis=-1, keepdims=True)
