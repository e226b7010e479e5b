"""SimCLR data augmentation: one view function for every dataset.

The augmentation of SimCLR (Chen et al., 2020, "A Simple Framework for
Contrastive Learning of Visual Representations", Section 3 and Appendix A):
random crop with resize and horizontal flip, colour distortion (colour jitter
with p=0.8, then grayscale with p=0.2) and Gaussian blur (p=0.5). The semantics
follow the official google-research/simclr `data_util.py` with its "simclrv2"
colour implementation; every deliberate difference is marked "Deviation".

Every op maps one image `[H, W, C]` to one image. Unless a docstring says
otherwise, images are float32 in [0, 1]; `to_float_image` converts decoded
images (uint8, 1 to 4 channels) first. All ops work eagerly and inside
`tf.data.Dataset.map` when H and W are known only at run time.

Randomness comes from stateful TF random ops without per-op seeds: two calls on
the same image give two different views, and `tf.random.set_seed` governs all
of them (crops included).

Data sources yield `{"image", "label"}`; `two_views` turns that into
`{"view1", "view2", "label"}` and is the per-image augmentation entry point of
the input pipeline. `tf_simclr.data.augment_batch` applies the same ops, with
the same parameter distributions (the samplers of
`tf_simclr.data.augment_params`), to whole batches.
"""

from __future__ import annotations

import dataclasses
import functools
import numbers
from collections.abc import Callable

import tensorflow as tf

from tf_simclr.choices import BOUNDS, COLOR_JITTER_IMPL, COLOR_JITTER_IMPLS
from tf_simclr.data.augment_params import (
    ASPECT_RATIO_RANGE,
    BLUR_PROB,
    BLUR_SIGMA_RANGE,
    CROP_AREA_RANGE,
    CROP_MAX_ATTEMPTS,
    MIN_OBJECT_COVERED,
    RandomStream,
    blur_kernel_size,
    gaussian_kernel,
    jitter_max_deltas,
    sample_apply,
    sample_blur_sigma,
    sample_brightness,
    sample_hue_delta,
    sample_jitter_factor,
    sample_jitter_order,
)

# Reference `CROP_PROPORTION`: evaluation keeps the central 87.5% (224 of 256).
EVAL_CROP_PROPORTION = 0.875


def to_float_image(image: tf.Tensor) -> tf.Tensor:
    """Converts a decoded image to a float32 RGB image.

    Args:
      image: `[H, W, C]` with C in {1, 2, 3, 4} (gray, gray+alpha, RGB, RGBA),
        possibly of unknown rank or channel count (e.g. `tf.io.decode_image`).
        Integer images are scaled by their dtype's maximum (uint8: /255); float
        images are assumed to be in [0, 1] already and are only cast.

    Returns:
      float32 `[H, W, 3]` in [0, 1]: gray is tiled to three channels, alpha is
      dropped.
    """
    image = tf.convert_to_tensor(image)
    if image.dtype.is_floating:
        image = tf.cast(image, tf.float32)
    else:
        image = tf.image.convert_image_dtype(image, tf.float32)
    if image.shape.rank is None:
        image = tf.ensure_shape(image, [None, None, None])
    if image.shape.rank != 3:
        raise ValueError(f"Expected an image of shape [H, W, C], got shape {image.shape}.")

    gray_to_rgb = lambda: tf.tile(image[:, :, :1], [1, 1, 3])
    drop_alpha = lambda: image[:, :, :3]
    channels = image.shape[-1]
    if channels is None:
        channels = tf.shape(image)[-1]
        check = tf.debugging.assert_less_equal(
            channels, 4, message="Expected an image with 1, 2, 3 or 4 channels."
        )
        with tf.control_dependencies([check]):
            image = tf.cond(channels < 3, gray_to_rgb, drop_alpha)
        return tf.ensure_shape(image, [None, None, 3])
    if channels in (1, 2):
        return gray_to_rgb()
    if channels in (3, 4):
        return drop_alpha()
    raise ValueError(f"Expected an image with 1, 2, 3 or 4 channels, got {channels}.")


def random_apply(
    fn: Callable[[tf.Tensor], tf.Tensor], p: float | tf.Tensor, image: tf.Tensor
) -> tf.Tensor:
    """Returns `fn(image)` with probability `p` (in [0, 1]), else `image`."""
    apply = sample_apply(RandomStream(), p)
    return tf.cond(apply, lambda: fn(image), lambda: image)


def _resize(image: tf.Tensor, size: int) -> tf.Tensor:
    """Bicubic resize of `[H, W, C]` to float32 `[size, size, C]` in [0, 1]."""
    image = tf.image.resize(image, [size, size], method=tf.image.ResizeMethod.BICUBIC)
    # Deviation: bicubic interpolation overshoots near edges; the reference
    # clips only at the end of the pipeline, we clip here so that every op maps
    # [0, 1] images to [0, 1] images.
    return tf.clip_by_value(image, 0.0, 1.0)


def _resize_if_needed(image: tf.Tensor, size: int) -> tf.Tensor:
    """Like `_resize`, but returns `image` untouched when it is already size x size.
    Also takes a batch `[N, H, W, C]` of equal-sized images."""
    shape = tf.shape(image)
    same_size = tf.logical_and(tf.equal(shape[-3], size), tf.equal(shape[-2], size))
    image = tf.cond(same_size, lambda: image, lambda: _resize(image, size))
    return tf.ensure_shape(image, image.shape[:-3].concatenate([size, size, image.shape[-1]]))


def sample_crop_box(
    image_shape: tf.Tensor,
    area_range: tuple[float, float] = CROP_AREA_RANGE,
    aspect_ratio_range: tuple[float, float] = ASPECT_RATIO_RANGE,
    max_attempts: int = CROP_MAX_ATTEMPTS,
) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor]:
    """Samples a random crop box (Appendix A, "Random crop and resize").

    The box covers a fraction of the image area drawn from `area_range` with a
    width/height ratio drawn from `aspect_ratio_range` (both up to integer
    rounding) and covers at least `MIN_OBJECT_COVERED` of the image. If no such
    box is found in `max_attempts` tries, the whole image is returned.

    Args:
      image_shape: int32 `[3]`, the `[H, W, C]` shape of the image.
      area_range: (min, max) fraction of the image area, within (0, 1].
      aspect_ratio_range: (min, max) width / height.
      max_attempts: number of rejection-sampling attempts.

    Returns:
      int32 scalars `(offset_y, offset_x, height, width)`.
    """
    whole_image = tf.constant([0.0, 0.0, 1.0, 1.0], tf.float32, shape=[1, 1, 4])
    # tf.image.sample_distorted_bounding_box ignores the global seed unless it
    # is given an op seed; deriving the op seed from the global seed here, as
    # tf.random.uniform does, makes crops follow tf.random.set_seed too.
    seed, seed2 = tf.compat.v1.get_seed(None)
    begin, size, _ = tf.raw_ops.SampleDistortedBoundingBoxV2(
        image_size=tf.cast(image_shape, tf.int32),
        bounding_boxes=whole_image,
        min_object_covered=tf.constant(MIN_OBJECT_COVERED, tf.float32),
        seed=seed or 0,
        seed2=seed2 or 0,
        aspect_ratio_range=list(aspect_ratio_range),
        area_range=list(area_range),
        max_attempts=max_attempts,
        use_image_if_no_bounding_boxes=True,
    )
    return begin[0], begin[1], size[0], size[1]


def random_resized_crop(
    image: tf.Tensor,
    size: int,
    area_range: tuple[float, float] = CROP_AREA_RANGE,
    aspect_ratio_range: tuple[float, float] = ASPECT_RATIO_RANGE,
    max_attempts: int = CROP_MAX_ATTEMPTS,
) -> tf.Tensor:
    """Random crop (see `sample_crop_box`), then bicubic resize (Appendix A).

    Args:
      image: float32 `[H, W, C]` in [0, 1].
      size: output side in pixels.
      area_range, aspect_ratio_range, max_attempts: see `sample_crop_box`.

    Returns:
      float32 `[size, size, C]` in [0, 1].
    """
    offset_y, offset_x, height, width = sample_crop_box(
        tf.shape(image), area_range, aspect_ratio_range, max_attempts
    )
    image = tf.image.crop_to_bounding_box(image, offset_y, offset_x, height, width)
    return _resize(image, size)


def random_flip(image: tf.Tensor) -> tf.Tensor:
    """Flips `[H, W, C]` left-right with probability 0.5 (Appendix A)."""
    return random_apply(tf.image.flip_left_right, 0.5, image)


def color_jitter_order(random_order: bool = True) -> tf.Tensor:
    """The order of the colour-jitter ops for one call of `color_jitter`.

    Returns:
      int32 `[4]`, a permutation of 0 (brightness), 1 (contrast),
      2 (saturation), 3 (hue): uniformly random if `random_order`, else
      `[0, 1, 2, 3]`.
    """
    if not random_order:
        return tf.range(4, dtype=tf.int32)
    return sample_jitter_order(RandomStream())


def _jitter_ops(
    brightness: float, contrast: float, saturation: float, hue: float, impl: str = COLOR_JITTER_IMPL
) -> list[Callable[[tf.Tensor], tf.Tensor]]:
    """The four colour-jitter ops, indexed as in `color_jitter_order`.

    Each random factor is drawn here, before the order is known, so that the
    draws do not depend on the order. An op whose maximum strength is 0 is the
    identity (the reference skips it).
    """
    identity = lambda x: x
    rng = RandomStream()
    factor = functools.partial(sample_jitter_factor, rng)

    ops = [identity] * 4
    if brightness > 0:
        # "simclrv2" brightness is multiplicative; the paper's pseudo-code
        # (Appendix A) and the "simclrv1" impl add a delta instead.
        change = sample_brightness(rng, brightness, impl)
        if impl == "simclrv1":
            ops[0] = lambda x: x + change
        else:
            ops[0] = lambda x: x * change
    if contrast > 0:
        contrast_factor = factor(contrast)
        ops[1] = lambda x: tf.image.adjust_contrast(x, contrast_factor)
    if saturation > 0:
        saturation_factor = factor(saturation)
        ops[2] = lambda x: tf.image.adjust_saturation(x, saturation_factor)
    if hue > 0:
        hue_delta = sample_hue_delta(rng, hue)
        ops[3] = lambda x: tf.image.adjust_hue(x, hue_delta)
    return ops


def color_jitter(
    image: tf.Tensor, strength: float, random_order: bool = True, impl: str = COLOR_JITTER_IMPL
) -> tf.Tensor:
    """Colour jitter of strength s (Appendix A, "Color distortion").

    Brightness, contrast and saturation are scaled by factors drawn from
    U[max(0, 1 - 0.8 s), 1 + 0.8 s] and the hue is shifted by U[-0.2 s, 0.2 s],
    in a random order (fixed order b, c, s, h if not `random_order`), clipping
    to [0, 1] after each op. With `impl="simclrv1"` the brightness is shifted
    by U[-0.8 s, 0.8 s] instead of scaled (see `sample_brightness`).

    Args:
      image: float32 `[H, W, 3]` in [0, 1].
      strength: colour-distortion strength s >= 0 (Python float; 1.0 for
        ImageNet, 0.5 for CIFAR-10 in Appendix B.9). s = 0 leaves the image
        unchanged.
      random_order: shuffle the four ops on each call.
      impl: "simclrv2" (multiplicative brightness) or "simclrv1" (additive).

    Returns:
      float32 `[H, W, 3]` in [0, 1].
    """
    ops = _jitter_ops(*jitter_max_deltas(strength), impl=impl)
    order = color_jitter_order(random_order)
    for i in range(4):
        image = tf.switch_case(order[i], [functools.partial(op, image) for op in ops])
        image = tf.clip_by_value(image, 0.0, 1.0)
    return image


def to_grayscale(image: tf.Tensor) -> tf.Tensor:
    """Converts float32 RGB `[H, W, 3]` to gray, kept as three equal channels."""
    return tf.tile(tf.image.rgb_to_grayscale(image), [1, 1, 3])


def gaussian_blur(
    image: tf.Tensor,
    kernel_size: int | tf.Tensor,
    sigma: float | tf.Tensor,
    padding: str = "REFLECT",
) -> tf.Tensor:
    """Separable Gaussian blur (Appendix A, "Gaussian blur").

    The kernel has radius `kernel_size // 2` and length `2 * radius + 1` (so an
    even size is rounded up, and 0 or 1 gives the identity), as in the
    reference.

    Args:
      image: float32 `[H, W, C]`.
      kernel_size: int or int32 scalar >= 0.
      sigma: standard deviation in pixels, > 0.
      padding: "REFLECT" mirrors the image at its borders (the radius is capped
        at `min(H, W) - 1`); "SAME" pads with zeros as the reference does, which
        darkens a band of `radius` pixels along the borders.

    Returns:
      float32 `[H, W, C]`; within the input's value range.
    """
    if padding not in ("REFLECT", "SAME"):
        raise ValueError(f"padding must be 'REFLECT' or 'SAME', got {padding!r}.")
    image = tf.convert_to_tensor(image, tf.float32)
    shape = tf.shape(image)
    radius = tf.cast(kernel_size, tf.int32) // 2
    if padding == "REFLECT":
        radius = tf.minimum(radius, tf.minimum(shape[0], shape[1]) - 1)
    kernel = gaussian_kernel(radius, sigma)
    # Depthwise filters: [filter_height, filter_width, channels, 1].
    channels = shape[2]
    kernel_h = tf.tile(tf.reshape(kernel, [1, -1, 1, 1]), [1, 1, channels, 1])
    kernel_v = tf.tile(tf.reshape(kernel, [-1, 1, 1, 1]), [1, 1, channels, 1])

    blurred = image[tf.newaxis]
    if padding == "REFLECT":
        pad = [[0, 0], [radius, radius], [radius, radius], [0, 0]]
        blurred = tf.pad(blurred, pad, mode="REFLECT")
        conv_padding = "VALID"
    else:
        conv_padding = "SAME"
    strides = [1, 1, 1, 1]
    blurred = tf.nn.depthwise_conv2d(blurred, kernel_h, strides, conv_padding)
    blurred = tf.nn.depthwise_conv2d(blurred, kernel_v, strides, conv_padding)
    return tf.ensure_shape(blurred[0], image.shape)


def random_blur(
    image: tf.Tensor,
    p: float = BLUR_PROB,
    sigma_range: tuple[float, float] = BLUR_SIGMA_RANGE,
) -> tf.Tensor:
    """Gaussian blur with probability `p` (Appendix A, "Gaussian blur").

    The kernel size is 10% of the image height (`H // 10`, so images shorter
    than 20 pixels are never changed) and sigma ~ U[sigma_range].

    Args:
      image: float32 `[H, W, C]` in [0, 1].
      p: probability of blurring, in [0, 1].
      sigma_range: (min, max) sigma in pixels.

    Returns:
      float32 `[H, W, C]` in [0, 1].
    """

    # Deviation: the reference blurs in the model, on the batch of views, with
    # one sigma per batch and zero padding; we blur each view in the input
    # pipeline with its own sigma (each view is blurred independently with
    # probability p, as there) and pad by reflection, so that blurred views do
    # not get dark borders (at 224 px zero padding darkens the outer pixel
    # frame by about 26%: docs/reference_differences.md).
    def blur(x: tf.Tensor) -> tf.Tensor:
        sigma = sample_blur_sigma(RandomStream(), (), sigma_range)
        return gaussian_blur(x, blur_kernel_size(tf.shape(x)[0]), sigma, padding="REFLECT")

    return random_apply(blur, p, image)


def center_crop(
    image: tf.Tensor, size: int, crop_proportion: float = EVAL_CROP_PROPORTION
) -> tf.Tensor:
    """Central square crop, then bicubic resize (reference `center_crop`).

    The crop side is `crop_proportion` of the shorter image side (rounded to
    the nearest integer); an odd margin puts the extra pixel before the crop.

    Args:
      image: float32 `[H, W, C]` in [0, 1], or a batch `[N, H, W, C]` of one size.
      size: output side in pixels.
      crop_proportion: fraction of the shorter side kept, in (0, 1].

    Returns:
      float32 `[size, size, C]` (`[N, size, size, C]`) in [0, 1].
    """
    # The reference takes the target's aspect ratio into account; our targets
    # are square, for which its formula reduces to this one.
    shape = tf.shape(image)
    height, width = shape[-3], shape[-2]
    shorter = tf.cast(tf.minimum(height, width), tf.float32)
    side = tf.maximum(tf.cast(tf.math.rint(crop_proportion * shorter), tf.int32), 1)
    offset_y = (height - side + 1) // 2
    offset_x = (width - side + 1) // 2
    image = tf.image.crop_to_bounding_box(image, offset_y, offset_x, side, side)
    return _resize_if_needed(image, size)


@dataclasses.dataclass(frozen=True)
class AugmentConfig:
    """How to make one SimCLR training view; every component can be switched off.

    The defaults are the ImageNet setting of Appendix A. For CIFAR-10
    (Appendix B.9) use `image_size=32`, `color_jitter_strength=0.5`,
    `blur=False`. Switching components off gives the ablations of Figure 5.

    Attributes:
      image_size: side of the square output view, >= 1.
      crop: random crop with resize; if False the image is only resized.
      crop_area_range: (min, max) fraction of the image area, within (0, 1].
      aspect_ratio_range: (min, max) width / height of the crop, > 0.
      flip: random horizontal flip, p = 0.5.
      color_jitter: random colour jitter, applied with `color_jitter_prob`.
      color_jitter_strength: colour-distortion strength s >= 0. As in the
        reference, s = 0 turns the whole colour stage off, jitter and
        grayscale (see `applies_color_jitter`, `applies_grayscale`).
      color_jitter_prob: probability of colour jitter, in [0, 1].
      color_jitter_impl: "simclrv2" (multiplicative brightness, the reference
        default) or "simclrv1" (additive brightness, as the v1 paper's runs).
      grayscale: random conversion to gray, applied with `grayscale_prob`.
      grayscale_prob: probability of grayscale, in [0, 1].
      blur: random Gaussian blur, applied with `blur_prob`.
      blur_prob: probability of blur, in [0, 1].
    """

    image_size: int = 224
    crop: bool = True
    crop_area_range: tuple[float, float] = CROP_AREA_RANGE
    aspect_ratio_range: tuple[float, float] = ASPECT_RATIO_RANGE
    flip: bool = True
    color_jitter: bool = True
    color_jitter_strength: float = 1.0
    color_jitter_prob: float = 0.8
    color_jitter_impl: str = COLOR_JITTER_IMPL
    grayscale: bool = True
    grayscale_prob: float = 0.2
    blur: bool = True
    blur_prob: float = BLUR_PROB

    def __post_init__(self):
        if not isinstance(self.image_size, numbers.Integral) or self.image_size < 1:
            raise ValueError(f"image_size must be an integer >= 1, got {self.image_size!r}.")
        for name in ("color_jitter_prob", "grayscale_prob", "blur_prob"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be a probability in [0, 1], got {value!r}.")
        if self.color_jitter_strength not in BOUNDS["color_jitter_strength"]:
            raise ValueError(
                f"color_jitter_strength must be {BOUNDS['color_jitter_strength']}, "
                f"got {self.color_jitter_strength!r}."
            )
        if self.color_jitter_impl not in COLOR_JITTER_IMPLS:
            raise ValueError(
                f"color_jitter_impl must be one of {COLOR_JITTER_IMPLS}, "
                f"got {self.color_jitter_impl!r}."
            )
        for name in ("crop_area_range", "aspect_ratio_range"):
            # Lists (e.g. from flags) become tuples so the config stays hashable.
            value = tuple(float(v) for v in getattr(self, name))
            if len(value) != 2 or not 0.0 < value[0] <= value[1]:
                raise ValueError(f"{name} must be (min, max) with 0 < min <= max, got {value!r}.")
            object.__setattr__(self, name, value)
        if self.crop_area_range[1] > 1.0:
            raise ValueError(
                f"crop_area_range must lie within (0, 1], got {self.crop_area_range!r}."
            )

    @property
    def applies_color_jitter(self) -> bool:
        """Colour jitter is drawn: switched on and a strength > 0."""
        return self.color_jitter and self.color_jitter_strength > 0

    @property
    def applies_grayscale(self) -> bool:
        """Grayscale is drawn: switched on and the colour stage on (strength > 0).

        The reference's colour stage is jitter (p = 0.8) then grayscale (p = 0.2),
        all skipped at strength 0 (`data_util.preprocess_for_train`).
        """
        return self.grayscale and self.color_jitter_strength > 0


def finetune_augment(image_size: int) -> AugmentConfig:
    """Training views of fine-tuning and linear evaluation: random crop and flip only
    (paper Appendix B.5), at `image_size`."""
    return AugmentConfig(image_size=image_size, color_jitter=False, grayscale=False, blur=False)


def simclr_view(image: tf.Tensor, cfg: AugmentConfig) -> tf.Tensor:
    """One random SimCLR training view of an image (Section 3, Appendix A).

    Crop and resize, flip, colour jitter (p = 0.8), grayscale (p = 0.2), blur
    (p = 0.5), each as switched on in `cfg`, then clip.

    Args:
      image: a decoded image `[H, W, C]`, any dtype and channel count accepted
        by `to_float_image`; H and W may be unknown statically.
      cfg: the augmentation config.

    Returns:
      float32 `[cfg.image_size, cfg.image_size, 3]` in [0, 1].
    """
    size = cfg.image_size
    image = to_float_image(image)
    if cfg.crop:
        image = random_resized_crop(image, size, cfg.crop_area_range, cfg.aspect_ratio_range)
    else:
        image = _resize_if_needed(image, size)
    if cfg.flip:
        image = random_flip(image)
    if cfg.applies_color_jitter:
        jitter = functools.partial(
            color_jitter, strength=cfg.color_jitter_strength, impl=cfg.color_jitter_impl
        )
        image = random_apply(jitter, cfg.color_jitter_prob, image)
    if cfg.applies_grayscale:
        image = random_apply(to_grayscale, cfg.grayscale_prob, image)
    if cfg.blur:
        image = random_blur(image, cfg.blur_prob)
    image = tf.clip_by_value(image, 0.0, 1.0)
    return tf.ensure_shape(image, [size, size, 3])


def eval_view(image: tf.Tensor, image_size: int, crop_proportion: float | None = None) -> tf.Tensor:
    """The deterministic evaluation view of an image (reference `preprocess_for_eval`).

    Args:
      image: a decoded image `[H, W, C]`, as for `simclr_view`.
      image_size: side of the square output.
      crop_proportion: central crop kept before resizing (see `center_crop`).
        None means `EVAL_CROP_PROPORTION` (0.875) when `image_size > 32` and no
        crop otherwise: the reference turns the test crop off at CIFAR size.
        Without a crop the image is resized only if it is not already
        `image_size` square.

    Returns:
      float32 `[image_size, image_size, 3]` in [0, 1].
    """
    image = eval_crop_and_resize(to_float_image(image), image_size, crop_proportion)
    return tf.ensure_shape(image, [image_size, image_size, 3])


def eval_crop_and_resize(
    images: tf.Tensor, image_size: int, crop_proportion: float | None = None
) -> tf.Tensor:
    """`eval_view`'s crop and resize of float images in [0, 1], one `[H, W, C]` or a batch
    `[N, H, W, C]` of one size (the exported SavedModel's preprocessing,
    `tf_simclr.export.eval_preprocess`); `crop_proportion` as in `eval_view`.

    Returns:
      float32 `[..., image_size, image_size, C]` in [0, 1].
    """
    if crop_proportion is None and image_size > 32:
        crop_proportion = EVAL_CROP_PROPORTION
    if crop_proportion is None:
        images = _resize_if_needed(images, image_size)
    else:
        images = center_crop(images, image_size, crop_proportion)
    return tf.clip_by_value(images, 0.0, 1.0)


def two_views(example: dict[str, tf.Tensor], cfg: AugmentConfig) -> dict[str, tf.Tensor]:
    """Maps `{"image", "label"}` to `{"view1", "view2", "label"}` (Section 2.1).

    The two views are independent draws of `simclr_view` of the same image; the
    label is passed through unchanged.
    """
    image = example["image"]
    return {
        "view1": simclr_view(image, cfg),
        "view2": simclr_view(image, cfg),
        "label": example["label"],
    }
