"""Tests of the SimCLR Keras model: fit, gradient flow, replicas == one device, any backbone."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from tf_simclr.models import ProjectionHead, ResNet, SimCLR

SIZE, BATCH, CLASSES = 16, 8, 3
LR = 0.01  # small enough that float32 round-off is not amplified over steps


def batch(seed=0, n=BATCH):
    rng = np.random.default_rng(seed)
    return {
        "view1": rng.uniform(size=(n, SIZE, SIZE, 3)).astype("float32"),
        "view2": rng.uniform(size=(n, SIZE, SIZE, 3)).astype("float32"),
        "label": rng.integers(0, CLASSES, n).astype("int64"),
    }


def tiny_model(synchronized_bn=False, num_classes=CLASSES, mode="nonlinear"):
    encoder = ResNet(18, width_multiplier=0.125, cifar_stem=True, synchronized_bn=synchronized_bn)
    head = ProjectionHead(mode, out_dim=8, num_layers=2, synchronized_bn=synchronized_bn)
    model = SimCLR(encoder, head, num_classes=num_classes, temperature=0.5)
    model(tf.zeros([1, SIZE, SIZE, 3]))
    return model


def as_dataset(data, repeat=1):
    return tf.data.Dataset.from_tensors(data).repeat(repeat)


def numpy_contrast_metrics(model, data):
    """Accuracy and entropy of the view-1 -> view-2 logits, in float64 NumPy, from
    the model's training-mode projections (independent of `tf_simclr.losses`)."""
    images = tf.concat([data["view1"], data["view2"]], 0)
    z = model(images, training=True)["projection"].numpy().astype(np.float64)
    z /= np.linalg.norm(z, axis=1, keepdims=True)
    logits = z[:BATCH] @ z[BATCH:].T / model.temperature  # [8, 8]
    logits -= logits.max(axis=1, keepdims=True)
    p = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    entropy = -(p * np.log(p)).sum(axis=1).mean()
    accuracy = np.mean(logits.argmax(axis=1) == np.arange(BATCH))
    return accuracy, entropy


@pytest.mark.parametrize("mode", ["none", "linear", "nonlinear"])
def test_fit_runs_and_reports_metrics(mode):
    model = tiny_model(mode=mode)
    model.compile(optimizer=keras.optimizers.SGD(0.01))
    data = batch()
    # The metrics of a step are computed before its update: from the initial weights.
    # (A training-mode call only changes BN moving statistics, which it does not use.)
    accuracy, entropy = numpy_contrast_metrics(model, data)
    history = model.fit(as_dataset(data, 1), epochs=1, verbose=0)
    logs = {k: v[-1] for k, v in history.history.items()}
    for key in ("loss", "contrast_acc", "contrast_entropy", "probe_loss", "probe_acc"):
        assert np.isfinite(logs[key]), key
    assert logs["learning_rate"] == pytest.approx(0.01)
    # Entropy of softmax over the 8 view-2 columns of each [8, 8] row: in (0, log 8].
    assert 0 < entropy <= np.log(BATCH)
    assert logs["contrast_entropy"] == pytest.approx(entropy, rel=1e-4)
    assert logs["contrast_acc"] == pytest.approx(accuracy)


def test_every_trainable_variable_gets_a_gradient():
    model = tiny_model()
    model.compile(optimizer=keras.optimizers.SGD(0.1))
    before = {v.path: v.numpy().copy() for v in model.trainable_variables}
    model.fit(as_dataset(batch(), 2), epochs=1, verbose=0)
    changed = {v.path for v in model.trainable_variables if not np.allclose(before[v.path], v)}
    # The zero-initialised last BN gamma of each residual branch blocks gradients to the
    # branch at step 0 only; after two steps every trainable variable has moved.
    assert changed == set(before), sorted(set(before) - changed)[:5]


def test_probe_is_stop_gradient():
    """One SGD step from the same initial weights with and without the probe: the
    encoder and head end bit-identical, so the probe loss reached neither."""
    keras.utils.set_random_seed(1)
    initial = tiny_model()
    initial = initial.encoder.get_weights() + initial.head.get_weights()

    def step(num_classes):
        model = tiny_model(num_classes=num_classes)
        # Seeding alone is not enough: creating the probe shifts the head's random init.
        split = len(model.encoder.weights)
        model.encoder.set_weights(initial[:split])
        model.head.set_weights(initial[split:])
        model.compile(optimizer=keras.optimizers.SGD(1.0))
        probe = None if model.probe is None else model.probe.get_weights()
        model.fit(as_dataset(batch(seed=4)), epochs=1, verbose=0)
        if probe is not None:  # the probe itself trains...
            assert not np.array_equal(probe[0], model.probe.get_weights()[0])
        return model.encoder.get_weights() + model.head.get_weights()

    after_probed, after_plain = step(CLASSES), step(0)
    moved = 0
    for w0, a, b in zip(initial, after_probed, after_plain, strict=True):
        np.testing.assert_array_equal(a, b)  # ...and nothing else sees its loss
        moved += not np.array_equal(w0, a)
    assert moved > len(after_plain) // 2  # the step really trained the encoder and head


def test_unlabeled_model_has_no_probe_metrics():
    model = tiny_model(num_classes=0)
    model.compile(optimizer=keras.optimizers.SGD(0.01))
    history = model.fit(as_dataset(batch()), epochs=1, verbose=0)
    assert "probe_acc" not in history.history and "loss" in history.history


def test_keras_applications_backbone_can_replace_the_resnet():
    backbone = keras.applications.ResNet50(
        include_top=False, weights=None, pooling="avg", input_shape=(32, 32, 3)
    )
    model = SimCLR(backbone, ProjectionHead("nonlinear", out_dim=16, num_layers=2), num_classes=2)
    model.compile(optimizer=keras.optimizers.SGD(0.01))
    rng = np.random.default_rng(0)
    data = {
        "view1": rng.uniform(size=(4, 32, 32, 3)).astype("float32"),
        "view2": rng.uniform(size=(4, 32, 32, 3)).astype("float32"),
        "label": np.array([0, 1, 0, 1]),
    }
    history = model.fit(as_dataset(data), epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][-1])
    assert model(data["view1"])["embedding"].shape == (4, 2048)


def _train(strategy, batches, synchronized_bn, optimizer):
    """Fits a fresh tiny model (same initial weights every call) on `batches`, one a step.

    Returns (initial weights, weights after the first step, final weights, {"loss",
    "probe_loss": one value per step}). Keras logs running means over the epoch, so step
    k's own value is k*mean_k - (k-1)*mean_(k-1) (steps counted from 1).
    """
    with strategy.scope():
        keras.utils.set_random_seed(1)  # identical initial weights in every call
        model = tiny_model(synchronized_bn=synchronized_bn)
        initial = model.get_weights()
        model.compile(optimizer=optimizer())
    means = {"loss": [], "probe_loss": []}
    after_first = []

    def on_train_batch_end(batch_index, logs):
        for key, values in means.items():
            values.append(float(logs[key]))
        if batch_index == 0:
            after_first.extend(model.get_weights())

    record = keras.callbacks.LambdaCallback(on_train_batch_end=on_train_batch_end)
    stacked = {key: np.stack([b[key] for b in batches]) for key in batches[0]}
    dataset = tf.data.Dataset.from_tensor_slices(stacked)  # one global batch per element
    model.fit(dataset, epochs=1, verbose=0, callbacks=[record])
    per_step = {
        key: [(k + 1) * m - k * (ms[k - 1] if k else 0.0) for k, m in enumerate(ms)]
        for key, ms in means.items()
    }
    return initial, after_first, model.get_weights(), per_step


def test_replicas_train_like_one_device(replicated_strategy, worst_relative_step):
    """Gathered negatives + global BN + 1/R loss scaling == one device: the first step (the
    gradient: momentum has no history yet) and 10 momentum-SGD steps on 10 different
    global batches of 8 (4 or 2 per replica)."""
    data = [batch(seed=10 + step) for step in range(10)]
    # This tiny network on noise images amplifies round-off ~3x per step at LR = 0.01
    # (a 1e-6 change of the input moves step 10's loss by 6e-3 on one device), so
    # 10 steps use LR / 10, where the amplification stays below float32 noise.
    momentum = lambda: keras.optimizers.SGD(LR / 10, momentum=0.9)
    init1, first1, single, single_losses = _train(
        tf.distribute.get_strategy(), data, False, momentum
    )
    init2, first2, replicated, replicated_losses = _train(replicated_strategy, data, True, momentum)
    # Step 1: the same loss, and a weight change that is -LR x the same gradient. Relative
    # error per tensor: float32 BatchNorm statistics are summed in another order across
    # replicas, so single elements differ by up to ~2e-4 relative.
    for key in ("loss", "probe_loss"):
        assert replicated_losses[key][0] == pytest.approx(single_losses[key][0], rel=1e-5)
    worst = worst_relative_step(init1, first1, init2, first2)
    assert worst < 1e-4, worst
    # 10 steps: only the float32 summation order differs (per-replica partial sums, then an
    # all-reduce). Measured worst, 2 / 4 replicas: loss 6.8e-6 / 5.3e-6 relative;
    # weights and BN moving statistics 2.9e-6 / 1.7e-6 absolute, and 0.9% of how far
    # a tensor moved in 10 steps. Per-replica instead of global BN is off by 240%.
    for key in ("loss", "probe_loss"):
        np.testing.assert_allclose(replicated_losses[key], single_losses[key], rtol=5e-5)
    for a, b in zip(single, replicated, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=2e-5)
    assert worst_relative_step(init1, single, init2, replicated) < 0.05


def test_serialization_round_trip(tmp_path):
    model = tiny_model()
    images = np.random.default_rng(0).uniform(size=(2, SIZE, SIZE, 3)).astype("float32")
    path = tmp_path / "simclr.keras"
    model.save(path)
    restored = keras.saving.load_model(path)
    for key in ("embedding", "projection", "logits"):
        np.testing.assert_allclose(model(images)[key], restored(images)[key], rtol=1e-5, atol=1e-6)
