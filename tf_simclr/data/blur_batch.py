"""SimCLR's Gaussian blur of whole batches (`augment_batch`'s blur stage).

`random_blur_batch` is `augment.random_blur` of N images at once, each with its
own coin flip and sigma (drawn by `tf_simclr.data.augment_params`);
`blur_planar` is the same blur of one planar image, for the one-by-one path.
"""

from __future__ import annotations

import tensorflow as tf

from tf_simclr.data.augment_params import (
    BLUR_SIGMA_RANGE,
    RandomStream,
    blur_kernel_size,
    gaussian_kernel,
    sample_apply,
    sample_blur_sigma,
)


def blur_radius(kernel_size: int, height: int, width: int) -> int:
    """The blur's radius, `kernel_size // 2` capped at `min(H, W) - 1` as in the
    per-image op (REFLECT padding needs it); 0 or less means no blur."""
    return min(kernel_size // 2, min(height, width) - 1)


def sample_blur(
    rng: RandomStream, n, p: float, sigma_range: tuple[float, float] = BLUR_SIGMA_RANGE
) -> tuple[tf.Tensor, tf.Tensor]:
    """The blur draws of N images, in the order both batched paths make them:
    bool `[N]` (blur this image, probability `p`) and its sigma, float32 `[N]`."""
    return sample_apply(rng, p, [n]), sample_blur_sigma(rng, [n], sigma_range)


def gaussian_blur_batch(images: tf.Tensor, kernel_size: int, sigma: tf.Tensor) -> tf.Tensor:
    """`augment.gaussian_blur` (REFLECT padding) with one sigma per image.

    The N images' channels are stacked into the channels of one image, so
    that one depthwise convolution per direction applies each image's kernel
    to its own channels.

    Args:
      images: float32 `[N, H, W, C]` with static H, W and C.
      kernel_size: Python int >= 0 (radius `kernel_size // 2`, capped at
        `min(H, W) - 1` as in the per-image op).
      sigma: float32 `[N]`, > 0.

    Returns:
      float32 `[N, H, W, C]`.
    """
    _, height, width, channels = images.shape
    radius = blur_radius(kernel_size, height, width)
    if radius <= 0:
        return images
    n = tf.shape(images)[0]
    kernel = gaussian_kernel(radius, sigma)  # [N, K]
    # One filter per (image, channel), in the order of the stacked channels.
    filters = tf.reshape(tf.repeat(kernel, channels, axis=0), [-1, 2 * radius + 1])
    filters = tf.transpose(filters)  # [K, N * C]
    stacked = tf.reshape(tf.transpose(images, [1, 2, 0, 3]), [1, height, width, -1])
    pad = [[0, 0], [radius, radius], [radius, radius], [0, 0]]
    stacked = tf.pad(stacked, pad, mode="REFLECT")
    strides = [1, 1, 1, 1]
    stacked = tf.nn.depthwise_conv2d(
        stacked, filters[tf.newaxis, :, :, tf.newaxis], strides, "VALID"
    )
    stacked = tf.nn.depthwise_conv2d(
        stacked, filters[:, tf.newaxis, :, tf.newaxis], strides, "VALID"
    )
    out = tf.transpose(tf.reshape(stacked, [height, width, n, channels]), [2, 0, 1, 3])
    return tf.ensure_shape(out, images.shape)


def random_blur_batch(
    images: tf.Tensor,
    rng: RandomStream,
    p: float,
    sigma_range: tuple[float, float] = BLUR_SIGMA_RANGE,
    kernel_size: int | None = None,
) -> tf.Tensor:
    """`augment.random_blur` of each image: blurred with probability `p`.

    Only the images to blur are convolved (partitioned out and stitched back).
    `kernel_size` (Python int) defaults to `blur_kernel_size` of the height, 10%
    (Appendix A); `tf_simclr.layers.RandomGaussianBlur` sets other fractions.
    """
    n = tf.shape(images)[0]
    blur, sigma = sample_blur(rng, n, p, sigma_range)
    blur = tf.cast(blur, tf.int32)
    if kernel_size is None:
        kernel_size = blur_kernel_size(images.shape[1])
    index = tf.range(n)
    keep, chosen = tf.dynamic_partition(images, blur, 2)
    keep_index, chosen_index = tf.dynamic_partition(index, blur, 2)
    chosen.set_shape([None, *images.shape[1:]])
    # A batch may draw no image to blur, and the padding and convolution ops reject
    # empty tensors.
    blurred = tf.cond(
        tf.size(chosen_index) > 0,
        lambda: gaussian_blur_batch(chosen, kernel_size, tf.gather(sigma, chosen_index)),
        lambda: chosen,
    )
    out = tf.dynamic_stitch([keep_index, chosen_index], [keep, blurred])
    return tf.ensure_shape(out, images.shape)


def blur_planar(image: tf.Tensor, kernel: tf.Tensor) -> tf.Tensor:
    """`augment.gaussian_blur` (REFLECT padding) of a planar image `[1, C, H, W]`
    with a symmetric 1-D kernel `[2 r + 1]` (r < H, W), as sums of shifted slices."""
    radius = (kernel.shape[0] - 1) // 2
    for axis in (2, 3):
        side = image.shape[axis]
        pad = [[0, 0]] * 4
        pad[axis] = [radius, radius]
        padded = tf.pad(image, pad, mode="REFLECT")

        def tap(i: int, padded=padded, axis=axis, side=side) -> tf.Tensor:
            begin, size = [0, 0, 0, 0], [-1, -1, -1, -1]
            begin[axis], size[axis] = i, side
            return tf.slice(padded, begin, size)

        image = kernel[radius] * tap(radius)
        for i in range(radius):
            image += kernel[i] * (tap(i) + tap(2 * radius - i))
    return image
