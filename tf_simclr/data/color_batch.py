"""SimCLR's colour distortion of whole batches (`augment_batch`'s colour stage).

`color_jitter_batch` is `augment.color_jitter` of N images at once, each with
its own factors and op order (drawn by `tf_simclr.data.augment_params`), with
the grayscale of `augment.to_grayscale` fused into its last pass;
`random_grayscale_batch` is the grayscale alone.

The ops work on planar images `[N, 3, H, W]`: on a CPU, XLA vectorises their
per-pixel arithmetic along W, not along 3 interleaved channels.
"""

from __future__ import annotations

import tensorflow as tf

from tf_simclr.choices import COLOR_JITTER_IMPL
from tf_simclr.data.augment_params import (
    RandomStream,
    jitter_max_deltas,
    sample_apply,
    sample_brightness,
    sample_hue_delta,
    sample_jitter_factor,
    sample_jitter_order,
)


def _per_image(x: tf.Tensor) -> tf.Tensor:
    """`[N]` -> `[N, 1, 1, 1]`, to scale `[N, 3, H, W]` per image."""
    return x[:, tf.newaxis, tf.newaxis, tf.newaxis]


def adjust_brightness_planar(images: tf.Tensor, factor: tf.Tensor) -> tf.Tensor:
    """Multiplies each image by its factor (`augment`'s "simclrv2" brightness)."""
    return images * _per_image(factor)


def shift_brightness_planar(images: tf.Tensor, delta: tf.Tensor) -> tf.Tensor:
    """Adds each image's delta (`augment`'s "simclrv1" brightness)."""
    return images + _per_image(delta)


def adjust_contrast_planar(images: tf.Tensor, factor: tf.Tensor) -> tf.Tensor:
    """`tf.image.adjust_contrast` with one factor per image `[N]`."""
    mean = tf.reduce_mean(images, axis=[2, 3], keepdims=True)
    return (images - mean) * _per_image(factor) + mean


def _value_and_chroma(images: tf.Tensor) -> tuple[tf.Tensor, ...]:
    r, g, b = images[:, 0:1], images[:, 1:2], images[:, 2:3]
    value = tf.maximum(tf.maximum(r, g), b)
    chroma = value - tf.minimum(tf.minimum(r, g), b)
    return r, g, b, value, chroma


def adjust_saturation_planar(images: tf.Tensor, factor: tf.Tensor) -> tf.Tensor:
    """`tf.image.adjust_saturation` (HSV saturation x factor, clipped to [0, 1])
    with one factor per image `[N]`, without converting to HSV.

    Scaling S = (max - min) / max by f at fixed hue and value V = max moves
    every channel c to max - (max - c) * min(f, max / (max - min)); the min
    is the clip of S at 1. Gray pixels (max == min) are unchanged.
    """
    _, _, _, value, chroma = _value_and_chroma(images)
    scale = tf.minimum(_per_image(factor), tf.math.divide_no_nan(value, chroma))
    return value - (value - images) * scale


def adjust_hue_planar(images: tf.Tensor, delta: tf.Tensor) -> tf.Tensor:
    """`tf.image.adjust_hue` with one hue shift per image `[N]` (in turns).

    The HSV round trip in closed form: the hue h in sixths of a turn, shifted
    and wrapped into [0, 6); each channel is V - C * clip(min(k, 4 - k), 0, 1)
    with k = (n + h) mod 6, n = 5, 3, 1 for R, G, B (C = chroma). Written with
    floor instead of floormod, which XLA on CPU does not vectorise.
    """
    r, g, b, value, chroma = _value_and_chroma(images)
    inverse = tf.math.divide_no_nan(1.0, chroma)
    hue = tf.where(
        value == r,
        (g - b) * inverse,
        tf.where(value == g, 2.0 + (b - r) * inverse, 4.0 + (r - g) * inverse),
    )
    hue += 6.0 * _per_image(delta)
    hue -= 6.0 * tf.floor(hue / 6.0)

    def channel(n: float) -> tf.Tensor:
        k = n + hue
        k = tf.where(k >= 6.0, k - 6.0, k)
        return value - chroma * tf.clip_by_value(tf.minimum(k, 4.0 - k), 0.0, 1.0)

    return tf.concat([channel(5.0), channel(3.0), channel(1.0)], axis=1)


_JITTER_OPS = (
    adjust_brightness_planar,
    adjust_contrast_planar,
    adjust_saturation_planar,
    adjust_hue_planar,
)


def jitter_ops(impl: str = COLOR_JITTER_IMPL) -> tuple:
    """The four planar ops of `impl`, indexed as `augment.color_jitter_order`."""
    if impl == "simclrv1":
        return (shift_brightness_planar, *_JITTER_OPS[1:])
    return _JITTER_OPS


def to_gray(images: tf.Tensor, axis: int) -> tf.Tensor:
    """`tf.image.rgb_to_grayscale` weights (ITU-R 601), written element-wise so
    that XLA fuses it (the tf.image op is a matrix product); keeps `axis` of size 1."""
    r, g, b = tf.split(images, 3, axis=axis)
    return 0.2989 * r + 0.5870 * g + 0.1140 * b


@tf.function(jit_compile=True, reduce_retracing=True)
def _jitter_step(
    images: tf.Tensor,
    which: tf.Tensor,
    params: tuple[tf.Tensor, ...],
    gray: tf.Tensor,
    first: bool,
    last: bool,
    impl: str = COLOR_JITTER_IMPL,
) -> tf.Tensor:
    """One step of the per-image op sequences: image n gets op `which[n]`
    (0 ... 3 as `jitter_ops(impl)`; 4 leaves it unchanged), then the clip.

    Every op is computed for every image and the right one selected: XLA fuses
    it all into one pass over the pixels (plus one for the contrast means).
    Each step is its own XLA program so the steps' results are materialised;
    in one program XLA would recompute earlier steps inside later ones. The
    first step reads `[N, H, W, 3]`, the last writes it, applying the
    grayscale of the images in `gray`; in between the images are planar.
    """
    if first:
        images = tf.transpose(images, [0, 3, 1, 2])
    out = images
    for k, op in enumerate(jitter_ops(impl)):
        out = tf.where(_per_image(tf.equal(which, k)), op(images, params[k]), out)
    out = tf.clip_by_value(out, 0.0, 1.0)
    if last:
        out = tf.where(_per_image(gray), to_gray(out, axis=1), out)
        out = tf.transpose(out, [0, 2, 3, 1])
    return out


def sample_color_jitter(
    rng: RandomStream,
    n: tf.Tensor | int,
    strength: float,
    apply: tf.Tensor | None = None,
    random_order: bool = True,
    impl: str = COLOR_JITTER_IMPL,
) -> tuple[tf.Tensor, tuple[tf.Tensor, ...]]:
    """The colour-jitter parameters of N images, as `augment.color_jitter` draws them.

    Args:
      rng: the random stream.
      n: number of images.
      strength: colour strength s > 0 (Python float).
      apply: optional bool `[N]`: jitter only these images (the p = 0.8 draw).
      random_order: a random op order per image; else b, c, s, h for all.
      impl: "simclrv2" or "simclrv1" (`augment_params.sample_brightness`).

    Returns:
      `(order, params)`: int32 `[N, 4]`, each image's op indices into
      `jitter_ops(impl)` step by step (4, past the last op, for "no op": the
      images not in `apply`), and the brightness change (factor or delta), the
      contrast and saturation factors and the hue shift, float32 `[N]` each.
    """
    max_b, max_c, max_s, max_h = jitter_max_deltas(strength)
    params = (
        sample_brightness(rng, max_b, impl, [n]),
        sample_jitter_factor(rng, max_c, [n]),
        sample_jitter_factor(rng, max_s, [n]),
        sample_hue_delta(rng, max_h, [n]),
    )
    if random_order:
        order = sample_jitter_order(rng, [n])
    else:
        order = tf.tile(tf.range(4, dtype=tf.int32)[tf.newaxis], [n, 1])
    if apply is not None:
        order = tf.where(apply[:, tf.newaxis], order, len(_JITTER_OPS))
    return order, params


def jitter_one_image(
    image: tf.Tensor, order: tf.Tensor, params: tf.Tensor, impl: str = COLOR_JITTER_IMPL
) -> tf.Tensor:
    """The colour jitter of one planar image `[1, 3, H, W]`, for use inside XLA.

    Runs only the op each step names (`tf.switch_case`), each followed by the
    clip; `order` is int32 `[4]` and `params` float32 `[4]` (one row of
    `sample_color_jitter`'s results).
    """

    def step(image, which):
        branches = [
            lambda k=k, op=op: tf.clip_by_value(op(image, params[k : k + 1]), 0.0, 1.0)
            for k, op in enumerate(jitter_ops(impl))
        ]
        return tf.switch_case(which, branches, default=lambda: image)

    for i in range(4):
        image = step(image, order[i])
    return image


def color_jitter_batch(
    images: tf.Tensor,
    strength: float,
    rng: RandomStream,
    apply: tf.Tensor | None = None,
    random_order: bool = True,
    gray: tf.Tensor | None = None,
    impl: str = COLOR_JITTER_IMPL,
) -> tf.Tensor:
    """`augment.color_jitter` of each image, with its own factors and order.

    Args:
      images: float32 `[N, H, W, 3]` in [0, 1], static H, W.
      strength: colour strength s >= 0 (Python float); 0 is the identity.
      rng: the random stream.
      apply: optional bool `[N]`: jitter only these images (the p = 0.8 draw).
      random_order: a random op order per image; else b, c, s, h for all.
      gray: optional bool `[N]`: then convert these images to gray
        (`augment.to_grayscale`), in the same pass over the pixels.
      impl: "simclrv2" (multiplicative brightness) or "simclrv1" (additive).

    Returns:
      float32 `[N, H, W, 3]` in [0, 1].
    """
    n = tf.shape(images)[0]
    if gray is None:
        gray = tf.zeros([n], tf.bool)
    if strength <= 0:
        return grayscale_where(images, gray)
    order, params = sample_color_jitter(rng, n, strength, apply, random_order, impl)
    for step in range(4):
        images = _jitter_step(images, order[:, step], params, gray, step == 0, step == 3, impl)
    return tf.ensure_shape(images, [None, *images.shape[1:]])


@tf.function(jit_compile=True, reduce_retracing=True)
def grayscale_where(images: tf.Tensor, gray: tf.Tensor) -> tf.Tensor:
    """`augment.to_grayscale` of the images `[N, H, W, 3]` where `gray` (bool `[N]`)."""
    return tf.where(_per_image(gray), to_gray(images, axis=3), images)


def random_grayscale_batch(images: tf.Tensor, rng: RandomStream, p: float) -> tf.Tensor:
    """`augment.to_grayscale` of each image with probability `p`."""
    return grayscale_where(images, sample_apply(rng, p, [tf.shape(images)[0]]))
