"""Tests of the fine-tuning / linear-evaluation Classifier.

Freezing is checked on what matters: after real `fit` steps with a non-zero
learning rate, frozen weights *and* BatchNorm moving statistics are
bit-identical, and everything that should train has moved.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

from tf_simclr.models import Classifier, ProjectionHead, ResNet, freeze_report

SIZE, BATCH, CLASSES = 16, 8, 3
FEATURES = 64  # ResNet-18 at width 0.125: 512 / 8
HIDDEN = 16


def batch(seed=0, n=BATCH):
    rng = np.random.default_rng(seed)
    images = rng.uniform(size=(n, SIZE, SIZE, 3)).astype("float32")
    return images, rng.integers(0, CLASSES, n).astype("int64")


def tiny_encoder(synchronized_bn=False):
    return ResNet(18, width_multiplier=0.125, cifar_stem=True, synchronized_bn=synchronized_bn)


def tiny_head():
    return ProjectionHead("nonlinear", out_dim=8, num_layers=2, hidden_dim=HIDDEN)


def built(model, size=SIZE):
    model(tf.zeros([1, size, size, 3]))
    return model


def fit(model, steps=2, learning_rate=1.0, data=None):
    """`steps` SGD steps on one batch. The rate is large so that the tiny second-step
    updates of BN gammas behind a zero-initialised residual branch survive float32
    rounding (at 0.1 some stay bit-identical)."""
    model.compile(optimizer=keras.optimizers.SGD(learning_rate))
    data = data or batch()
    return model.fit(tf.data.Dataset.from_tensors(data).repeat(steps), epochs=1, verbose=0)


def snapshot(layer):
    """Every variable (trainable or not, e.g. BN moving statistics) by path."""
    return {v.path: v.numpy().copy() for v in layer.weights}


def changed(before, layer):
    return {v.path for v in layer.weights if not np.array_equal(before[v.path], v.numpy())}


def in_groups(paths, prefixes):
    return {p for p in paths if p.startswith(prefixes)}


FROZEN_AT_2 = ("stem_", "block_group1_", "block_group2_")
TRAINED_AT_2 = ("block_group3_", "block_group4_")


def test_outputs_and_the_head_layer_the_classifier_reads():
    images, _ = batch()
    plain = built(Classifier(tiny_encoder(), CLASSES))
    out = plain(images)
    assert set(out) == {"embedding", "logits"}
    assert out["embedding"].shape == (BATCH, FEATURES) and out["logits"].shape == (BATCH, CLASSES)

    model = built(Classifier(tiny_encoder(), CLASSES, head=tiny_head(), ft_proj_selector=1))
    out = model(images)
    assert set(out) == {"embedding", "projection", "logits"}
    assert out["projection"].shape == (BATCH, 8)
    # ft_proj_selector=1 reads the output of the first head layer (width HIDDEN).
    assert model.supervised_head.dense.kernel.shape == (HIDDEN, CLASSES)
    hiddens = model.head.call_with_hiddens(out["embedding"], training=False)
    np.testing.assert_allclose(out["logits"], model.supervised_head(hiddens[1]), atol=1e-6)
    np.testing.assert_allclose(out["projection"], hiddens[-1], atol=1e-6)

    from_encoder = built(Classifier(tiny_encoder(), CLASSES, head=tiny_head()))
    assert from_encoder.supervised_head.dense.kernel.shape == (FEATURES, CLASSES)


def test_zero_init_logits_layer():
    model = built(Classifier(tiny_encoder(), CLASSES, zero_init_logits_layer=True))
    assert not np.any(model.supervised_head.dense.kernel.numpy())
    assert np.all(model(batch()[0])["logits"].numpy() == 0)


def test_linear_evaluation_freezes_encoder_head_and_bn_statistics():
    """fine_tune_after_block=4: only the linear classifier trains (here behind head layer 1)."""
    model = built(
        Classifier(
            tiny_encoder(), CLASSES, head=tiny_head(), ft_proj_selector=1, fine_tune_after_block=4
        )
    )
    assert {v.path for v in model.trainable_variables} == {
        v.path for v in model.supervised_head.trainable_variables
    }
    encoder, head, classifier = (
        snapshot(model.encoder),
        snapshot(model.head),
        snapshot(model.supervised_head),
    )
    fit(model)
    assert changed(encoder, model.encoder) == set()  # weights and BN moving statistics
    assert changed(head, model.head) == set()
    assert changed(classifier, model.supervised_head) == set(classifier)

    # Keras freezing is not a stop-gradient: watched explicitly, most frozen weights get
    # a non-zero gradient of the training loss. So the bit-identical weights above show
    # that the train step left them out, not merely that their gradients were zero.
    # (Should the model ever stop gradients at the frozen part, expect None here instead.)
    images, labels = batch(1)
    frozen = model.encoder.weights + model.head.weights
    with tf.GradientTape(watch_accessed_variables=False) as tape:
        tape.watch([v.value for v in frozen] + [v.value for v in model.supervised_head.weights])
        logits = model(images, training=True)["logits"]
        loss = model.compute_loss(y=labels, y_pred=logits)
    grads = tape.gradient(loss, [v.value for v in frozen + model.supervised_head.weights])
    nonzero = {v.path for v, g in zip(frozen, grads, strict=False) if g is not None and np.any(g)}
    parts = ("stem_", "block_group1_", "block_group2_", "block_group3_", "block_group4_", "nl_0_")
    assert all(any(part in path for path in nonzero) for part in parts), sorted(nonzero)
    assert all(g is not None and np.any(g) for g in grads[len(frozen) :])


def test_frozen_layers_run_in_inference_mode():
    """A frozen layer called with training=True uses its moving statistics: the frozen
    part gives the same output in both modes, the trained part does not."""
    images = batch(1)[0]
    linear = built(Classifier(tiny_encoder(), CLASSES, fine_tune_after_block=4))
    np.testing.assert_array_equal(
        linear(images, training=True)["embedding"], linear(images, training=False)["embedding"]
    )

    model = built(Classifier(tiny_encoder(), CLASSES, fine_tune_after_block=2))
    frozen_part = keras.Model(
        model.encoder.inputs, model.encoder.get_layer("block_group2_block1_out").output
    )
    np.testing.assert_array_equal(
        frozen_part(images, training=True), frozen_part(images, training=False)
    )
    # Block groups 3 and 4 train: batch statistics, a visibly different output.
    train, infer = model(images, training=True), model(images, training=False)
    assert np.abs(train["embedding"] - infer["embedding"]).max() > 1e-2


def test_full_fine_tuning_trains_everything_and_updates_bn_statistics():
    keras.utils.set_random_seed(0)
    model = built(Classifier(tiny_encoder(), CLASSES, fine_tune_after_block=-1))
    before = snapshot(model.encoder)
    trainable = {v.path for v in model.encoder.weights if v.trainable}
    assert {v.path for v in model.encoder.trainable_variables} == trainable

    images, labels = batch(1)
    with tf.GradientTape() as tape:
        loss = model.compute_loss(y=labels, y_pred=model(images, training=True))
    grads = tape.gradient(loss, model.encoder.trainable_variables)
    assert len(grads) == len(trainable) and all(g is not None for g in grads)

    fit(model)
    # The zero-initialised last BN gamma of each residual branch blocks its gradient at
    # step 0 only; after two steps every weight and every moving statistic has moved.
    assert changed(before, model.encoder) == set(before)
    assert any("moving_mean" in p for p in before)


def test_fine_tune_after_block_2_freezes_stem_and_groups_1_2():
    keras.utils.set_random_seed(0)
    model = built(Classifier(tiny_encoder(), CLASSES, fine_tune_after_block=2))
    before = snapshot(model.encoder)
    trainable = {v.path for v in model.trainable_variables}
    assert in_groups(trainable, FROZEN_AT_2) == set()
    assert in_groups(trainable, TRAINED_AT_2)

    fit(model)
    moved = changed(before, model.encoder)
    assert in_groups(moved, FROZEN_AT_2) == set()
    assert in_groups(moved, TRAINED_AT_2) == in_groups(set(before), TRAINED_AT_2)

    report = freeze_report(model)
    assert "stem_conv" in report["frozen"] and "block_group2_block1_bn2" in report["frozen"]
    assert "block_group3_block0_conv1" in report["trainable"]
    assert not set(report["frozen"]) & set(report["trainable"])


def test_head_layers_up_to_the_selector_are_fine_tuned():
    keras.utils.set_random_seed(0)
    model = built(
        Classifier(
            tiny_encoder(), CLASSES, head=tiny_head(), ft_proj_selector=1, fine_tune_after_block=-1
        )
    )
    before = snapshot(model.head)
    fit(model)
    moved = changed(before, model.head)
    first = {p for p in before if "nl_0_" in p}  # dense kernel, BN gamma/beta/moving stats
    second = {p for p in before if "nl_1_" in p}
    assert first and second
    assert moved == first  # layer 2 feeds only the reported projection: frozen


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"fine_tune_after_block": 5}, r"\[-1, 4\]"),
        ({"fine_tune_after_block": -2}, r"\[-1, 4\]"),
        ({"num_classes": 0}, "num_classes"),
        ({"ft_proj_selector": 1}, "no `head`"),
        ({"ft_proj_selector": 3, "head": "tiny"}, r"\[0, 2\]"),
        ({"ft_proj_selector": -1}, ">= 0"),
    ],
)
def test_invalid_arguments(kwargs, message):
    kwargs = {"num_classes": CLASSES, **kwargs}
    if kwargs.get("head") == "tiny":
        kwargs["head"] = tiny_head()
    with pytest.raises(ValueError, match=message):
        Classifier(tiny_encoder(), **kwargs)


def test_keras_applications_backbone_allows_only_minus_one_and_four():
    backbone = keras.applications.ResNet50(
        include_top=False, weights=None, pooling="avg", input_shape=(32, 32, 3)
    )
    with pytest.raises(ValueError, match="only -1 .* and 4"):
        Classifier(backbone, 2, fine_tune_after_block=2)

    everything = built(Classifier(backbone, 2, fine_tune_after_block=-1), size=32)
    assert len(everything.trainable_variables) == len(backbone.trainable_variables) + 2
    assert everything(np.zeros((2, 32, 32, 3), "float32"))["embedding"].shape == (2, 2048)

    linear = built(Classifier(backbone, 2, fine_tune_after_block=4), size=32)
    assert backbone.trainable_variables == [] and len(linear.trainable_variables) == 2
    before = snapshot(backbone)
    rng = np.random.default_rng(0)
    data = (rng.uniform(size=(4, 32, 32, 3)).astype("float32"), np.array([0, 1, 0, 1]))
    history = fit(linear, steps=1, data=data)
    assert np.isfinite(history.history["loss"][-1])
    assert changed(before, backbone) == set()


def _one_sgd_step(strategy, synchronized_bn):
    images, labels = batch(seed=3)
    with strategy.scope():
        keras.utils.set_random_seed(1)  # identical initial weights in both calls
        model = built(Classifier(tiny_encoder(synchronized_bn), CLASSES))
        initial = model.get_weights()
        model.compile(optimizer=keras.optimizers.SGD(1.0))
    history = model.fit(tf.data.Dataset.from_tensors((images, labels)), epochs=1, verbose=0).history
    return initial, model.get_weights(), history["loss"][-1]


def test_two_replicas_give_the_single_device_loss_and_step(mirrored_strategy, worst_relative_step):
    """One global batch of 8 split 4 + 4 with global BN == one device (SGD lr 1: step = -grad)."""
    init1, single, loss1 = _one_sgd_step(tf.distribute.get_strategy(), False)
    init2, replicated, loss2 = _one_sgd_step(mirrored_strategy, True)
    assert loss2 == pytest.approx(loss1, rel=1e-5)
    worst = worst_relative_step(init1, single, init2, replicated)
    assert worst < 1e-4, worst


def test_compile_with_loss_and_metrics_and_dict_batches():
    model = built(Classifier(tiny_encoder(), CLASSES))
    model.compile(
        optimizer=keras.optimizers.SGD(0.01),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
    )
    images, labels = batch(n=10)
    history = model.fit(images, labels, batch_size=4, epochs=1, verbose=0).history
    assert {"loss", "top1", "top5", "accuracy", "learning_rate"} <= set(history)
    assert history["top1"] == history["accuracy"]

    dicts = tf.data.Dataset.from_tensor_slices({"image": images, "label": labels}).batch(4)
    model.fit(dicts, epochs=1, verbose=0)
    # evaluate() over 4 + 4 + 2 examples is the exact mean over all 10.
    result = model.evaluate(dicts, verbose=0, return_dict=True)
    logits = model(images)["logits"].numpy().astype(np.float64)
    log_probs = logits - np.log(np.exp(logits).sum(1, keepdims=True))
    assert result["loss"] == pytest.approx(-log_probs[np.arange(10), labels].mean(), rel=1e-5)
    assert result["top1"] == pytest.approx(np.mean(logits.argmax(1) == labels))
    assert result["top5"] == 1.0  # top-min(5, 3)
    assert model.predict(dicts, verbose=0)["logits"].shape == (10, CLASSES)

    with pytest.raises(ValueError, match="softmax cross-entropy"):
        model.compile(optimizer="sgd", loss="mse")


def test_serialization_round_trip_keeps_outputs_and_freezing(tmp_path):
    model = built(
        Classifier(
            tiny_encoder(), CLASSES, head=tiny_head(), ft_proj_selector=1, fine_tune_after_block=2
        )
    )
    fit(model, steps=1)  # non-initial weights and statistics
    path = tmp_path / "classifier.keras"
    model.save(path)
    restored = keras.saving.load_model(path)
    assert isinstance(restored, Classifier)
    assert isinstance(restored.optimizer, keras.optimizers.SGD)  # compiled again on load
    assert restored.optimizer.iterations.numpy() == 1
    assert restored.fine_tune_after_block == 2 and restored.ft_proj_selector == 1
    images = batch(1)[0]
    for key in ("embedding", "projection", "logits"):
        np.testing.assert_allclose(model(images)[key], restored(images)[key], rtol=1e-5, atol=1e-6)
    assert len(restored.trainable_variables) == len(model.trainable_variables)
    assert len(freeze_report(restored)["frozen"]) == len(freeze_report(model)["frozen"])
