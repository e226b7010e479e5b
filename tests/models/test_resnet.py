"""Tests for the ResNet v1 encoder (tf_simclr.models.resnet)."""

import re

import keras
import numpy as np
import pytest

from tf_simclr.models.resnet import ResNet, min_image_size

# Written out independently of the module's table so a wrong table fails.
EXPECTED_BLOCKS = {
    18: [2, 2, 2, 2],
    34: [3, 4, 6, 3],
    50: [3, 4, 6, 3],
    101: [3, 4, 23, 3],
    152: [3, 8, 36, 3],
    200: [3, 24, 36, 3],
}
SMALL_WIDTH = 0.125


def trainable_param_count(model: keras.Model) -> int:
    return sum(int(np.prod(v.shape)) for v in model.trainable_weights)


def bn_layers(model: keras.Model) -> list:
    return [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]


def images(batch: int, size: int, seed: int = 0, width: int | None = None) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.uniform(0.0, 1.0, (batch, size, width or size, 3)).astype("float32")


def randomize_bn_statistics(model: keras.Model, seed: int = 0) -> None:
    """Non-trivial BN parameters so round-trip tests compare real values."""
    rng = np.random.default_rng(seed)
    for layer in bn_layers(model):
        gamma, beta, mean, var = layer.get_weights()
        layer.set_weights(
            [
                rng.uniform(0.5, 1.5, gamma.shape).astype("float32"),
                rng.normal(0.0, 0.1, beta.shape).astype("float32"),
                rng.normal(0.0, 0.1, mean.shape).astype("float32"),
                rng.uniform(0.5, 1.5, var.shape).astype("float32"),
            ]
        )


def block_prefixes(model: keras.Model, group: int) -> list[str]:
    names = {
        m.group(0)
        for layer in model.layers
        if (m := re.match(rf"block_group{group}_block\d+_", layer.name))
    }
    return sorted(names, key=lambda n: int(re.search(r"block(\d+)_$", n).group(1)))


# --- Parameter counts -------------------------------------------------------


def test_resnet18_cifar_trainable_param_count():
    model = ResNet(18, cifar_stem=True)
    assert trainable_param_count(model) == 11_173_056
    assert model.feature_dim == 512


def test_resnet50_imagenet_trainable_param_count():
    model = ResNet(50, cifar_stem=False)
    assert trainable_param_count(model) == 23_508_032
    assert model.feature_dim == 2048


# --- Shapes and structure ---------------------------------------------------


@pytest.mark.parametrize("depth", sorted(EXPECTED_BLOCKS))
@pytest.mark.parametrize("cifar_stem, size", [(True, 32), (False, 64)])
def test_output_shape_and_blocks_per_group(depth, cifar_stem, size):
    model = ResNet(depth, width_multiplier=SMALL_WIDTH, cifar_stem=cifar_stem)
    expected_dim = (512 if depth < 50 else 2048) * SMALL_WIDTH
    assert model.feature_dim == expected_dim

    out = model(images(2, size), training=False)
    assert tuple(out.shape) == (2, expected_dim)
    assert np.all(np.isfinite(out))

    blocks = [len(block_prefixes(model, g)) for g in range(1, 5)]
    assert blocks == EXPECTED_BLOCKS[depth]
    convs_per_block = 2 if depth < 50 else 3
    assert model.get_layer(f"block_group1_block0_conv{convs_per_block}")
    with pytest.raises(ValueError):
        model.get_layer(f"block_group1_block0_conv{convs_per_block + 1}")


@pytest.mark.parametrize("cifar_stem", [True, False])
def test_accepts_min_size_and_non_square_inputs(cifar_stem):
    model = ResNet(18, width_multiplier=SMALL_WIDTH, cifar_stem=cifar_stem)
    size = min_image_size(cifar_stem)
    assert tuple(model(images(1, size)).shape) == (1, model.feature_dim)
    assert tuple(model(images(1, size + 3, width=2 * size + 1)).shape) == (1, model.feature_dim)


def test_min_image_size():
    assert min_image_size(True) == 8
    assert min_image_size(False) == 32


@pytest.mark.parametrize(
    "cifar_stem, size, final_spatial",
    [(True, 32, 4), (False, 64, 2)],
)
def test_stem(cifar_stem, size, final_spatial):
    model = ResNet(18, width_multiplier=SMALL_WIDTH, cifar_stem=cifar_stem)
    conv = model.get_layer("stem_conv")
    assert conv.use_bias is False
    if cifar_stem:
        assert conv.kernel_size == (3, 3) and conv.strides == (1, 1) and conv.padding == "same"
        names = [layer.name for layer in model.layers]
        assert "stem_pool" not in names and "stem_conv_pad" not in names
    else:
        assert conv.kernel_size == (7, 7) and conv.strides == (2, 2) and conv.padding == "valid"
        assert model.get_layer("stem_conv_pad").padding == ((3, 3), (3, 3))
        pool = model.get_layer("stem_pool")
        assert pool.pool_size == (3, 3) and pool.strides == (2, 2) and pool.padding == "same"
    # Total downsampling: 8 with the CIFAR stem, 32 with the ImageNet stem.
    last = keras.Model(model.input, model.get_layer("block_group4_block1_out").output)
    assert tuple(last(images(1, size)).shape)[1:3] == (final_spatial, final_spatial)


def test_fixed_padding_and_conv_settings():
    model = ResNet(50, width_multiplier=SMALL_WIDTH)
    convs = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    assert convs
    for conv in convs:
        assert conv.use_bias is False, conv.name
        assert isinstance(conv.kernel_initializer, keras.initializers.VarianceScaling)
        init = conv.kernel_initializer.get_config()
        assert (init["scale"], init["mode"], init["distribution"]) == (
            1.0,
            "fan_in",
            "truncated_normal",
        )
        k = conv.kernel_size[0]
        if conv.strides == (1, 1):
            assert conv.padding == "same", conv.name
        else:
            assert conv.padding == "valid", conv.name
            if k > 1:
                pad = model.get_layer(f"{conv.name}_pad").padding
                assert pad == (((k - 1) // 2, k // 2),) * 2
    # Bottleneck: stride on the 3x3 conv, projection conv with the same stride.
    assert model.get_layer("block_group2_block0_conv1").strides == (1, 1)
    assert model.get_layer("block_group2_block0_conv2").strides == (2, 2)
    assert model.get_layer("block_group2_block0_shortcut_conv").strides == (2, 2)
    assert model.get_layer("block_group2_block1_conv2").strides == (1, 1)


@pytest.mark.parametrize("depth", [18, 50])
def test_projection_shortcut_on_first_block_of_every_group(depth):
    model = ResNet(depth, width_multiplier=SMALL_WIDTH)
    names = {layer.name for layer in model.layers}
    for group in range(1, 5):
        # Even block_group1 of ResNet-18, where shapes already match.
        assert f"block_group{group}_block0_shortcut_conv" in names
        assert f"block_group{group}_block0_shortcut_bn" in names
        assert f"block_group{group}_block1_shortcut_conv" not in names


def test_layer_and_variable_names_are_selectable():
    model = ResNet(18, width_multiplier=SMALL_WIDTH, cifar_stem=True)
    for layer in model.layers:
        is_bn = isinstance(layer, keras.layers.BatchNormalization)
        assert is_bn == ("bn" in layer.name), layer.name
    for variable in model.weights:
        assert re.match(r"(stem_|block_group[1-4]_)", variable.path), variable.path
    # Each stage owns a non-empty, disjoint set of variables.
    per_group = [
        {v.path for v in model.trainable_weights if v.path.startswith(f"block_group{g}")}
        for g in range(1, 5)
    ]
    assert all(per_group)
    assert sum(len(s) for s in per_group) + 3 == len(model.trainable_weights)  # + stem


@pytest.mark.parametrize("width, stem, groups, dim", [(0.5, 32, (32, 64, 128, 256), 256)])
def test_width_multiplier_channels(width, stem, groups, dim):
    model = ResNet(18, width_multiplier=width, cifar_stem=True)
    assert model.get_layer("stem_conv").filters == stem
    for g, filters in enumerate(groups, start=1):
        assert model.get_layer(f"block_group{g}_block0_conv1").filters == filters
        assert model.get_layer(f"block_group{g}_block0_shortcut_conv").filters == filters
    assert model.feature_dim == dim
    assert tuple(model(images(1, 8)).shape) == (1, dim)

    r50 = ResNet(50, width_multiplier=width)
    assert r50.get_layer("block_group4_block0_conv2").filters == 256
    assert r50.get_layer("block_group4_block0_conv3").filters == 1024
    assert r50.feature_dim == 1024


# --- Initialisation and BatchNormalization ------------------------------------


@pytest.mark.parametrize("depth, last_bn", [(18, "bn2"), (50, "bn3")])
def test_last_bn_of_residual_branch_has_zero_gamma(depth, last_bn):
    model = ResNet(depth, width_multiplier=SMALL_WIDTH)
    gammas = {v.path: v.numpy() for v in model.weights if v.path.endswith("/gamma")}
    zero = [p for p in gammas if re.fullmatch(rf"block_group\d_block\d+_{last_bn}/gamma", p)]
    assert len(zero) == sum(EXPECTED_BLOCKS[depth])
    for path, gamma in gammas.items():
        expected = 0.0 if path in zero else 1.0
        np.testing.assert_array_equal(gamma, np.full_like(gamma, expected), err_msg=path)


def test_fresh_identity_block_passes_input_through():
    """With zero gamma a block without projection computes relu(x) = x."""
    model = ResNet(18, width_multiplier=SMALL_WIDTH, cifar_stem=True)
    probe = keras.Model(
        model.input,
        [
            model.get_layer("block_group1_block0_out").output,
            model.get_layer("block_group1_block1_out").output,
            model.get_layer("block_group1_block0_shortcut_bn").output,
        ],
    )
    for training in (False, True):
        block0, block1, shortcut = (np.asarray(t) for t in probe(images(2, 16), training=training))
        assert np.abs(block0).max() > 0
        np.testing.assert_allclose(block1, block0, rtol=0, atol=1e-6)
        np.testing.assert_allclose(block0, np.maximum(shortcut, 0.0), rtol=0, atol=1e-6)


def test_batch_norm_momentum_and_epsilon():
    model = ResNet(18, width_multiplier=SMALL_WIDTH, batch_norm_decay=0.7, batch_norm_epsilon=1e-3)
    layers = bn_layers(model)
    assert len(layers) == 1 + 2 * 8 + 4  # stem + two per block + four shortcuts
    for layer in layers:
        assert layer.momentum == pytest.approx(0.7), layer.name
        assert layer.epsilon == pytest.approx(1e-3), layer.name

    # One training step updates the moving mean as decay * old + (1 - decay) * batch.
    x = images(4, 32)
    stem_conv = keras.Model(model.input, model.get_layer("stem_conv").output)
    batch_mean = np.asarray(stem_conv(x)).mean(axis=(0, 1, 2))
    model(x, training=True)
    moving_mean = model.get_layer("stem_bn").moving_mean.numpy()
    np.testing.assert_allclose(moving_mean, 0.3 * batch_mean, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("synchronized", [True, False])
def test_synchronized_bn_flag_reaches_every_bn(synchronized):
    model = ResNet(50, width_multiplier=SMALL_WIDTH, synchronized_bn=synchronized)
    layers = bn_layers(model)
    assert len(layers) == 1 + 3 * 16 + 4
    assert all(layer.synchronized is synchronized for layer in layers)


# --- Validation ---------------------------------------------------------------


@pytest.mark.parametrize("depth", [0, 16, 26, 49, "50"])
def test_invalid_depth_lists_allowed(depth):
    with pytest.raises(ValueError, match=r"18, 34, 50, 101, 152, 200"):
        ResNet(depth)


@pytest.mark.parametrize("width", [0, 0.0, -1.0])
def test_invalid_width(width):
    with pytest.raises(ValueError, match="width_multiplier"):
        ResNet(18, width_multiplier=width)


# --- Serialization ------------------------------------------------------------


def make_small(**overrides) -> ResNet:
    kwargs = dict(
        depth=18,
        width_multiplier=SMALL_WIDTH,
        cifar_stem=True,
        batch_norm_decay=0.8,
        batch_norm_epsilon=2e-5,
        synchronized_bn=False,
        name="encoder",
    )
    kwargs.update(overrides)
    model = ResNet(**kwargs)
    randomize_bn_statistics(model)
    return model


def test_get_config_from_config_round_trip():
    model = make_small()
    config = model.get_config()
    assert config == {
        "name": "encoder",
        "trainable": True,
        "depth": 18,
        "width_multiplier": SMALL_WIDTH,
        "cifar_stem": True,
        "batch_norm_decay": 0.8,
        "batch_norm_epsilon": 2e-5,
        "synchronized_bn": False,
        "dtype": keras.dtype_policies.serialize(keras.DTypePolicy("float32")),
    }
    restored = ResNet.from_config(config)
    assert restored.get_config() == config
    assert restored.feature_dim == model.feature_dim
    assert [v.path for v in restored.weights] == [v.path for v in model.weights]
    restored.set_weights(model.get_weights())
    x = images(2, 16)
    np.testing.assert_array_equal(restored(x, training=False), model(x, training=False))


@pytest.mark.parametrize("depth, cifar_stem, size", [(18, True, 16), (50, False, 32)])
def test_keras_save_load_round_trip(tmp_path, depth, cifar_stem, size):
    model = make_small(depth=depth, cifar_stem=cifar_stem)
    x = images(2, size, seed=1)
    expected = np.asarray(model(x, training=False))

    path = tmp_path / "resnet.keras"
    model.save(path)
    restored = keras.saving.load_model(path)

    assert type(restored) is ResNet
    assert restored.get_config() == model.get_config()
    np.testing.assert_array_equal(np.asarray(restored(x, training=False)), expected)


@pytest.mark.parametrize("size", [8, 9])
def test_strided_pointwise_conv_is_the_strided_tf_conv(size):
    """The projection shortcut's 1x1 stride-2 conv, computed as a subsampling and a stride-1
    conv (a oneDNN workaround), gives the outputs and kernel gradient of `tf.nn.conv2d`."""
    import tensorflow as tf

    model = ResNet(18, width_multiplier=0.125, cifar_stem=True)
    layer = model.get_layer("block_group2_block0_shortcut_conv")
    assert layer.strides == (2, 2) and layer.kernel_size == (1, 1)
    rng = np.random.default_rng(0)
    x = tf.constant(rng.normal(size=(4, size, size, 8)), tf.float32)
    weights = tf.constant(rng.normal(size=(4, (size + 1) // 2, (size + 1) // 2, 16)), tf.float32)
    with tf.GradientTape(persistent=True) as tape:
        ours = layer(x)
        theirs = tf.nn.conv2d(x, layer.kernel, 2, "VALID")
        loss_ours, loss_theirs = (tf.reduce_sum(y * weights) for y in (ours, theirs))
    np.testing.assert_allclose(ours, theirs, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(
        tape.gradient(loss_ours, layer.kernel),
        tape.gradient(loss_theirs, layer.kernel),
        rtol=1e-5,
        atol=1e-5,
    )


def test_tiny_encoder_trains_at_an_odd_batch():
    """TensorFlow 2.21's oneDNN filter gradient of a 1x1 stride-2 conv corrupts the heap
    with 8 input channels, an odd batch and 32x32 inputs: without the workaround in
    `resnet._Conv2D` this test aborts the process ("malloc(): ...")."""
    import tensorflow as tf

    model = ResNet(18, width_multiplier=0.125, cifar_stem=True)
    images = tf.random.stateless_uniform([3, 32, 32, 3], seed=[0, 1])

    @tf.function
    def gradients():
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(tf.square(model(images, training=True)))
        return tape.gradient(loss, model.trainable_weights)

    for _ in range(5):
        grads = gradients()
    assert all(np.all(np.isfinite(g)) for g in grads)
