"""SimCLR augmentation of whole batches: the ops of `augment`, vectorised.

`simclr_view_batch` maps a batch of decoded images `[N, H, W, 3]` to N views
with the same distribution as N independent calls of `augment.simclr_view`:
every random parameter (crop box, flip, jitter factors and order, grayscale,
blur sigma) is drawn per sample, from the samplers of `augment_params` (one
definition of each distribution), and the ops run once on the batch instead of
N times; the colour and blur stages are `color_batch` and `blur_batch`. It runs in
`tf.data` after batching (`--augment_impl=batched`) and inside the train step
on the accelerator (`--augment_impl=device`, `SimCLR(augment=...)`).

Deviations from the per-image path, all for batching:

- Crops are resized bilinearly (`crop_and_resize_batch`, equal to
  `tf.image.resize(crop, method="bilinear")`) instead of bicubically: TF has
  no per-box bicubic resize. The sampling grid is the same, only the
  interpolation kernel differs (bilinear is slightly smoother and never
  overshoots).
- The crop box comes from `sample_crop_boxes`, a vectorised re-implementation
  of the SampleDistortedBoundingBox kernel that `augment.sample_crop_box`
  calls (same algorithm, different random numbers).

The random parameters are drawn for the whole batch at once (cheap bookkeeping
on `[N]` vectors); the pixel work then runs one of two ways, with equal
results for equal draws (`one_by_one`):

- one image at a time inside a single XLA program per view batch (the default
  without a GPU or TPU, and always in `tf.data`, which runs on the host): each
  224 px view stays in the CPU's cache from crop to blur, and every image runs
  only the colour ops and the blur it drew;
- batch-wide (for accelerators): the crop, each colour-jitter step and the
  grayscale as small XLA programs over the whole batch (each jitter step
  evaluates all four ops and selects one per image), the blur as a depthwise
  convolution of the images that are blurred.

Images of different sizes can share a batch: pad them to a common size
(top-left aligned, e.g. `tf.data.Dataset.padded_batch`) and pass each image's
true `[height, width]` as `sizes`; crops then only ever see each image's own
pixels.
"""

from __future__ import annotations

import dataclasses

import keras
import tensorflow as tf

from tf_simclr.data.augment import AugmentConfig
from tf_simclr.data.augment_params import (
    ASPECT_RATIO_RANGE,
    CROP_AREA_RANGE,
    CROP_MAX_ATTEMPTS,
    MIN_OBJECT_COVERED,
    RandomStream,
    blur_kernel_size,
    gaussian_kernel,
    sample_apply,
)
from tf_simclr.data.blur_batch import blur_planar, blur_radius, random_blur_batch, sample_blur
from tf_simclr.data.color_batch import (
    color_jitter_batch,
    grayscale_where,
    jitter_one_image,
    sample_color_jitter,
    to_gray,
)


def _rint(x: tf.Tensor) -> tf.Tensor:
    """Round half to even, like C's lrintf in the default rounding mode."""
    return tf.math.rint(x)


def sample_crop_boxes(
    heights: tf.Tensor,
    widths: tf.Tensor,
    rng: RandomStream,
    area_range: tuple[float, float] = CROP_AREA_RANGE,
    aspect_ratio_range: tuple[float, float] = ASPECT_RATIO_RANGE,
    max_attempts: int = CROP_MAX_ATTEMPTS,
) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor]:
    """One random crop box per image, distributed as `augment.sample_crop_box`.

    The algorithm of TF's SampleDistortedBoundingBox kernel with the whole
    image as the object and `MIN_OBJECT_COVERED`, run for all images and all
    attempts at once: each attempt draws an aspect ratio r ~ U[ratio range],
    then a height uniformly among the integers whose `round(h * r) x h` box has
    an area in the area range (with the kernel's rounding fix-ups), and is
    accepted if the box fits and covers at least `MIN_OBJECT_COVERED` of the
    image. The first accepted attempt wins; if none is, the whole image.
    Offsets are uniform in `[0, H - h)` (the kernel never touches the last
    row/column unless h == H).

    Args:
      heights, widths: int32 `[N]`, each image's size in pixels (>= 1).
      rng: the random stream.
      area_range, aspect_ratio_range, max_attempts: as `augment.sample_crop_box`.

    Returns:
      int32 `[N]` each: `(offset_y, offset_x, height, width)`.
    """
    image_h = tf.cast(heights, tf.float32)[:, tf.newaxis]
    image_w = tf.cast(widths, tf.float32)[:, tf.newaxis]
    image_area = image_h * image_w
    min_area = area_range[0] * image_area
    max_area = area_range[1] * image_area
    n = tf.shape(heights)[0]
    lo, hi = aspect_ratio_range
    ratio = rng.uniform([n, max_attempts]) * (hi - lo) + lo

    height = _rint(tf.sqrt(min_area / ratio))
    max_height = _rint(tf.sqrt(max_area / ratio))
    too_wide = _rint(max_height * ratio) > image_w
    max_height = tf.where(too_wide, tf.floor((image_w + 0.5 - 1e-7) / ratio), max_height)
    still_too_wide = too_wide & (_rint(max_height * ratio) > image_w)
    max_height = tf.where(still_too_wide, max_height - 1, max_height)
    max_height = tf.minimum(max_height, image_h)
    height = tf.minimum(height, max_height)
    # Uniform over the integers height ... max_height (u < 1, so floor <= span - 1).
    height += tf.floor(rng.uniform([n, max_attempts]) * (max_height - height + 1))
    width = _rint(height * ratio)
    area = width * height
    grow = area < min_area
    height = tf.where(grow, height + 1, height)
    width = _rint(height * ratio)
    area = width * height
    shrink = area > max_area
    height = tf.where(shrink, height - 1, height)
    width = _rint(height * ratio)
    area = width * height
    valid = (
        (area >= min_area)
        & (area <= max_area)
        & (width <= image_w)
        & (height <= image_h)
        & (width > 0)
        & (height > 0)
        & (area >= 1.0)  # the kernel's overlap test rejects empty boxes
        & (area / image_area >= MIN_OBJECT_COVERED)
    )

    attempt = tf.range(max_attempts)[tf.newaxis, :]
    first = tf.reduce_min(tf.where(valid, attempt, max_attempts), axis=1)
    found = first < max_attempts
    pick = lambda x: tf.gather(x, tf.minimum(first, max_attempts - 1), axis=1, batch_dims=1)
    crop_h = tf.where(found, pick(height), image_h[:, 0])
    crop_w = tf.where(found, pick(width), image_w[:, 0])
    offset_y = tf.floor(rng.uniform([n]) * (image_h[:, 0] - crop_h))
    offset_x = tf.floor(rng.uniform([n]) * (image_w[:, 0] - crop_w))
    return tuple(tf.cast(v, tf.int32) for v in (offset_y, offset_x, crop_h, crop_w))


def _resize_taps(
    offset: tf.Tensor, extent: tf.Tensor, size: int, flip: tf.Tensor | None = None
) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """Bilinear taps along one axis for resizing `extent` pixels from `offset` to `size`.

    As `tf.image.resize` (half-pixel centres): output pixel i reads position
    `(i + 0.5) * extent / size - 0.5` of the crop, clamped to the crop, i.e.
    `(1 - frac) * pixel[low] + frac * pixel[high]`.

    Returns:
      `(low, high, frac)`, int32, int32, float32, each `[N, size]`.
    """
    offset = tf.cast(offset, tf.float32)[:, tf.newaxis]
    extent = tf.cast(extent, tf.float32)[:, tf.newaxis]
    i = tf.range(size, dtype=tf.float32)[tf.newaxis]
    if flip is not None:
        i = tf.where(flip[:, tf.newaxis], size - 1.0 - i, i)
    last = offset + extent - 1.0
    position = tf.clip_by_value(offset + (i + 0.5) * extent / size - 0.5, offset, last)
    low = tf.floor(position)
    high = tf.minimum(low + 1.0, last)
    return tf.cast(low, tf.int32), tf.cast(high, tf.int32), position - low


def _crop_and_resize(images, boxes, size, flip):
    offset_y, offset_x, crop_h, crop_w = boxes
    # Rows first: [N, H, W, C] -> [N, size, W, C]; then columns -> [N, size, size, C].
    low, high, frac = _resize_taps(offset_y, crop_h, size)
    top = tf.cast(tf.gather(images, low, axis=1, batch_dims=1), tf.float32)
    bottom = tf.cast(tf.gather(images, high, axis=1, batch_dims=1), tf.float32)
    rows = top + (bottom - top) * frac[:, :, tf.newaxis, tf.newaxis]
    low, high, frac = _resize_taps(offset_x, crop_w, size, flip)
    left = tf.gather(rows, low, axis=2, batch_dims=1)
    right = tf.gather(rows, high, axis=2, batch_dims=1)
    out = left + (right - left) * frac[:, tf.newaxis, :, tf.newaxis]
    if images.dtype.is_integer:
        out = out / float(images.dtype.max)
    return tf.clip_by_value(out, 0.0, 1.0)


_PAD_MULTIPLE = 32

# On a CPU, XLA fuses the gathers and the interpolation into one pass (about
# 3x faster than the same ops unfused, and than tf.image.crop_and_resize).
_crop_and_resize_xla = tf.function(_crop_and_resize, jit_compile=True, reduce_retracing=True)


def crop_and_resize_batch(
    images: tf.Tensor,
    boxes: tuple[tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor],
    size: int,
    flip: tf.Tensor | None = None,
) -> tf.Tensor:
    """Crops one box per image and resizes it to `size` x `size` (bilinear).

    Equal to `tf.image.resize(crop, [size, size], "bilinear")` of each crop
    (then flipped where `flip`). Only pixels inside the boxes are read, so a
    padded batch needs no special care.

    Args:
      images: `[N, H, W, C]`, any real dtype; integers are scaled by the
        dtype's maximum, floats are taken to be in [0, 1].
      boxes: int32 `[N]` each, `(offset_y, offset_x, height, width)` in pixels,
        height and width >= 1.
      size: output side.
      flip: optional bool `[N]`: flip these crops left-right (free: the
        columns are read from right to left).

    Returns:
      float32 `[N, size, size, C]` in [0, 1].
    """
    images = tf.convert_to_tensor(images)
    if flip is None:
        flip = tf.zeros_like(boxes[0], tf.bool)
    boxes = tuple(tf.cast(b, tf.int32) for b in boxes)
    return _crop_and_resize_xla(_pad_for_xla(images), boxes, size, flip)


def _pad_for_xla(images: tf.Tensor) -> tf.Tensor:
    """XLA compiles one program per input shape. Padded batches of images of
    different sizes are padded further to multiples of 32 pixels, which bounds
    the number of shapes (crops never read the padding)."""
    if images.shape[1:3].is_fully_defined():
        return images
    shape = tf.shape(images)
    pad_h = -shape[1] % _PAD_MULTIPLE
    pad_w = -shape[2] % _PAD_MULTIPLE
    return tf.pad(images, [[0, 0], [0, pad_h], [0, pad_w], [0, 0]])


# --- One image at a time, in one XLA program ------------------------------------------
#
# On a CPU the batch-wide ops above make one pass over the whole batch per op, and
# a batch of 224 px views (600 KB each) does not fit in cache, so every pass goes to
# memory; the colour jitter also evaluates all four ops for every image. The same
# ops on one image at a time, in an XLA while loop, keep each view in cache from
# crop to blur and run only the ops each image draws.


@tf.function(jit_compile=True, reduce_retracing=True)
def _views_one_by_one(images, boxes, flip, size, jitter, gray, blur, impl) -> tf.Tensor:
    """The views of `simclr_view_batch` from its drawn parameters, image by image.

    `jitter` is None or `(order [N, 4], factors [N, 4])` of `sample_color_jitter`
    for the colour-jitter implementation `impl`,
    `gray` None or bool `[N]`, `blur` None or `(apply [N], kernels [N, K])`.
    """
    n = tf.shape(images)[0]

    def body(i, views):
        # x[i][None], not x[i : i + 1]: XLA does not see that the slice has size 1.
        box = tuple(b[i][None] for b in boxes)
        view = _crop_and_resize(images[i][None], box, size, flip[i][None])
        view = tf.transpose(view, [0, 3, 1, 2])
        if jitter is not None:
            view = jitter_one_image(view, jitter[0][i], jitter[1][i], impl)
        if blur is not None:
            view = tf.cond(blur[0][i], lambda: blur_planar(view, blur[1][i]), lambda: view)
        # Grayscale after the blur: both are linear, the blur the same on every
        # channel, so they commute; here the select fuses into the transpose.
        if gray is not None:
            view = tf.where(gray[i], to_gray(view, 1), view)
        view = tf.transpose(view, [0, 2, 3, 1])
        return i + 1, tf.tensor_scatter_nd_update(views, [[i]], view)

    views = tf.zeros([n, size, size, 3])
    _, views = tf.while_loop(lambda i, _: i < n, body, [0, views])
    return tf.clip_by_value(views, 0.0, 1.0)


def _no_accelerator() -> bool:
    return not (tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("TPU"))


# --- Views ----------------------------------------------------------------------------


def simclr_view_batch(
    images: tf.Tensor,
    cfg: AugmentConfig,
    *,
    sizes: tf.Tensor | None = None,
    seed: tf.Tensor | None = None,
    one_by_one: bool | None = None,
) -> tf.Tensor:
    """One random SimCLR view of each image of a batch (`augment.simclr_view`).

    Args:
      images: decoded RGB images `[N, H, W, 3]` (uint8, or float in [0, 1]),
        H and W possibly unknown statically (a padded batch).
      cfg: the augmentation config.
      sizes: optional int32 `[N, 2]`, each image's true `[height, width]`
        when the batch is padded; None means every image fills `[H, W]`.
      seed: optional int `[2]`: draw everything from stateless random ops with
        this seed (the same seed gives the same views); None uses stateful ops
        governed by `tf.random.set_seed`, like the per-image path.
      one_by_one: run the ops on one image at a time inside one XLA program
        (faster on a CPU: each view stays in cache, see above) instead of on
        the whole batch per op (for accelerators). The same parameters are
        drawn either way, so the same seed gives the same views. None: one by
        one unless TensorFlow sees a GPU or TPU.

    Returns:
      float32 `[N, cfg.image_size, cfg.image_size, 3]` in [0, 1].
    """
    images = tf.convert_to_tensor(images)
    if images.shape.rank != 4 or images.shape[-1] != 3:
        raise ValueError(f"Expected RGB images [N, H, W, 3], got shape {images.shape}.")
    rng = RandomStream(seed)
    size = cfg.image_size
    shape = tf.shape(images)
    n = shape[0]
    if sizes is None:
        heights, widths = tf.fill([n], shape[1]), tf.fill([n], shape[2])
    else:
        sizes = tf.cast(sizes, tf.int32)
        heights, widths = sizes[:, 0], sizes[:, 1]

    if cfg.crop:
        boxes = sample_crop_boxes(heights, widths, rng, cfg.crop_area_range, cfg.aspect_ratio_range)
    else:
        zeros = tf.zeros_like(heights)
        boxes = (zeros, zeros, heights, widths)
    flip = sample_apply(rng, 0.5, [n]) if cfg.flip else None
    jitter = sample_apply(rng, cfg.color_jitter_prob, [n]) if cfg.applies_color_jitter else None
    gray = sample_apply(rng, cfg.grayscale_prob, [n]) if cfg.applies_grayscale else None
    if one_by_one is None:
        one_by_one = _no_accelerator()
    if one_by_one:
        return _views_one_by_one_from(images, boxes, flip, jitter, gray, cfg, rng)
    views = crop_and_resize_batch(images, boxes, size, flip)
    views = tf.ensure_shape(views, [None, size, size, 3])
    # Jitter, then grayscale: one pass over the pixels per jitter step.
    if cfg.applies_color_jitter:
        views = color_jitter_batch(
            views, cfg.color_jitter_strength, rng, jitter, gray=gray, impl=cfg.color_jitter_impl
        )
    elif cfg.applies_grayscale:
        views = grayscale_where(views, gray)
    if cfg.blur:
        views = random_blur_batch(views, rng, cfg.blur_prob)
    return tf.clip_by_value(views, 0.0, 1.0)


def _views_one_by_one_from(images, boxes, flip, jitter, gray, cfg: AugmentConfig, rng):
    """Draws the jitter and blur parameters as the batch-wide path does (same order
    of draws), then runs `_views_one_by_one`. `jitter` and `gray` are the bool `[N]`
    draws of `simclr_view_batch` (or None)."""
    n = tf.shape(images)[0]
    size = cfg.image_size
    if jitter is not None:
        order, factors = sample_color_jitter(
            rng, n, cfg.color_jitter_strength, jitter, impl=cfg.color_jitter_impl
        )
        jitter = (order, tf.stack(factors, axis=1))
    else:
        jitter = None
    blur = None
    radius = blur_radius(blur_kernel_size(size), size, size)
    if cfg.blur:
        apply, sigma = sample_blur(rng, n, cfg.blur_prob)
        if radius > 0:
            blur = (apply, gaussian_kernel(radius, sigma))
    if flip is None:
        flip = tf.zeros([n], tf.bool)
    boxes = tuple(tf.cast(b, tf.int32) for b in boxes)
    views = _views_one_by_one(
        _pad_for_xla(images), boxes, flip, size, jitter, gray, blur, cfg.color_jitter_impl
    )
    return tf.ensure_shape(views, [None, size, size, 3])


def two_views_batch(
    batch: dict[str, tf.Tensor],
    cfg: AugmentConfig,
    seed: tf.Tensor | None = None,
    one_by_one: bool | None = None,
) -> dict[str, tf.Tensor]:
    """`{"image", "label"[, "size"]}` batch -> `{"view1", "view2", "label"}`.

    The batched `augment.two_views`: two independent `simclr_view_batch` draws.
    `"size"` (int32 `[N, 2]`) marks a padded batch; `seed` (the two views fold
    in 1 and 2) and `one_by_one` as in `simclr_view_batch`.
    """
    sizes = batch.get("size")
    seeds = (None, None)
    if seed is not None:
        seed = tf.cast(seed, tf.int64)
        seeds = tuple(tf.random.experimental.stateless_fold_in(seed, i) for i in (1, 2))
    view1, view2 = (
        simclr_view_batch(batch["image"], cfg, sizes=sizes, seed=s, one_by_one=one_by_one)
        for s in seeds
    )
    return {"view1": view1, "view2": view2, "label": batch["label"]}


@keras.saving.register_keras_serializable(package="tf_simclr")
class DeviceViews:
    """`two_views_batch` as a serializable callable: `SimCLR(augment=DeviceViews(cfg))`.

    `views(batch, seed)` maps `{"image": uint8 or float [N, H, W, 3], "label"}`
    to `{"view1", "view2", "label"}` with the recipe `cfg`. The model calls it
    inside its train step (on the accelerator) and serializes it with its
    config; models never import the data package, they only call this.

    Args:
      config: an `AugmentConfig`, or a dict of its fields.
    """

    def __init__(self, config: AugmentConfig | dict):
        self.config = AugmentConfig(**config) if isinstance(config, dict) else config
        if not isinstance(self.config, AugmentConfig):
            raise TypeError(f"config must be an AugmentConfig, got {type(config).__name__}")

    def __call__(self, batch: dict[str, tf.Tensor], seed: tf.Tensor) -> dict[str, tf.Tensor]:
        return two_views_batch(batch, self.config, seed=seed)

    def __eq__(self, other) -> bool:
        return isinstance(other, DeviceViews) and other.config == self.config

    def __hash__(self) -> int:
        return hash(self.config)

    def get_config(self) -> dict:
        return dataclasses.asdict(self.config)

    @classmethod
    def from_config(cls, config: dict) -> DeviceViews:
        return cls(config)
