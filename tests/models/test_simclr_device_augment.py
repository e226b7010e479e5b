"""SimCLR with augmentation inside the train step (`SimCLR(augment=...)`).

The dataset yields decoded uint8 images; `train_step` makes the two views with
the batched augmentation. The views' seed is (augment_seed, step) folded with
the replica id, so under MirroredStrategy each replica draws its own views.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

from tf_simclr.data.augment import AugmentConfig
from tf_simclr.data.augment_batch import DeviceViews
from tf_simclr.models import ProjectionHead, ResNet, SimCLR

SIZE, BATCH, CLASSES = 16, 8, 3
AUGMENT = DeviceViews(AugmentConfig(image_size=SIZE, color_jitter_strength=0.5, blur=False))


def images_batch(seed=0, n=BATCH, side=20):
    rng = np.random.default_rng(seed)
    return {
        "image": rng.integers(0, 256, (n, side, side, 3), dtype=np.uint8),
        "label": rng.integers(0, CLASSES, n).astype("int64"),
    }


def tiny_model(augment=AUGMENT, synchronized_bn=False):
    encoder = ResNet(18, width_multiplier=0.125, cifar_stem=True, synchronized_bn=synchronized_bn)
    head = ProjectionHead("nonlinear", out_dim=8, num_layers=2, synchronized_bn=synchronized_bn)
    model = SimCLR(encoder, head, num_classes=CLASSES, temperature=0.5, augment=augment)
    model(tf.zeros([1, SIZE, SIZE, 3]))
    return model


def test_fit_on_decoded_images():
    model = tiny_model()
    model.compile(optimizer=keras.optimizers.SGD(0.1))
    before = [v.numpy().copy() for v in model.trainable_variables]
    data = tf.data.Dataset.from_tensors(images_batch()).repeat(2)
    history = model.fit(data, epochs=1, verbose=0)
    for key in ("loss", "contrast_acc", "probe_loss"):
        assert np.isfinite(history.history[key][-1]), key
    moved = [not np.allclose(b, v) for b, v in zip(before, model.trainable_variables, strict=True)]
    assert sum(moved) > len(moved) // 2


def test_device_views_depend_on_seed_and_step_only():
    model = tiny_model()
    model.compile(optimizer=keras.optimizers.SGD(0.1))
    data = images_batch()
    views = tf.function(model.device_views)
    first = views(data)
    assert first["view1"].shape == (BATCH, SIZE, SIZE, 3)
    assert first["view1"].dtype == tf.float32
    np.testing.assert_array_equal(first["label"], data["label"])
    differs = lambda a, b: np.abs(np.asarray(a) - np.asarray(b)).max() > 1e-2
    assert differs(first["view1"], first["view2"])
    np.testing.assert_array_equal(views(data)["view1"], first["view1"])  # same step
    model.optimizer.iterations.assign_add(1)
    assert differs(views(data)["view1"], first["view1"])
    model.optimizer.iterations.assign(0)
    np.testing.assert_array_equal(views(data)["view1"], first["view1"])  # e.g. resumed
    other = tiny_model()
    other.augment_seed = 1
    other.compile(optimizer=keras.optimizers.SGD(0.1))
    assert differs(tf.function(other.device_views)(data)["view1"], first["view1"])


def test_replicas_draw_different_views(mirrored_strategy):
    data = images_batch(n=4)
    with mirrored_strategy.scope():
        model = tiny_model(synchronized_bn=True)
        model.compile(optimizer=keras.optimizers.SGD(0.1))
    # The same images on both replicas: any difference comes from the seeds.
    same = mirrored_strategy.experimental_distribute_values_from_function(lambda _: data)

    @tf.function
    def views():
        return mirrored_strategy.run(model.device_views, args=(same,))

    per_replica = [
        v.numpy() for v in mirrored_strategy.experimental_local_results(views()["view1"])
    ]
    assert len(per_replica) == 2
    assert np.abs(per_replica[0] - per_replica[1]).max() > 1e-2
    # Replica 0 draws what a single device draws at the same step.
    single = tiny_model()
    single.compile(optimizer=keras.optimizers.SGD(0.1))
    np.testing.assert_allclose(
        tf.function(single.device_views)(data)["view1"], per_replica[0], atol=1e-6
    )


def test_fit_under_mirrored_strategy(mirrored_strategy):
    with mirrored_strategy.scope():
        model = tiny_model(synchronized_bn=True)
        model.compile(optimizer=keras.optimizers.SGD(0.1))
    data = tf.data.Dataset.from_tensors(images_batch()).repeat(2)
    history = model.fit(data, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][-1])
    assert int(model.optimizer.iterations.numpy()) == 2


def test_config_round_trip(tmp_path):
    model = tiny_model()
    restored = SimCLR.from_config(model.get_config())
    assert restored.augment == AUGMENT and restored.augment_seed == 0
    assert SimCLR.from_config(tiny_model(augment=None).get_config()).augment is None
    path = tmp_path / "simclr.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert loaded.augment == AUGMENT
    images = np.random.default_rng(0).uniform(size=(2, SIZE, SIZE, 3)).astype("float32")
    np.testing.assert_allclose(
        model(images)["projection"], loaded(images)["projection"], rtol=1e-5, atol=1e-6
    )


@pytest.mark.parametrize("bad", [{"image_size": 0}, {"blur_prob": 2.0}])
def test_bad_augment_config_is_rejected(bad):
    with pytest.raises(ValueError):
        DeviceViews(bad)


def test_augment_must_be_callable():
    config = AugmentConfig(image_size=SIZE)
    with pytest.raises(TypeError, match="DeviceViews"):
        SimCLR(ResNet(18, width_multiplier=0.125), ProjectionHead(), augment=config)
