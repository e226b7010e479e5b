"""Tests for tf_simclr.layers, SimCLR's augmentations as Keras layers.

The layers' distributions are tested with the pipeline's, against the per-image
path, in `tests/data/test_augment_batch.py` (modes "layers" and "simclr_augment").
Here: the same draws as `simclr_view_batch`, the rates of non-default `rate`s,
seeding, serialization (`get_config`, a `.keras` round trip in this process and in a
fresh one), use in a `keras.Sequential` (fit and predict) and in `tf.data` maps.
"""

import json
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

import tf_simclr
from tests import _distribution as dist
from tf_simclr import layers
from tf_simclr.data import augment_batch as ab
from tf_simclr.data.augment_params import blur_kernel_size

# Each layer with non-default arguments, built with a given seed.
LAYERS = {
    "crop": lambda seed: layers.RandomResizedCrop(16, (0.2, 0.9), (0.5, 2.0), seed=seed),
    "jitter": lambda seed: layers.RandomColorJitter(0.7, rate=0.9, impl="simclrv1", seed=seed),
    "grayscale": lambda seed: layers.RandomGrayscale(rate=0.5, seed=seed),
    "blur": lambda seed: layers.RandomGaussianBlur(0.6, 0.2, (0.5, 1.5), seed=seed),
    "apply": lambda seed: layers.RandomApply(layers.RandomGrayscale(1.0), 0.5, seed=seed),
    "view": lambda seed: layers.SimCLRAugment(16, color_jitter_strength=0.5, seed=seed),
}


def _images(n=32, side=24):
    """float32 [n, side, side, 3] in [0, 1]: textured colour images, each different."""
    return np.stack([dist.colour_image(side, side, seed=i) / 255.0 for i in range(n)]).astype(
        np.float32
    )


def _changed(out, images):
    """bool [N]: the layer changed each image."""
    return np.abs(out - images).max(axis=(1, 2, 3)) > 1e-6


def test_simclr_augment_draws_the_views_of_simclr_view_batch():
    """No new implementation: SimCLRAugment is `simclr_view_batch` with the seeds of a
    `keras.random.SeedGenerator`, call after call."""
    images = _images(8)
    augment = layers.SimCLRAugment(16, color_jitter_strength=0.5, grayscale_prob=0.5, seed=7)
    seeds = keras.random.SeedGenerator(7)
    for _ in range(2):
        expected = ab.simclr_view_batch(images, augment.config, seed=seeds.next())
        np.testing.assert_allclose(augment(images).numpy(), expected.numpy(), atol=1e-6)


@pytest.mark.parametrize("name", LAYERS)
def test_a_seed_fixes_the_sequence_of_augmentations(name):
    images = _images()
    a, b, other = LAYERS[name](3), LAYERS[name](3), LAYERS[name](4)
    first = a(images).numpy()
    np.testing.assert_array_equal(b(images).numpy(), first)
    second = a(images).numpy()
    assert np.abs(second - first).max() > 1e-3  # each call draws anew
    np.testing.assert_array_equal(b(images).numpy(), second)
    assert np.abs(other(images).numpy() - first).max() > 1e-3
    # One image is augmented as a batch of one.
    np.testing.assert_allclose(
        LAYERS[name](5)(images[0]).numpy(), LAYERS[name](5)(images[:1]).numpy()[0], atol=1e-6
    )


RATE = 0.35  # far from each layer's default rate (0.8, 0.2, 0.5) and from 0 and 1
RATED = {
    "jitter": lambda rate: layers.RandomColorJitter(1.0, rate=rate),
    "grayscale": lambda rate: layers.RandomGrayscale(rate=rate),
    # sigma >= 1: every blur visibly changes a textured 24 px image (radius 1).
    "blur": lambda rate: layers.RandomGaussianBlur(rate=rate, sigma_range=(1.0, 2.0)),
    "apply": lambda rate: layers.RandomApply(layers.RandomColorJitter(1.0, rate=1.0), rate),
}


@pytest.mark.parametrize("name", RATED)
def test_rate_is_the_fraction_of_images_changed(name):
    """At rate 0.35, 400 images: four standard deviations are 0.095, so a layer that
    used its default rate (0.2, 0.5 or 0.8) or changed every image would fail."""
    images = _images(400)
    dist.assert_rate(_changed(RATED[name](RATE)(images).numpy(), images), RATE, name)
    assert not _changed(RATED[name](0.0)(images[:50]).numpy(), images[:50]).any()
    assert _changed(RATED[name](1.0)(images[:50]).numpy(), images[:50]).all()


def test_crop_area_and_aspect_ratio_ranges():
    """Crops of a ramp image (channel 0 rises down the rows, 1 across the columns):
    a view's range of each measures its crop's height and width (as fractions)."""
    ramp = np.linspace(0.0, 1.0, 64, dtype=np.float32)
    rows, cols = np.meshgrid(ramp, ramp, indexing="ij")
    image = np.stack([rows, cols, np.zeros_like(rows)], axis=-1)
    images = np.broadcast_to(image, (200, 64, 64, 3))

    def spans(layer):
        views = layer(images).numpy()
        return np.ptp(views[..., 0], axis=(1, 2)), np.ptp(views[..., 1], axis=(1, 2))

    height, width = spans(layers.RandomResizedCrop(16, area_range=(0.8, 1.0), seed=0))
    assert (height * width).min() > 0.7  # default range: most crops are smaller
    height, width = spans(layers.RandomResizedCrop(16, aspect_ratio_range=(2.0, 2.5), seed=0))
    assert np.all(width > 1.5 * height)  # default range: never more than 4/3


def test_blur_kernel_fraction():
    # 0.1 is the pipeline's kernel, H // 10, at every height.
    blur = layers.RandomGaussianBlur()
    assert [blur.kernel_size(h) for h in range(1, 2000)] == [
        blur_kernel_size(h) for h in range(1, 2000)
    ]
    # A larger fraction (radius 7 instead of 2 at 48 px) blurs noise more, at equal sigma.
    noise = np.random.default_rng(0).uniform(size=(8, 48, 48, 3)).astype(np.float32)
    variance = {
        fraction: layers.RandomGaussianBlur(1.0, fraction, sigma_range=(3.0, 3.0))(noise)
        .numpy()
        .var()
        for fraction in (0.1, 0.3)
    }
    assert variance[0.3] < 0.7 * variance[0.1], variance


@pytest.mark.parametrize("name", LAYERS)
def test_inference_is_the_identity_or_a_resize(name):
    """training=False (predict, evaluate): no randomness. The colour, grayscale, blur and
    RandomApply layers return the input; the crop and the view resize the whole image."""
    images = _images(4)
    layer = LAYERS[name](0)
    out = layer(images, training=False).numpy()
    np.testing.assert_array_equal(layer(images, training=False).numpy(), out)
    if name in ("crop", "view"):
        resized = tf.image.resize(images, [16, 16], method="bilinear", antialias=False)
        np.testing.assert_allclose(out, resized.numpy(), atol=1e-5)
    else:
        np.testing.assert_array_equal(out, images)


def _non_default_model():
    inputs = keras.Input((24, 24, 3))
    x = layers.SimCLRAugment(
        20,
        crop_area_range=(0.3, 0.9),
        aspect_ratio_range=(0.5, 2.0),
        flip=False,
        color_jitter_strength=0.5,
        color_jitter_prob=0.6,
        color_jitter_impl="simclrv1",
        grayscale_prob=0.4,
        blur_prob=0.7,
        seed=11,
        name="view",
    )(inputs)
    x = layers.RandomApply(layers.RandomGaussianBlur(1.0, 0.2, (0.5, 1.5), seed=6), 0.7, seed=2)(x)
    x = layers.RandomColorJitter(0.3, rate=0.5, impl="simclrv1", seed=3)(x)
    x = layers.RandomGrayscale(0.6, seed=4)(x)
    outputs = layers.RandomResizedCrop(12, (0.5, 1.0), (0.8, 1.25), seed=5)(x)
    return keras.Model(inputs, outputs)


def _json(config):
    return json.loads(json.dumps(config))


def test_keras_round_trip(tmp_path):
    model = _non_default_model()
    images = _images(6)
    first = model(images, training=True).numpy()
    path = tmp_path / "augment.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    for original, restored in zip(model.layers[1:], loaded.layers[1:], strict=True):
        assert type(restored) is type(original)
        # (JSON: a wrapped layer's build_config comes back with lists for tuples.)
        assert _json(restored.get_config()) == _json(original.get_config())
    assert loaded.get_layer("view").config == model.get_layer("view").config
    # As Keras's own random layers, the generators' state is not saved: the loaded
    # model starts again from the seeds, so its first views are the original's first.
    np.testing.assert_allclose(loaded(images, training=True).numpy(), first, atol=1e-6)

    # In a fresh process, `import tf_simclr` (no TensorFlow yet) is enough to load it.
    script = (
        "import sys, json, numpy as np\n"
        "import tf_simclr\n"
        "assert 'tensorflow' not in sys.modules\n"
        "import keras\n"
        f"model = keras.saving.load_model({str(path)!r})\n"
        "print(json.dumps(model.get_layer('view').get_config()))\n"
    )
    run = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300
    )
    assert run.returncode == 0, run.stderr[-2000:]
    config = json.loads(run.stdout.strip().splitlines()[-1])
    assert config["color_jitter_impl"] == "simclrv1" and config["crop_area_range"] == [0.3, 0.9]


@pytest.mark.parametrize("name", LAYERS)
def test_get_config_round_trip(name):
    """The layer rebuilt from its config has the same config and, from the same seed,
    augments as the original (so no argument is lost on the way)."""
    images = _images(8)
    layer = LAYERS[name](9)
    config = layer.get_config()
    rebuilt = [
        type(layer).from_config(config),
        keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(layer)),
    ]
    expected = layer(images).numpy()
    for copy in rebuilt:
        assert _json(copy.get_config()) == _json(config)
        np.testing.assert_allclose(copy(images).numpy(), expected, atol=1e-6)


def test_inside_a_sequential_model_that_trains_and_predicts():
    images, labels = _images(8), np.arange(8) % 2
    model = keras.Sequential(
        [
            keras.Input((24, 24, 3)),
            layers.SimCLRAugment(16, blur=False, seed=1),
            layers.RandomApply(keras.layers.RandomFlip("vertical", seed=2), 0.5, seed=3),
            keras.layers.Conv2D(4, 3),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(2),
        ]
    )
    assert model.output_shape == (None, 2)
    model.compile("sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    history = model.fit(images, labels, batch_size=4, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"]).all()
    predictions = model.predict(images, verbose=0)
    np.testing.assert_array_equal(model.predict(images, verbose=0), predictions)
    augmented = [model(images, training=True).numpy() for _ in range(2)]
    assert np.abs(augmented[0] - augmented[1]).max() > 1e-4


@pytest.mark.parametrize("name", LAYERS)
def test_in_a_tf_data_map(name):
    images = _images(8)
    layer = LAYERS[name](6)

    def views(ds):
        return np.concatenate([b.numpy() for b in ds])

    batched = tf.data.Dataset.from_tensor_slices(images).batch(4).map(layer)
    epoch1, epoch2 = views(batched), views(batched)
    size = 16 if name in ("crop", "view") else 24
    assert epoch1.shape == (8, size, size, 3) and epoch1.dtype == np.float32
    assert 0.0 <= epoch1.min() and epoch1.max() <= 1.0
    assert np.abs(epoch1 - epoch2).max() > 1e-3  # new draws each epoch
    # The same seed gives the same augmentations in tf.data as eagerly.
    again = LAYERS[name](6)
    np.testing.assert_allclose(epoch1, np.concatenate([again(b) for b in np.split(images, 2)]))
    # Single images, before batching.
    single = tf.data.Dataset.from_tensor_slices(images).map(LAYERS[name](6)).batch(8)
    assert views(single).shape == (8, size, size, 3)


def test_arguments_are_validated():
    with pytest.raises(ValueError, match="size"):
        layers.RandomResizedCrop(0)
    with pytest.raises(ValueError, match="area_range"):
        layers.RandomResizedCrop(8, area_range=(0.5, 1.5))
    with pytest.raises(ValueError, match="aspect_ratio_range"):
        layers.RandomResizedCrop(8, aspect_ratio_range=(2.0, 1.0))
    with pytest.raises(ValueError, match="rate"):
        layers.RandomColorJitter(1.0, rate=1.2)
    with pytest.raises(ValueError, match="impl"):
        layers.RandomColorJitter(1.0, impl="simclrv3")
    with pytest.raises(ValueError, match="strength"):
        layers.RandomColorJitter(-1.0)
    with pytest.raises(ValueError, match="rate"):
        layers.RandomGrayscale(-0.1)
    with pytest.raises(ValueError, match="kernel_fraction"):
        layers.RandomGaussianBlur(kernel_fraction=2.0)
    with pytest.raises(TypeError, match="Keras layer"):
        layers.RandomApply(lambda x: x, 0.5)
    with pytest.raises(ValueError, match="grayscale_prob"):
        layers.SimCLRAugment(16, grayscale_prob=2.0)
    with pytest.raises(ValueError, match="RGB"):
        layers.RandomGrayscale()(np.zeros((2, 8, 8, 1), np.float32))
    with pytest.raises(ValueError, match="keeps the image shape"):
        layers.RandomApply(layers.RandomResizedCrop(4), 0.5)(_images(2))


def test_exported_lazily_from_the_package():
    assert tf_simclr.SimCLRAugment is layers.SimCLRAugment
    assert tf_simclr.RandomApply is layers.RandomApply
