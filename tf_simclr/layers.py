"""SimCLR's augmentations as Keras 3 layers, for any Keras model or `tf.data` map.

    augment = tf_simclr.layers.SimCLRAugment(32, color_jitter_strength=0.5, blur=False, seed=1)
    views = augment(images)  # float32 [N, 32, 32, 3] in [0, 1]

The layers are thin wrappers of the batched augmentation (`data.augment_batch`,
`data.color_batch`, `data.blur_batch`), whose random parameters come from
`data.augment_params`: a layer draws exactly the distributions of the input
pipeline (`--augment_impl=batched` and `device`), from the same code.
`SimCLRAugment` is the whole view, `augment_batch.simclr_view_batch`; the other
layers are its stages, one each:

- `RandomResizedCrop(size, area_range, aspect_ratio_range)`: the crop box of TF's
  SampleDistortedBoundingBox kernel, resized bilinearly to `size` x `size`;
- `RandomColorJitter(strength, rate, impl)`: brightness, contrast, saturation and
  hue in a random order per image, applied with probability `rate`;
- `RandomGrayscale(rate)`, `RandomGaussianBlur(rate, kernel_fraction)` (a sigma
  per image);
- `RandomApply(layer, rate)`: any layer, applied to each image with probability
  `rate`.

The horizontal flip is Keras's own `keras.layers.RandomFlip("horizontal")`.

Inputs are batches `[N, H, W, 3]` or single images `[H, W, 3]`, float in [0, 1]
(integer images are scaled by their dtype's maximum); outputs are float32 in
[0, 1]. The colour layers and the blur need a static H and W.

Randomness: each layer holds a `keras.random.SeedGenerator(seed)`, as Keras's own
random layers do. Every call takes the generator's next seed and draws all its
parameters from stateless random ops with it (`augment_params.RandomStream`):
two layers built with the same seed give the same sequence of augmentations;
`seed=None` starts from a random seed. As for Keras's layers, the generator's
state is not saved (`.keras`, weights): a reloaded layer starts again from its seed.

Training and inference: as Keras's random layers, the layers augment only when
called with `training=True`, which is the default outside a model (so a
`tf.data` map augments) and what `fit` passes; `predict` and `evaluate` pass
False. Then the colour, grayscale, blur and `RandomApply` layers return their
input. `RandomResizedCrop` and `SimCLRAugment` still resize the whole image to
`size` x `size` (no crop; `AugmentConfig(crop=False)`), so that the output shape
does not depend on the mode; the SimCLR evaluation view (a centre crop) is
`data.eval_view`, which is not random and not a layer here.
"""

from __future__ import annotations

import dataclasses
import numbers

import keras
import tensorflow as tf

from tf_simclr.data.augment import AugmentConfig
from tf_simclr.data.augment_batch import (
    crop_and_resize_batch,
    sample_crop_boxes,
    simclr_view_batch,
)
from tf_simclr.data.augment_params import (
    ASPECT_RATIO_RANGE,
    BLUR_PROB,
    BLUR_SIGMA_RANGE,
    COLOR_JITTER_IMPLS,
    CROP_AREA_RANGE,
    RandomStream,
    sample_apply,
)
from tf_simclr.data.blur_batch import random_blur_batch
from tf_simclr.data.color_batch import color_jitter_batch, random_grayscale_batch

__all__ = [
    "RandomApply",
    "RandomColorJitter",
    "RandomGaussianBlur",
    "RandomGrayscale",
    "RandomResizedCrop",
    "SimCLRAugment",
]

# Appendix A: the blur kernel is 10% of the image side (`augment_params.blur_kernel_size`).
BLUR_KERNEL_FRACTION = 0.1


def _check_rate(name: str, value: float) -> float:
    if not isinstance(value, numbers.Real) or not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be a probability in [0, 1], got {value!r}.")
    return float(value)


def _check_range(name: str, value, upper: float | None = None) -> tuple[float, float]:
    value = tuple(float(v) for v in value)
    if len(value) != 2 or not 0.0 < value[0] <= value[1] or (upper and value[1] > upper):
        within = f" within (0, {upper}]" if upper else ""
        raise ValueError(f"{name} must be (min, max) with 0 < min <= max{within}, got {value!r}.")
    return value


def _to_batch(images) -> tuple[tf.Tensor, bool]:
    """float32 `[N, H, W, 3]` in [0, 1], and whether the input was one image `[H, W, 3]`."""
    images = tf.convert_to_tensor(images)
    if images.dtype.is_integer:
        images = tf.image.convert_image_dtype(images, tf.float32)
    else:
        images = tf.cast(images, tf.float32)
    if images.shape.rank not in (3, 4) or images.shape[-1] != 3:
        raise ValueError(
            f"Expected RGB images [N, H, W, 3] or one image [H, W, 3], got shape {images.shape}."
        )
    single = images.shape.rank == 3
    return (images[tf.newaxis] if single else images), single


def _static_side(images: tf.Tensor, layer: str) -> int:
    height, width = images.shape[1:3]
    if height is None or width is None:
        raise ValueError(f"{layer} needs images of a static height and width, got {images.shape}.")
    return height


class _RandomLayer(keras.layers.Layer):
    """A random augmentation of a batch: `augment(images, seed)` when training, else
    `inference(images)`; `seed` (`[2]`) is the next of a `keras.random.SeedGenerator`."""

    def __init__(self, seed: int | None = None, **kwargs):
        # The ops compute in float32 (also under a mixed-precision policy).
        super().__init__(autocast=False, **kwargs)
        self.seed = seed
        self.generator = keras.random.SeedGenerator(seed)

    def call(self, images, training=True):
        images, single = _to_batch(images)
        if training:
            images = self.augment(images, self.generator.next())
        else:
            images = self.inference(images)
        return images[0] if single else images

    def augment(self, images: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
        raise NotImplementedError

    def inference(self, images: tf.Tensor) -> tf.Tensor:
        return images

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self) -> dict:
        return {**super().get_config(), "seed": self.seed}


def _whole_image_resized(images: tf.Tensor, size: int) -> tf.Tensor:
    """Each image resized to `size` x `size` (the crop box of `crop=False`)."""
    shape = tf.shape(images)
    heights, widths = tf.fill([shape[0]], shape[1]), tf.fill([shape[0]], shape[2])
    zeros = tf.zeros_like(heights)
    return crop_and_resize_batch(images, (zeros, zeros, heights, widths), size)


def _resized_shape(input_shape, size: int) -> tuple:
    return (*tuple(input_shape)[:-3], size, size, input_shape[-1])


@keras.saving.register_keras_serializable(package="tf_simclr")
class RandomResizedCrop(_RandomLayer):
    """A random crop of each image, resized to `size` x `size` (Appendix A).

    The crop box is `augment_batch.sample_crop_boxes` (TF's SampleDistortedBoundingBox
    algorithm, covering at least 10% of the image); the resize is bilinear.

    Args:
      size: output side in pixels, >= 1.
      area_range: (min, max) fraction of the image area, within (0, 1].
      aspect_ratio_range: (min, max) width / height of the crop, > 0.
      seed: seed of the layer's `keras.random.SeedGenerator`.
    """

    def __init__(
        self,
        size: int,
        area_range: tuple[float, float] = CROP_AREA_RANGE,
        aspect_ratio_range: tuple[float, float] = ASPECT_RATIO_RANGE,
        seed: int | None = None,
        **kwargs,
    ):
        super().__init__(seed=seed, **kwargs)
        if not isinstance(size, numbers.Integral) or size < 1:
            raise ValueError(f"size must be an integer >= 1, got {size!r}.")
        self.size = int(size)
        self.area_range = _check_range("area_range", area_range, upper=1.0)
        self.aspect_ratio_range = _check_range("aspect_ratio_range", aspect_ratio_range)

    def augment(self, images, seed):
        rng = RandomStream(seed)
        shape = tf.shape(images)
        heights, widths = tf.fill([shape[0]], shape[1]), tf.fill([shape[0]], shape[2])
        boxes = sample_crop_boxes(heights, widths, rng, self.area_range, self.aspect_ratio_range)
        return crop_and_resize_batch(images, boxes, self.size)

    def inference(self, images):
        return _whole_image_resized(images, self.size)

    def compute_output_shape(self, input_shape):
        return _resized_shape(input_shape, self.size)

    def get_config(self) -> dict:
        return {
            **super().get_config(),
            "size": self.size,
            "area_range": self.area_range,
            "aspect_ratio_range": self.aspect_ratio_range,
        }


@keras.saving.register_keras_serializable(package="tf_simclr")
class RandomColorJitter(_RandomLayer):
    """SimCLR's colour jitter, applied to each image with probability `rate`.

    Brightness, contrast and saturation change by up to 0.8 `strength`, hue by up
    to 0.2 `strength`, in a random order per image, each followed by a clip to
    [0, 1] (Appendix A; `color_batch.color_jitter_batch`).

    Args:
      strength: colour strength s >= 0 (0: the identity).
      rate: probability of jittering an image, in [0, 1].
      impl: "simclrv2" (multiplicative brightness, the reference default) or
        "simclrv1" (additive brightness, the v1 paper's runs).
      seed: seed of the layer's `keras.random.SeedGenerator`.
    """

    def __init__(
        self,
        strength: float,
        rate: float = 0.8,
        impl: str = "simclrv2",
        seed: int | None = None,
        **kwargs,
    ):
        super().__init__(seed=seed, **kwargs)
        if not isinstance(strength, numbers.Real) or strength < 0:
            raise ValueError(f"strength must be >= 0, got {strength!r}.")
        if impl not in COLOR_JITTER_IMPLS:
            raise ValueError(f"impl must be one of {COLOR_JITTER_IMPLS}, got {impl!r}.")
        self.strength = float(strength)
        self.rate = _check_rate("rate", rate)
        self.impl = impl

    def augment(self, images, seed):
        rng = RandomStream(seed)
        _static_side(images, "RandomColorJitter")
        apply = sample_apply(rng, self.rate, [tf.shape(images)[0]])
        return color_jitter_batch(images, self.strength, rng, apply, impl=self.impl)

    def get_config(self) -> dict:
        config = {"strength": self.strength, "rate": self.rate, "impl": self.impl}
        return {**super().get_config(), **config}


@keras.saving.register_keras_serializable(package="tf_simclr")
class RandomGrayscale(_RandomLayer):
    """Converts each image to gray (ITU-R 601 weights, three equal channels) with
    probability `rate` (Appendix A: 0.2).

    Args:
      rate: probability of converting an image, in [0, 1].
      seed: seed of the layer's `keras.random.SeedGenerator`.
    """

    def __init__(self, rate: float = 0.2, seed: int | None = None, **kwargs):
        super().__init__(seed=seed, **kwargs)
        self.rate = _check_rate("rate", rate)

    def augment(self, images, seed):
        rng = RandomStream(seed)
        return random_grayscale_batch(images, rng, self.rate)

    def get_config(self) -> dict:
        return {**super().get_config(), "rate": self.rate}


@keras.saving.register_keras_serializable(package="tf_simclr")
class RandomGaussianBlur(_RandomLayer):
    """Blurs each image with probability `rate`, with its own sigma (Appendix A).

    The kernel side is `kernel_fraction` of the image height (0.1: `H // 10`, as the
    pipeline; images shorter than 20 px are then never changed), sigma ~ U[sigma_range]
    pixels per image; the image is padded by reflection (`blur_batch.random_blur_batch`).

    Args:
      rate: probability of blurring an image, in [0, 1].
      kernel_fraction: kernel side as a fraction of the image height, in [0, 1].
      sigma_range: (min, max) sigma in pixels, > 0.
      seed: seed of the layer's `keras.random.SeedGenerator`.
    """

    def __init__(
        self,
        rate: float = BLUR_PROB,
        kernel_fraction: float = BLUR_KERNEL_FRACTION,
        sigma_range: tuple[float, float] = BLUR_SIGMA_RANGE,
        seed: int | None = None,
        **kwargs,
    ):
        super().__init__(seed=seed, **kwargs)
        self.rate = _check_rate("rate", rate)
        self.kernel_fraction = _check_rate("kernel_fraction", kernel_fraction)
        self.sigma_range = _check_range("sigma_range", sigma_range)

    def kernel_size(self, height: int) -> int:
        """The kernel side for images `height` pixels high (`H // 10` at 0.1)."""
        # 0.1 is stored slightly above 1/10, so int() rounds 0.1 * H down to H // 10.
        return int(self.kernel_fraction * height)

    def augment(self, images, seed):
        rng = RandomStream(seed)
        height = _static_side(images, "RandomGaussianBlur")
        return random_blur_batch(
            images, rng, self.rate, self.sigma_range, kernel_size=self.kernel_size(height)
        )

    def get_config(self) -> dict:
        config = {
            "rate": self.rate,
            "kernel_fraction": self.kernel_fraction,
            "sigma_range": self.sigma_range,
        }
        return {**super().get_config(), **config}


@keras.saving.register_keras_serializable(package="tf_simclr")
class RandomApply(_RandomLayer):
    """`layer` applied to each image of a batch with probability `rate`.

    The layer runs on the whole batch (called with `training=True`) and each image
    keeps its result with probability `rate`, else its input: the layer must keep
    the shape of its input. At inference it does not run.

    Args:
      layer: a Keras layer mapping `[N, H, W, 3]` to the same shape.
      rate: probability of applying it to an image, in [0, 1].
      seed: seed of the layer's `keras.random.SeedGenerator` (the coin flips only;
        `layer` draws its own).
    """

    def __init__(self, layer: keras.layers.Layer, rate: float, seed: int | None = None, **kwargs):
        super().__init__(seed=seed, **kwargs)
        if isinstance(layer, dict):  # from get_config
            layer = keras.saving.deserialize_keras_object(layer)
        if not isinstance(layer, keras.layers.Layer):
            raise TypeError(f"layer must be a Keras layer, got {type(layer).__name__}.")
        self.layer = layer
        self.rate = _check_rate("rate", rate)

    def build(self, input_shape):
        if not self.layer.built:
            self.layer.build(input_shape)
        self.built = True

    def augment(self, images, seed):
        rng = RandomStream(seed)
        out = tf.cast(self.layer(images, training=True), images.dtype)
        if out.shape[1:] != images.shape[1:]:
            raise ValueError(
                f"RandomApply needs a layer that keeps the image shape; {self.layer.name} "
                f"maps {images.shape} to {out.shape}."
            )
        apply = sample_apply(rng, self.rate, [tf.shape(images)[0]])
        return tf.where(apply[:, tf.newaxis, tf.newaxis, tf.newaxis], out, images)

    def get_config(self) -> dict:
        config = {"layer": keras.saving.serialize_keras_object(self.layer), "rate": self.rate}
        return {**super().get_config(), **config}


_SWITCHES = [f.name for f in dataclasses.fields(AugmentConfig) if f.name != "image_size"]


@keras.saving.register_keras_serializable(package="tf_simclr")
class SimCLRAugment(_RandomLayer):
    """One SimCLR view of each image: `augment_batch.simclr_view_batch` as a layer.

    Crop and resize, flip, colour jitter, grayscale and blur, each as switched on
    (Section 3, Appendix A); the arguments are the fields of `AugmentConfig`, with
    its defaults (the ImageNet recipe; for CIFAR-10 `color_jitter_strength=0.5`,
    `blur=False`). Call it twice for the two views. The same seed gives the views
    of `simclr_view_batch(images, config, seed=...)` with the generator's seeds.

    Args:
      image_size: side of the square output view, >= 1.
      crop, crop_area_range, aspect_ratio_range, flip, color_jitter,
      color_jitter_strength, color_jitter_prob, color_jitter_impl, grayscale,
      grayscale_prob, blur, blur_prob: as `AugmentConfig`.
      seed: seed of the layer's `keras.random.SeedGenerator`.
    """

    def __init__(
        self,
        image_size: int,
        crop: bool = True,
        crop_area_range: tuple[float, float] = CROP_AREA_RANGE,
        aspect_ratio_range: tuple[float, float] = ASPECT_RATIO_RANGE,
        flip: bool = True,
        color_jitter: bool = True,
        color_jitter_strength: float = 1.0,
        color_jitter_prob: float = 0.8,
        color_jitter_impl: str = "simclrv2",
        grayscale: bool = True,
        grayscale_prob: float = 0.2,
        blur: bool = True,
        blur_prob: float = BLUR_PROB,
        seed: int | None = None,
        **kwargs,
    ):
        super().__init__(seed=seed, **kwargs)
        # AugmentConfig validates the values (and makes the ranges tuples).
        self.config = AugmentConfig(
            image_size=image_size,
            crop=crop,
            crop_area_range=crop_area_range,
            aspect_ratio_range=aspect_ratio_range,
            flip=flip,
            color_jitter=color_jitter,
            color_jitter_strength=color_jitter_strength,
            color_jitter_prob=color_jitter_prob,
            color_jitter_impl=color_jitter_impl,
            grayscale=grayscale,
            grayscale_prob=grayscale_prob,
            blur=blur,
            blur_prob=blur_prob,
        )
        self.image_size = self.config.image_size
        for name in _SWITCHES:
            setattr(self, name, getattr(self.config, name))

    @classmethod
    def from_augment_config(cls, config: AugmentConfig, **kwargs) -> SimCLRAugment:
        """The layer of an `AugmentConfig` (`kwargs`: seed, name, ...)."""
        return cls(**dataclasses.asdict(config), **kwargs)

    def augment(self, images, seed):
        return simclr_view_batch(images, self.config, seed=seed)

    def inference(self, images):
        return _whole_image_resized(images, self.image_size)

    def compute_output_shape(self, input_shape):
        return _resized_shape(input_shape, self.image_size)

    def get_config(self) -> dict:
        return {**super().get_config(), **dataclasses.asdict(self.config)}
