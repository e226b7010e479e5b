"""Tests for the selective-kernel (SK) and squeeze-excitation (SE) ResNet options.

Checked against the official google-research/simclr `tf2/resnet.py`: exact
parameter counts, the reference's variables one by one (a copy of the
variable list of a ResNet-50 SK built by the reference code, in
`tests/fixtures/`) and, when the shared reference fixture is on this machine,
the reference model's outputs for the same weights.
"""

import json
import math
import pathlib
import re
import zlib

import keras
import numpy as np
import pytest

from tf_simclr.models.resnet import ResNet

SK_RATIO = 0.0625  # SimCLRv2's ResNet-SK
TINY_WIDTH = 0.125
FIXTURES = pathlib.Path(__file__).parents[1] / "fixtures"
REFERENCE_VARIABLES = FIXTURES / "reference_r50_1x_sk1_backbone_variables.json"
# The full reference fixture (outputs for given weights); absent on most machines.
SHARED_REFERENCE = (
    pathlib.Path(__file__).parents[2]
    / ".."
    / "shared"
    / "fixtures"
    / "reference_tf2"
    / "r50_1x_sk1"
)

# Layers of one block, stem or group in the reference's order of variable
# creation (`BottleneckBlock`/`ResidualBlock.__init__` create the projection
# first, then the residual branch, then the SE layer); our functional model
# lists its layers in another (topological) order. Reference variable i <-> the
# i-th of our variables in this order. The importer of the published models maps by
# the reference's attribute paths instead (`tf_simclr.official.encoder_variable_map`,
# tested in tests/test_official.py).
REFERENCE_STEM_ORDER = [
    "stem_conv1",
    "stem_bn1",
    "stem_conv2",
    "stem_bn2",
    "stem_conv3",
    "stem_bn3",
]
REFERENCE_BLOCK_ORDER = [
    "shortcut_conv",
    "shortcut_bn",
    "conv1",
    "bn1",
    "sk_conv",  # SK_Conv2D.conv2d_fixed_padding
    "sk_bn",  # SK_Conv2D.batch_norm_relu
    "sk_gate_conv1",  # SK_Conv2D.conv2d_0
    "sk_gate_bn",  # SK_Conv2D.batch_norm_relu_1
    "sk_gate_conv2",  # SK_Conv2D.conv2d_1
    "conv2",
    "bn2",
    "conv3",
    "bn3",
    "se_reduce",
    "se_expand",
]


def trainable_param_count(model: keras.Model) -> int:
    return sum(math.prod(v.shape) for v in model.trainable_weights)


def images(batch: int, size: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.uniform(0.0, 1.0, (batch, size, size, 3)).astype("float32")


def randomize_weights(model: keras.Model, seed: int = 0) -> None:
    """Non-zero BN gammas (zero-gamma blocks pass no gradient) and statistics, random biases."""
    rng = np.random.default_rng(seed)
    for variable in model.weights:
        kind = variable.path.rsplit("/", 1)[-1]
        if kind in ("gamma", "moving_variance"):
            value = rng.uniform(0.5, 1.5, variable.shape)
        elif kind in ("beta", "moving_mean", "bias"):
            value = rng.normal(0.0, 0.1, variable.shape)
        else:
            continue
        variable.assign(value.astype("float32"))


def reference_order_key(layer_name: str) -> tuple[int, int, int]:
    if layer_name.startswith("stem_"):
        return (0, 0, REFERENCE_STEM_ORDER.index(layer_name))
    group, block, role = re.fullmatch(r"block_group(\d)_block(\d+)_(\w+)", layer_name).groups()
    return (int(group), int(block), REFERENCE_BLOCK_ORDER.index(role))


def in_reference_order(variables) -> list:
    """Our variables in the reference's order (stable within a layer, e.g. gamma before beta)."""
    return sorted(variables, key=lambda v: reference_order_key(v.path.split("/")[0]))


def load_reference_variables() -> list[tuple[str, tuple[int, ...], bool]]:
    data = json.loads(REFERENCE_VARIABLES.read_text())
    return [(name, tuple(shape), trainable) for name, shape, trainable in data["variables"]]


@pytest.fixture(scope="module")
def r50_sk() -> ResNet:
    return ResNet(50, sk_ratio=SK_RATIO)


def tiny(**overrides) -> ResNet:
    kwargs = dict(depth=50, width_multiplier=TINY_WIDTH, sk_ratio=SK_RATIO)
    kwargs.update(overrides)
    model = ResNet(**kwargs)
    randomize_weights(model)
    return model


# --- Parameter counts (reference: the r50_1x_sk{0,1} fixtures' README) --------


def test_resnet50_sk_trainable_param_count(r50_sk):
    assert trainable_param_count(r50_sk) == 35_215_584
    assert len(r50_sk.trainable_weights) == 229
    assert len(r50_sk.non_trainable_weights) == 142
    assert r50_sk.feature_dim == 2048


def test_resnet50_without_sk_trainable_param_count():
    model = ResNet(50, sk_ratio=0.0, se_ratio=0.0)
    assert trainable_param_count(model) == 23_508_032


@pytest.mark.parametrize("depth, plain_backbone", [(18, 11_176_512), (34, 21_284_672)])
def test_sk_basic_block_param_count(depth, plain_backbone):
    """Basic blocks: SK changes only the stem and the shortcuts, as in the reference.

    `plain_backbone` is the standard ResNet without its 1000-class layer (torchvision's
    11,689,512 / 21,797,672 minus 513,000). The reference adds a 64->64 projection to
    block 1 of group 1 (4,096 + 128 BN) and the ResNet-D stem replaces the 7x7x3x64
    conv (9,408) by 3x3 convs 3->32->32->64 (864 + 9,216 + 18,432) plus two BNs (128).
    The average-pool shortcut has the same 1x1 conv as the strided one.
    """
    model = ResNet(depth, sk_ratio=SK_RATIO)
    resnet_d_stem = 864 + 9_216 + 18_432 + 2 * 64 - 9_408
    assert trainable_param_count(model) == plain_backbone + 4_096 + 128 + resnet_d_stem


@pytest.mark.slow
def test_resnet152_3x_sk_param_count():
    """SimCLRv2 (Chen et al. 2020), Table 1 / Fig. 1: "ResNet-152 (3x+SK)", 795M parameters.

    Building it (no forward pass) takes about 30 s and 4.5 GB.
    """
    model = ResNet(152, width_multiplier=3, sk_ratio=SK_RATIO)
    assert trainable_param_count(model) == 794_704_160
    assert sum(math.prod(v.shape) for v in model.weights) == 795_235_360


# --- Layer structure ------------------------------------------------------------


def test_variables_match_reference_one_by_one(r50_sk):
    """Each reference variable has one of ours, same shape and kind, in the mapped order.

    The reference lists trainable variables first, then BN moving statistics,
    each in creation order; `in_reference_order` puts ours in that order.
    """
    reference = load_reference_variables()
    ours = in_reference_order(r50_sk.trainable_weights) + in_reference_order(
        r50_sk.non_trainable_weights
    )
    assert len(ours) == len(reference) == 371
    for variable, (ref_name, ref_shape, ref_trainable) in zip(ours, reference, strict=True):
        context = f"{variable.path} <-> {ref_name}"
        assert tuple(variable.shape) == ref_shape, context
        assert variable.trainable == ref_trainable, context
        assert variable.path.rsplit("/", 1)[-1] == ref_name.rsplit("/", 1)[-1][: -len(":0")]
        # Same block and, inside a block, SK_Conv2D's variables are our sk_* layers.
        ref_block = re.search(r"resnet/(block_group\d)/\w+?(?:_(\d+))?/", ref_name)
        if ref_block is None:
            assert variable.path.startswith("stem_"), context
        else:
            assert variable.path.startswith(f"{ref_block.group(1)}_"), context
        assert ("/sk__conv2d" in ref_name) == ("_sk_" in variable.path), context


def test_variable_shapes_per_block_match_reference(r50_sk):
    """Order-free check: the multiset of shapes of every block equals the reference's."""
    reference = load_reference_variables()
    ref_blocks: dict[str, list] = {}
    for name, shape, _ in reference:
        # Reference blocks are numbered across groups: bottleneck_block, _1, ..., _15.
        match = re.match(r"resnet/block_group\d/bottleneck_block(?:_(\d+))?/", name)
        key = "stem" if match is None else int(match.group(1) or 0)
        ref_blocks.setdefault(key, []).append(shape)
    ours: dict[str, list] = {}
    block_index: dict[str, int] = {}
    for variable in r50_sk.weights:
        layer = variable.path.split("/")[0]
        match = re.match(r"block_group\d_block\d+_", layer)
        if match is None:
            key = "stem"
        else:
            key = block_index.setdefault(match.group(0), len(block_index))
        ours.setdefault(key, []).append(tuple(variable.shape))
    assert ours.keys() == ref_blocks.keys()
    for key, shapes in ref_blocks.items():
        assert sorted(ours[key]) == sorted(shapes), key


def test_resnet_d_stem_and_shortcuts(r50_sk):
    names = [layer.name for layer in r50_sk.layers]
    assert "stem_conv" not in names
    for i, (filters, strides) in enumerate([(32, 2), (32, 1), (64, 1)], start=1):
        conv = r50_sk.get_layer(f"stem_conv{i}")
        assert (conv.filters, conv.kernel_size, conv.strides) == (filters, (3, 3), (strides,) * 2)
    assert r50_sk.get_layer("stem_conv1_pad").padding == ((1, 1), (1, 1))
    assert r50_sk.get_layer("stem_pool").strides == (2, 2)
    for group in range(1, 5):
        prefix = f"block_group{group}_block0_"
        pool = r50_sk.get_layer(f"{prefix}shortcut_pool")
        assert pool.pool_size == (2, 2)
        assert r50_sk.get_layer(f"{prefix}shortcut_conv").strides == (1, 1)
        if group == 1:
            assert pool.strides == (1, 1) and pool.padding == "same"
            assert f"{prefix}shortcut_pad" not in names
        else:
            assert pool.strides == (2, 2) and pool.padding == "valid"
            assert r50_sk.get_layer(f"{prefix}shortcut_pad").padding == ((0, 1), (0, 1))
        assert f"block_group{group}_block1_shortcut_pool" not in names


def test_sk_conv_replaces_bottleneck_3x3(r50_sk):
    names = {layer.name for layer in r50_sk.layers}
    assert not any(re.fullmatch(r"block_group\d_block\d+_(conv2|bn2)", n) for n in names)
    for group, filters in enumerate([64, 128, 256, 512], start=1):
        for block in (0, 1):
            prefix = f"block_group{group}_block{block}_"
            conv = r50_sk.get_layer(f"{prefix}sk_conv")
            assert (conv.filters, conv.kernel_size) == (2 * filters, (3, 3))
            assert conv.strides == ((2, 2) if group > 1 and block == 0 else (1, 1))
            # max(int(filters * 0.0625), 32) is 32 in every group of ResNet-50 1x.
            assert r50_sk.get_layer(f"{prefix}sk_gate_conv1").filters == 32
            assert r50_sk.get_layer(f"{prefix}sk_gate_conv2").filters == 2 * filters
            assert not r50_sk.get_layer(f"{prefix}sk_gate_conv1").use_bias
            assert r50_sk.get_layer(f"{prefix}conv3").filters == 4 * filters


def test_sk_gate_width_follows_ratio():
    model = ResNet(50, width_multiplier=TINY_WIDTH, sk_ratio=0.5)
    # Group 4 of width 0.125 has 64 filters: max(int(64 * 0.5), 32) = 32; ratio 1 gives 64.
    assert model.get_layer("block_group4_block0_sk_gate_conv1").filters == 32
    model = ResNet(50, width_multiplier=TINY_WIDTH, sk_ratio=1.0)
    assert model.get_layer("block_group4_block0_sk_gate_conv1").filters == 64


@pytest.mark.parametrize("depth", [18, 34])
def test_sk_basic_blocks_have_no_sk_conv(depth):
    """The reference's ResidualBlock ignores sk_ratio apart from its ResNet-D shortcut."""
    model = ResNet(depth, width_multiplier=TINY_WIDTH, sk_ratio=SK_RATIO)
    names = {layer.name for layer in model.layers}
    assert not any("_sk_" in n for n in names)
    assert {"stem_conv1", "stem_conv2", "stem_conv3", "block_group2_block0_shortcut_pool"} <= names
    assert model.get_layer("block_group2_block0_conv1").strides == (2, 2)
    assert model.get_layer("block_group2_block0_shortcut_conv").strides == (1, 1)
    assert tuple(model(images(1, 32)).shape) == (1, model.feature_dim)


def test_sk_with_cifar_stem_keeps_the_cifar_stem():
    model = ResNet(50, width_multiplier=TINY_WIDTH, cifar_stem=True, sk_ratio=SK_RATIO)
    names = {layer.name for layer in model.layers}
    assert "stem_conv" in names and "stem_conv1" not in names and "stem_pool" not in names
    assert "block_group1_block0_sk_conv" in names
    assert tuple(model(images(1, 8)).shape) == (1, model.feature_dim)


@pytest.mark.parametrize("depth, filters, channels", [(18, 32, 32), (50, 32, 128)])
def test_se_layers(depth, filters, channels):
    """SE width from the block's base filters, also in bottleneck blocks (reference)."""
    model = ResNet(depth, width_multiplier=0.5, se_ratio=0.25)
    prefix = "block_group1_block1_"
    reduce, expand = model.get_layer(f"{prefix}se_reduce"), model.get_layer(f"{prefix}se_expand")
    assert (reduce.filters, expand.filters) == (int(filters * 0.25), channels)
    assert reduce.use_bias and expand.use_bias and reduce.kernel_size == (1, 1)
    names = {layer.name for layer in model.layers}
    assert not any("_sk_" in n or "shortcut_pool" in n for n in names)
    blocks = 8 if depth == 18 else 16
    assert sum(n.endswith("_se_scale") for n in names) == blocks


def numpy_squeeze_excitation(x, reduce_kernel, reduce_bias, expand_kernel, expand_bias):
    """The reference's SE block (google-research/simclr tf2/resnet.py, `SE_Layer.call`):
    x * sigmoid(expand(relu(reduce(mean over H, W of x)))), 1x1 convs with bias."""
    squeezed = x.mean(axis=(1, 2), keepdims=True)
    hidden = np.maximum(squeezed @ reduce_kernel[0, 0] + reduce_bias, 0.0)
    gate = 1.0 / (1.0 + np.exp(-(hidden @ expand_kernel[0, 0] + expand_bias)))
    return x * gate


@pytest.mark.parametrize("depth, bn", [(18, "bn2"), (50, "bn3")])
def test_squeeze_excitation_matches_the_reference_numbers(depth, bn):
    # Issue 23: structure and gradients alone let an SE without its global-average squeeze
    # through. Random BN and SE parameters (the block's last BN starts at gamma 0, which
    # would make the SE input 0); the block's SE input and output from the model's graph.
    keras.utils.set_random_seed(0)
    model = ResNet(depth, width_multiplier=TINY_WIDTH, cifar_stem=True, se_ratio=0.5)
    rng = np.random.default_rng(0)
    for variable in model.weights:
        if variable.path.endswith(("gamma", "beta", "bias")):
            low = 0.5 if variable.path.endswith("gamma") else -1.0
            variable.assign(rng.uniform(low, 1.5, variable.shape).astype("float32"))
    prefix = "block_group1_block1_"
    probe = keras.Model(
        model.inputs,
        [model.get_layer(f"{prefix}{bn}").output, model.get_layer(f"{prefix}se_scale").output],
    )
    images = rng.uniform(size=(3, 16, 16, 3)).astype("float32")
    se_in, se_out = (np.asarray(t, np.float64) for t in probe(images, training=False))
    reduce, expand = model.get_layer(f"{prefix}se_reduce"), model.get_layer(f"{prefix}se_expand")
    want = numpy_squeeze_excitation(
        se_in, *(np.asarray(w, np.float64) for w in (*reduce.weights, *expand.weights))
    )
    assert np.abs(se_in.mean(axis=(1, 2)) - se_in[:, :1, :1].mean(axis=(1, 2))).max() > 1e-2
    np.testing.assert_allclose(se_out, want, rtol=1e-4, atol=1e-5)


def test_every_bn_is_named_bn():
    model = ResNet(50, width_multiplier=TINY_WIDTH, sk_ratio=SK_RATIO, se_ratio=0.25)
    for layer in model.layers:
        is_bn = isinstance(layer, keras.layers.BatchNormalization)
        assert is_bn == ("bn" in layer.name), layer.name
    for variable in model.weights:
        assert re.match(r"(stem_|block_group[1-4]_)", variable.path), variable.path


# --- Numerics -------------------------------------------------------------------


def test_stream_mix_matches_reference_formula():
    """softmax over the two streams of split(logits), applied to split(streams)."""
    rng = np.random.default_rng(0)
    streams = rng.normal(size=(2, 3, 3, 8)).astype("float32")
    logits = rng.normal(size=(2, 1, 1, 8)).astype("float32")
    model = ResNet(50, width_multiplier=TINY_WIDTH, sk_ratio=SK_RATIO)
    mix = model.get_layer("block_group1_block0_sk_mix")
    out = np.asarray(mix([streams, logits]))
    a, b = logits[..., :4], logits[..., 4:]
    w_a = np.exp(a) / (np.exp(a) + np.exp(b))
    np.testing.assert_allclose(
        out, w_a * streams[..., :4] + (1 - w_a) * streams[..., 4:], rtol=1e-5
    )
    pool = model.get_layer("block_group1_block0_sk_pool")
    expected = (streams[..., :4] + streams[..., 4:]).mean(axis=(1, 2), keepdims=True)
    np.testing.assert_allclose(np.asarray(pool(streams)), expected, rtol=1e-5)


def reference_value(name: str, shape: tuple[int, ...], seed: int) -> np.ndarray:
    """The shared fixture's rule for the value of the variable `name` (its manifest.json)."""
    name = name[: -len(":0")]
    g = np.random.default_rng(zlib.crc32(name.encode()) ^ seed)
    kind = name.rsplit("/", 1)[-1]
    if kind == "kernel":
        return g.standard_normal(shape) * np.sqrt(2.0 / math.prod(shape[:-1]))
    if kind == "gamma":
        return g.uniform(0.2, 0.5, shape)
    if kind in ("beta", "bias", "moving_mean"):
        return g.normal(0.0, 0.1, shape)
    if kind == "moving_variance":
        return g.uniform(0.5, 1.5, shape)
    raise ValueError(name)


@pytest.mark.skipif(
    not (SHARED_REFERENCE / "expected.npz").exists(), reason="shared reference fixture absent"
)
def test_outputs_match_reference_model(r50_sk):
    """The reference ResNet-50 SK's outputs, given its weights through the variable mapping."""
    seed = json.loads(REFERENCE_VARIABLES.read_text())["seed"]
    reference = load_reference_variables()
    ours = in_reference_order(r50_sk.trainable_weights) + in_reference_order(
        r50_sk.non_trainable_weights
    )
    original = [v.numpy() for v in ours]
    try:
        for variable, (name, shape, _) in zip(ours, reference, strict=True):
            variable.assign(reference_value(name, shape, seed).astype("float32"))
        expected = np.load(SHARED_REFERENCE / "expected.npz")
        taps = {
            "initial_conv": "stem_conv3",
            "initial_max_pool": "stem_pool",
            "block_group1": "block_group1_block2_out",
            "block_group2": "block_group2_block3_out",
            "block_group3": "block_group3_block5_out",
            "block_group4": "block_group4_block2_out",
        }
        probe = keras.Model(
            r50_sk.input,
            [r50_sk.get_layer(layer).output for layer in taps.values()] + [r50_sk.output],
        )
        outputs = probe(expected["images"], training=False)
        for key, out in zip([*taps, "final_avg_pool"], outputs, strict=True):
            ref = expected[key]
            scale = np.abs(ref).max()
            np.testing.assert_allclose(np.asarray(out), ref, rtol=0, atol=1e-4 * scale, err_msg=key)
    finally:
        for variable, value in zip(ours, original, strict=True):
            variable.assign(value)


@pytest.mark.parametrize(
    "depth, ratios",
    [
        (50, dict(sk_ratio=SK_RATIO)),
        # se_ratio 1: at width 0.125, 0.25 leaves SE 2 hidden ReLUs, which can all be off.
        (50, dict(sk_ratio=SK_RATIO, se_ratio=1.0)),
        (18, dict(sk_ratio=SK_RATIO, se_ratio=1.0)),
    ],
)
def test_forward_and_every_variable_gets_a_gradient(depth, ratios):
    import tensorflow as tf

    model = tiny(depth=depth, **ratios)
    x = images(2, 32)
    inference = np.asarray(model(x, training=False))
    assert inference.shape == (2, model.feature_dim) and np.all(np.isfinite(inference))
    with tf.GradientTape() as tape:
        features = model(x, training=True)
        loss = tf.reduce_sum(features * tf.range(features.shape[-1], dtype=features.dtype))
    grads = tape.gradient(loss, model.trainable_weights)
    for variable, grad in zip(model.trainable_weights, grads, strict=True):
        assert grad is not None, variable.path
        grad = np.asarray(grad)
        assert np.all(np.isfinite(grad)) and np.abs(grad).max() > 0, variable.path
    # Training mode uses batch statistics, so it differs from inference.
    assert not np.allclose(np.asarray(features), inference)


# --- Two replicas train like one device ----------------------------------------------

# The smallest network with selective kernels: they sit in bottleneck blocks, so ResNet-50
# (the shallowest bottleneck layout); width 1/16 gives 4..32 filters per group (the SK
# gate keeps its floor of 32 channels). The ImageNet stem at 32 px: the ResNet-D stem.
SK_REPLICA_WIDTH = 0.0625


def _sk_simclr_one_step(strategy, data, synchronized_bn):
    """One SGD step (learning rate 1: the step is minus the gradient) of a fresh SK SimCLR
    with fixed initial weights; returns (initial weights, final weights, loss)."""
    import tensorflow as tf

    from tf_simclr.models import ProjectionHead, SimCLR

    with strategy.scope():
        keras.utils.set_random_seed(1)
        encoder = ResNet(
            50,
            width_multiplier=SK_REPLICA_WIDTH,
            sk_ratio=SK_RATIO,
            synchronized_bn=synchronized_bn,
        )
        head = ProjectionHead("nonlinear", out_dim=8, num_layers=2, synchronized_bn=synchronized_bn)
        model = SimCLR(encoder, head, num_classes=3, temperature=0.5)
        model(tf.zeros([1, 32, 32, 3]))
        randomize_weights(model.encoder)  # non-zero last-BN gammas: gradients everywhere
        # ...but small ones on each residual branch's last BN (as a trained ResNet has), or
        # the residual stream grows through 16 blocks and the step becomes ill-conditioned:
        # with gammas of ~1 there, two mathematically equal BN kernels on one device took
        # steps 17% apart (measured), and no replica comparison can be tighter than that.
        rng = np.random.default_rng(1)
        for variable in model.encoder.weights:
            if variable.path.endswith("bn3/gamma"):
                variable.assign(rng.uniform(0.05, 0.15, variable.shape).astype("float32"))
        initial = model.get_weights()
        model.compile(optimizer=keras.optimizers.SGD(1.0))
    history = model.fit(tf.data.Dataset.from_tensors(data), epochs=1, verbose=0)
    return initial, model.get_weights(), history.history["loss"][0], model


@pytest.mark.slow  # a 16-block network traced twice, once under 2 replicas: minutes here
def test_sk_encoder_two_replicas_step_like_one_device(mirrored_strategy, worst_relative_step):
    """Selective kernels under MirroredStrategy with global BatchNorm: the gate's BN sees
    the global batch, so 2 replicas take the single-device step. (With Keras's
    synchronized statistics, E[x^2] - E[x]^2, the gate layers' steps were 9-18% off: see
    `models.batch_norm.sync_moments`.)"""
    import tensorflow as tf

    rng = np.random.default_rng(5)
    # Each image its own brightness and contrast (plain uniform noise gives the same result).
    scale = rng.uniform(0.2, 1.0, (2, 8, 1, 1, 1))
    offset = rng.uniform(0.0, 0.8, (2, 8, 1, 1, 1)) * (1 - scale)
    views = (rng.uniform(size=(2, 8, 32, 32, 3)) * scale + offset).astype("float32")
    data = {"view1": views[0], "view2": views[1], "label": rng.integers(0, 3, 8)}
    init1, single, loss1, model = _sk_simclr_one_step(tf.distribute.get_strategy(), data, False)
    init2, replicated, loss2, _ = _sk_simclr_one_step(mirrored_strategy, data, True)
    assert model.encoder.sk_ratio and any("sk_gate" in v.path for v in model.trainable_weights)
    assert loss2 == pytest.approx(loss1, rel=1e-4), (loss1, loss2)
    # Every trainable variable moved, so the comparison covers all of them.
    trainable = {v.path for v in model.trainable_weights}
    moved = [
        v.path
        for v, a, b in zip(model.weights, init1, single, strict=True)
        if not np.array_equal(a, b)
    ]
    assert trainable <= set(moved), sorted(trainable - set(moved))[:5]
    # Measured: 1.6e-4 (stem_bn2/gamma; 3.5e-5 for every other tensor). The round-off
    # floor: the same step on one device with Keras's BN kernel instead of the fused one
    # differs by 5.6e-4. Per-replica instead of global BN: whole multiples of the step.
    worst = worst_relative_step(init1, single, init2, replicated)
    assert worst < 1e-3, worst


# --- Config, serialization, precision ---------------------------------------------


def test_config_round_trip_gives_same_outputs():
    model = tiny(se_ratio=0.25, name="encoder")
    config = model.get_config()
    assert config["sk_ratio"] == SK_RATIO and config["se_ratio"] == 0.25
    restored = ResNet.from_config(config)
    assert restored.get_config() == config
    assert [v.path for v in restored.weights] == [v.path for v in model.weights]
    restored.set_weights(model.get_weights())
    x = images(2, 32)
    np.testing.assert_array_equal(restored(x, training=False), model(x, training=False))


def test_plain_config_has_no_sk_se_keys():
    config = ResNet(18, width_multiplier=TINY_WIDTH).get_config()
    assert "sk_ratio" not in config and "se_ratio" not in config


def test_keras_save_load_round_trip(tmp_path):
    model = tiny(se_ratio=0.25)
    x = images(2, 32, seed=1)
    expected = np.asarray(model(x, training=False))
    path = tmp_path / "resnet_sk.keras"
    model.save(path)
    restored = keras.saving.load_model(path)
    assert type(restored) is ResNet
    assert restored.get_config() == model.get_config()
    np.testing.assert_array_equal(np.asarray(restored(x, training=False)), expected)


@pytest.mark.parametrize("policy", ["mixed_bfloat16", "mixed_float16"])
def test_mixed_precision(policy):
    import tensorflow as tf

    model = tiny(se_ratio=0.25, dtype=policy)
    reference = tiny(se_ratio=0.25)
    reference.set_weights(model.get_weights())
    assert {v.dtype for v in model.weights} == {"float32"}
    prefix = "block_group1_block0_"
    probe = keras.Model(
        model.input,
        [model.get_layer(f"{prefix}{name}").output for name in ("sk_conv", "sk_pool", "sk_mix")],
    )
    x = images(2, 32)
    compute = {"mixed_bfloat16": tf.bfloat16, "mixed_float16": tf.float16}[policy]
    assert [t.dtype for t in probe(x)] == [compute] * 3
    # Inference: bfloat16 (8-bit mantissa) agrees with float32 to about 1% here, float16
    # (11 bits) closer.
    out = model(x, training=False)
    assert out.dtype == tf.float32
    expected = np.asarray(reference(x, training=False))
    assert np.abs(np.asarray(out) - expected).max() < 0.05 * np.abs(expected).max()
    # Training (batch statistics of 2 images amplify rounding, so no comparison).
    out = model(x, training=True)
    assert out.dtype == tf.float32 and np.all(np.isfinite(out))
    gate_bn = model.get_layer(f"{prefix}sk_gate_bn")
    assert gate_bn.moving_mean.dtype == "float32" and np.all(np.isfinite(gate_bn.moving_mean))


# --- Validation -----------------------------------------------------------------


@pytest.mark.parametrize("argument", ["sk_ratio", "se_ratio"])
@pytest.mark.parametrize("value", [-1, -0.0625, float("nan")])
def test_negative_ratios_rejected(argument, value):
    with pytest.raises(ValueError, match=rf"^{argument} must be >= 0, got {value}$"):
        ResNet(18, width_multiplier=TINY_WIDTH, **{argument: value})
