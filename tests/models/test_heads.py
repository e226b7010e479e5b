"""Tests for the projection head and linear classifier (tf_simclr.models.heads)."""

import keras
import numpy as np
import pytest

from tf_simclr.models.heads import LinearClassifier, ProjectionHead

BATCH, IN_DIM = 8, 24


def features(batch: int = BATCH, dim: int = IN_DIM, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(batch, dim)).astype("float32")


def built_head(**kwargs) -> ProjectionHead:
    head = ProjectionHead(**kwargs)
    head.build((None, IN_DIM))
    return head


def randomize_bn(head: ProjectionHead, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    for bn in head.bns:
        bn.set_weights(
            [
                rng.uniform(0.5, 1.5, w.shape).astype("float32")
                if "variance" in w.path or "gamma" in w.path
                else rng.normal(0.0, 0.2, w.shape).astype("float32")
                for w in bn.weights
            ]
        )


def reference_inference(head: ProjectionHead, x: np.ndarray) -> list[np.ndarray]:
    """NumPy forward pass in inference mode, written from the definition."""
    hiddens = [x]
    for j, (dense, bn) in enumerate(zip(head.denses, head.bns, strict=True)):
        h = hiddens[-1] @ dense.kernel.numpy()
        gamma = bn.gamma.numpy()
        beta = bn.beta.numpy() if bn.center else 0.0
        h = (h - bn.moving_mean.numpy()) / np.sqrt(bn.moving_variance.numpy() + bn.epsilon)
        h = gamma * h + beta
        if j < len(head.denses) - 1:
            h = np.maximum(h, 0.0)
        hiddens.append(h)
    return hiddens


# --- ProjectionHead modes -----------------------------------------------------


def test_none_mode_is_identity():
    head = built_head(mode="none", out_dim=16)
    x = features()
    np.testing.assert_array_equal(head(x, training=True), x)
    hiddens = head.call_with_hiddens(x, training=True)
    assert len(hiddens) == 1
    np.testing.assert_array_equal(hiddens[0], x)
    assert head.weights == []
    assert head.output_dim(IN_DIM) == IN_DIM
    assert head.compute_output_shape((None, IN_DIM)) == (None, IN_DIM)


def test_linear_mode():
    head = built_head(mode="linear", out_dim=16, num_layers=3)  # num_layers unused
    assert len(head.denses) == 1 and len(head.bns) == 1
    assert head.denses[0].use_bias is False
    assert head.bns[0].center is False and head.bns[0].scale is True
    x = features()
    out = head(x, training=False)
    assert tuple(out.shape) == (BATCH, 16)
    hiddens = head.call_with_hiddens(x, training=False)
    assert len(hiddens) == 2
    np.testing.assert_allclose(hiddens[-1], out, rtol=1e-6, atol=1e-7)
    assert head.output_dim(IN_DIM) == 16


@pytest.mark.parametrize("num_layers", [1, 2, 3])
@pytest.mark.parametrize("hidden_dim", [None, 40])
def test_nonlinear_mode_structure(num_layers, hidden_dim):
    head = built_head(mode="nonlinear", out_dim=16, num_layers=num_layers, hidden_dim=hidden_dim)
    assert len(head.denses) == num_layers and len(head.bns) == num_layers
    assert head.num_linear_layers == num_layers
    width = IN_DIM if hidden_dim is None else hidden_dim
    assert [d.units for d in head.denses] == [width] * (num_layers - 1) + [16]
    # BN replaces the Dense bias everywhere; hidden layers keep a BN offset.
    assert all(d.use_bias is False for d in head.denses)
    assert [bn.center for bn in head.bns] == [True] * (num_layers - 1) + [False]

    x = features()
    hiddens = head.call_with_hiddens(x, training=True)
    assert len(hiddens) == num_layers + 1
    assert [tuple(h.shape) for h in hiddens] == (
        [(BATCH, IN_DIM)] + [(BATCH, width)] * (num_layers - 1) + [(BATCH, 16)]
    )
    for h in hiddens[1:-1]:
        assert np.min(h) >= 0.0  # taken after ReLU
    assert np.min(hiddens[-1]) < 0.0  # no ReLU on the projection
    assert tuple(head(x, training=True).shape) == (BATCH, 16)


@pytest.mark.parametrize("mode, num_layers", [("linear", 1), ("nonlinear", 2), ("nonlinear", 3)])
def test_inference_matches_numpy_reference(mode, num_layers):
    head = built_head(mode=mode, out_dim=8, num_layers=num_layers, batch_norm_epsilon=1e-3)
    randomize_bn(head)
    x = features(seed=3)
    expected = reference_inference(head, x)
    got = head.call_with_hiddens(x, training=False)
    assert len(got) == len(expected)
    for g, e in zip(got, expected, strict=True):
        np.testing.assert_allclose(g, e, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(head(x, training=False), expected[-1], rtol=1e-5, atol=1e-5)


def test_training_mode_uses_batch_statistics():
    # Tiny epsilon: the 0.01-stddev kernels give pre-BN variances near 1e-4.
    head = built_head(mode="nonlinear", out_dim=8, num_layers=2, batch_norm_epsilon=1e-10)
    randomize_bn(head)  # moving statistics must not be used in training mode
    for bn in head.bns:
        bn.gamma.assign(np.ones(bn.gamma.shape, "float32"))
    x = features(batch=32) * 5.0 + 3.0
    out = np.asarray(head(x, training=True))
    # Last BN has gamma 1 and no beta: batch-normalised columns.
    np.testing.assert_allclose(out.mean(axis=0), 0.0, atol=1e-4)
    np.testing.assert_allclose(out.std(axis=0), 1.0, atol=1e-3)


def test_dense_kernel_init_and_bn_settings():
    head = ProjectionHead(
        mode="nonlinear",
        num_layers=3,
        hidden_dim=256,
        batch_norm_decay=0.75,
        batch_norm_epsilon=1e-4,
        synchronized_bn=True,
        name="head_contrastive",
    )
    head.build((None, 256))
    kernel = head.denses[1].kernel.numpy()
    assert abs(kernel.mean()) < 1e-3
    assert kernel.std() == pytest.approx(0.01, rel=0.05)
    for bn in head.bns:
        assert "bn" in bn.name
        assert bn.momentum == pytest.approx(0.75)
        assert bn.epsilon == pytest.approx(1e-4)
        assert bn.synchronized is True
    bn_paths = [v.path for v in head.weights if "bn" in v.path]
    assert len(bn_paths) == 3 * 3 - 1 + 3  # gamma (+ beta) + two moving stats
    assert {v.path for v in head.weights} - set(bn_paths) == {
        f"head_contrastive/nl_{j}_dense/kernel" for j in range(3)
    }


def test_call_with_hiddens_builds_lazily():
    head = ProjectionHead(mode="nonlinear", out_dim=4, num_layers=2)
    hiddens = head.call_with_hiddens(features(), training=False)
    assert head.built and len(hiddens) == 3
    assert tuple(hiddens[-1].shape) == (BATCH, 4)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"mode": "mlp"}, "mode"),
        ({"num_layers": 0}, "num_layers"),
        ({"out_dim": 0}, "out_dim"),
        ({"hidden_dim": 0}, "hidden_dim"),
        ({"batch_norm_decay": 1.5}, "batch_norm_decay"),
        ({"batch_norm_epsilon": 0.0}, "batch_norm_epsilon"),
    ],
)
def test_projection_head_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ProjectionHead(**kwargs)


# --- LinearClassifier ---------------------------------------------------------


def test_linear_classifier_zero_init():
    clf = LinearClassifier(num_classes=5, zero_init=True)
    logits = clf(features())
    assert tuple(logits.shape) == (BATCH, 5)
    np.testing.assert_array_equal(logits, np.zeros((BATCH, 5), np.float32))
    np.testing.assert_array_equal(clf.dense.kernel.numpy(), 0.0)


def test_linear_classifier_default_init_and_names():
    clf = LinearClassifier(num_classes=300)
    clf.build((None, 200))
    assert clf.dense.use_bias is True
    kernel = clf.dense.kernel.numpy()
    assert kernel.std() == pytest.approx(0.01, rel=0.05)
    np.testing.assert_array_equal(clf.dense.bias.numpy(), 0.0)
    assert sorted(v.path for v in clf.weights) == [
        "head_supervised/classifier/bias",
        "head_supervised/classifier/kernel",
    ]
    x = features(dim=200)
    np.testing.assert_allclose(clf(x), x @ kernel, rtol=1e-5, atol=1e-6)


def test_linear_classifier_validation():
    with pytest.raises(ValueError, match="num_classes"):
        LinearClassifier(num_classes=0)


# --- Serialization ------------------------------------------------------------


@pytest.mark.parametrize(
    "layer_fn",
    [
        lambda: ProjectionHead(mode="none", out_dim=8),
        lambda: ProjectionHead(mode="linear", out_dim=8, synchronized_bn=True),
        lambda: ProjectionHead(
            mode="nonlinear",
            out_dim=8,
            num_layers=2,
            hidden_dim=12,
            batch_norm_decay=0.8,
            batch_norm_epsilon=1e-4,
        ),
        lambda: ProjectionHead(mode="nonlinear", out_dim=8, num_layers=3),
        lambda: LinearClassifier(num_classes=7, zero_init=True, name="probe"),
        lambda: LinearClassifier(num_classes=7),
    ],
)
def test_config_and_keras_file_round_trip(tmp_path, layer_fn):
    layer = layer_fn()
    config = layer.get_config()
    clone = type(layer).from_config(config)
    assert clone.get_config() == config

    inputs = keras.Input((IN_DIM,))
    model = keras.Model(inputs, layer(inputs))
    if isinstance(layer, ProjectionHead):
        randomize_bn(layer)
    x = features(seed=5)
    expected = np.asarray(model(x, training=False))

    path = tmp_path / "head.keras"
    model.save(path)
    restored = keras.saving.load_model(path)
    restored_layer = restored.layers[-1]
    assert type(restored_layer) is type(layer)
    assert restored_layer.get_config() == config
    np.testing.assert_array_equal(np.asarray(restored(x, training=False)), expected)
