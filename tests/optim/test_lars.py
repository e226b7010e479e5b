"""LARS and build_optimizer against hand computations in NumPy."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from tf_simclr.optim import DEFAULT_EXCLUDE, LARS, AdamL2, WarmupCosineDecay, build_optimizer
from tf_simclr.optim.lars import matches_any

KERNEL = "resnet/block_group1_block0_conv1/kernel"
BN_GAMMA = "resnet/block_group1_block0_bn1/gamma"
BIAS = "head/dense/bias"


def make_variable(path, value):
    """A keras.Variable whose `.path` is `path` (names may not contain "/")."""
    *scopes, name = path.split("/")

    def create(remaining):
        if not remaining:
            return keras.Variable(np.asarray(value, np.float32), name=name)
        with keras.name_scope(remaining[0]):
            return create(remaining[1:])

    variable = create(scopes)
    assert variable.path == path
    return variable


def numpy_lars(w, grads, lr, momentum, wd, eeta, nesterov, decay, adapt):
    """The reference update, step by step, in float64."""
    w = np.asarray(w, np.float64)
    v = np.zeros_like(w)
    for g in grads:
        g = np.asarray(g, np.float64)
        if decay:
            g = g + wd * w
        trust = 1.0
        if adapt:
            w_norm, g_norm = np.linalg.norm(w), np.linalg.norm(g)
            if w_norm > 0 and g_norm > 0:
                trust = eeta * w_norm / g_norm
        v = momentum * v + lr * trust * g
        w = w - (momentum * v + lr * trust * g if nesterov else v)
    return w


def run_steps(optimizer, variable, grads):
    for g in grads:
        optimizer.apply_gradients([(tf.constant(g, tf.float32), variable)])
    return variable.numpy()


W0 = np.array([[0.5, -1.0, 2.0], [0.3, 0.8, -0.4]])
GRADS = [
    np.array([[0.1, 0.2, -0.3], [0.05, -0.1, 0.4]]),
    np.array([[-0.2, 0.1, 0.1], [0.3, 0.0, -0.1]]),
]
HYPER = dict(lr=0.7, momentum=0.9, wd=0.05, eeta=0.01)


@pytest.mark.parametrize("nesterov", [False, True])
@pytest.mark.parametrize(
    "path, decay, adapt", [(KERNEL, True, True), (BN_GAMMA, False, False), (BIAS, False, False)]
)
@pytest.mark.parametrize("num_steps", [1, 2])
def test_lars_matches_numpy(path, decay, adapt, nesterov, num_steps):
    variable = make_variable(path, W0)
    optimizer = LARS(
        HYPER["lr"],
        momentum=HYPER["momentum"],
        weight_decay=HYPER["wd"],
        trust_coefficient=HYPER["eeta"],
        nesterov=nesterov,
    )
    got = run_steps(optimizer, variable, GRADS[:num_steps])
    want = numpy_lars(W0, GRADS[:num_steps], nesterov=nesterov, decay=decay, adapt=adapt, **HYPER)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7)
    assert optimizer.uses_weight_decay(variable) == decay
    assert optimizer.uses_layer_adaptation(variable) == adapt


def test_lars_first_step_by_hand():
    # w = [3, 4] (norm 5), g = [0.6, 0.8] (norm 1), no decay: trust = 0.01 * 5 / 1.
    variable = make_variable("dense/kernel", [3.0, 4.0])
    optimizer = LARS(2.0, momentum=0.9, trust_coefficient=0.01)
    got = run_steps(optimizer, variable, [np.array([0.6, 0.8])])
    np.testing.assert_allclose(got, [3.0 - 2.0 * 0.05 * 0.6, 4.0 - 2.0 * 0.05 * 0.8], rtol=1e-6)


def test_zero_weight_norm_uses_trust_ratio_one():
    variable = make_variable("dense/kernel", np.zeros((2, 2)))
    optimizer = LARS(0.5, weight_decay=0.1)
    got = run_steps(optimizer, variable, [np.full((2, 2), 0.2)])
    np.testing.assert_allclose(got, np.full((2, 2), -0.5 * 0.2), rtol=1e-6)


def test_zero_gradient_norm_uses_trust_ratio_one():
    # Step 1 builds momentum with a real gradient; step 2 has g' = 0, so the
    # trust ratio falls back to 1 and only the momentum moves the weights.
    variable = make_variable("dense/kernel", W0)
    optimizer = LARS(0.5, momentum=0.9, trust_coefficient=0.01)
    got = run_steps(optimizer, variable, [GRADS[0], np.zeros_like(W0)])
    want = numpy_lars(
        W0, [GRADS[0], np.zeros_like(W0)], 0.5, 0.9, 0.0, 0.01, False, decay=False, adapt=True
    )
    np.testing.assert_allclose(got, want, rtol=1e-6)
    assert np.all(np.isfinite(got))


def test_without_layer_adaptation_is_momentum_sgd_with_l2():
    variable = make_variable(KERNEL, W0)
    optimizer = LARS(0.1, momentum=0.9, weight_decay=0.01, nesterov=True, layer_adaptation=False)
    got = run_steps(optimizer, variable, GRADS)
    want = numpy_lars(W0, GRADS, 0.1, 0.9, 0.01, 1.0, True, decay=True, adapt=False)
    np.testing.assert_allclose(got, want, rtol=1e-6)
    # Same as Keras SGD on the L2-augmented gradient g + wd * w.
    reference = make_variable("other/kernel", W0)
    sgd = keras.optimizers.SGD(0.1, momentum=0.9, nesterov=True)
    for g in GRADS:
        sgd.apply_gradients([(tf.constant(g + 0.01 * reference.numpy(), tf.float32), reference)])
    np.testing.assert_allclose(got, reference.numpy(), rtol=1e-5)


def test_keras_weight_decay_is_not_applied_on_top():
    optimizer = LARS(0.1, weight_decay=0.5)
    assert optimizer.weight_decay is None  # Keras' decoupled decay is off
    assert optimizer.coupled_weight_decay == 0.5
    # Zero gradient, no momentum, no adaptation: exactly one decay of lr * wd * w.
    variable = make_variable(KERNEL, W0)
    optimizer = LARS(0.1, momentum=0.0, weight_decay=0.5, layer_adaptation=False)
    got = run_steps(optimizer, variable, [np.zeros_like(W0)])
    np.testing.assert_allclose(got, W0 * (1 - 0.1 * 0.5), rtol=1e-6)
    with pytest.raises(NotImplementedError):
        optimizer.exclude_from_weight_decay(var_names=["kernel"])


def test_separate_layer_adaptation_exclusions():
    variable = make_variable("head/dense/kernel", W0)
    optimizer = LARS(
        0.1, weight_decay=0.01, exclude_from_weight_decay=[], exclude_from_layer_adaptation=["head"]
    )
    optimizer.build([variable])
    assert optimizer.uses_weight_decay(variable)
    assert not optimizer.uses_layer_adaptation(variable)


@pytest.mark.parametrize(
    "path, excluded",
    [
        ("resnet/block_group1_block0_bn1/gamma", True),
        ("resnet/block_group1_block0_bn1/beta", True),
        ("head/bn_0/beta", True),
        ("head/bn_0/gamma", True),
        ("dense/bias", True),
        ("conv2_block1_1_bn/gamma", True),
        ("model/batch_normalization/gamma", True),
        ("resnet/stem_bn/gamma", True),
        ("resnet/block_group1_block0_conv1/kernel", False),
        ("dense/kernel", False),
        ("head/dense_0/kernel", False),
        ("conv2_block1_1_conv/kernel", False),
        ("resnet/block_group1_block0_projection/kernel", False),
        ("head/linear_bnx/kernel", False),  # "bn" inside a word is not a BN layer
    ],
)
def test_default_exclusions(path, excluded):
    assert matches_any(path, DEFAULT_EXCLUDE) == excluded


def test_get_config_round_trip():
    schedule = WarmupCosineDecay(1.2, warmup_steps=10, total_steps=100)
    optimizer = LARS(
        schedule,
        momentum=0.8,
        weight_decay=1e-6,
        trust_coefficient=0.002,
        nesterov=True,
        exclude_from_layer_adaptation=["head"],
        name="my_lars",
    )
    config = optimizer.get_config()
    assert config["weight_decay"] == 1e-6
    restored = keras.optimizers.deserialize(keras.optimizers.serialize(optimizer))
    assert isinstance(restored, LARS)
    assert isinstance(restored._learning_rate, WarmupCosineDecay)  # the schedule survives
    assert restored.get_config() == config
    assert restored.coupled_weight_decay == 1e-6 and restored.weight_decay is None
    assert restored.layer_adaptation_exclusions == ("head",)
    assert LARS.from_config(LARS(0.1).get_config()).layer_adaptation_exclusions is None


def test_lars_in_jit_compiled_function():
    variable = make_variable(KERNEL, W0)
    optimizer = LARS(0.7, momentum=0.9, weight_decay=0.05, trust_coefficient=0.01)
    optimizer.build([variable])

    @tf.function(jit_compile=True)
    def step(g):
        optimizer.apply_gradients([(g, variable)])

    for g in GRADS:
        step(tf.constant(g, tf.float32))
    want = numpy_lars(W0, GRADS, 0.7, 0.9, 0.05, 0.01, False, decay=True, adapt=True)
    np.testing.assert_allclose(variable.numpy(), want, rtol=1e-5)


@pytest.mark.parametrize("name", ["lars", "momentum", "adam", "adamw"])
def test_build_optimizer_runs_one_step(name):
    model = keras.Sequential(
        [keras.Input((3,)), keras.layers.Dense(2), keras.layers.BatchNormalization()]
    )
    optimizer = build_optimizer(name, 0.1, momentum=0.9, weight_decay=1e-4)
    before = [v.numpy() for v in model.trainable_variables]
    x = tf.random.stateless_normal((4, 3), seed=(1, 2))
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(model(x, training=True) ** 2)
    grads = tape.gradient(loss, model.trainable_variables)
    optimizer.apply_gradients(zip(grads, model.trainable_variables, strict=True))
    after = [v.numpy() for v in model.trainable_variables]
    assert all(np.all(np.isfinite(a)) for a in after)
    assert not np.allclose(before[0], after[0])  # the kernel moved


def test_build_optimizer_types():
    assert isinstance(build_optimizer("lars", 0.1), LARS)
    momentum = build_optimizer("momentum", 0.1)
    assert isinstance(momentum, LARS) and momentum.nesterov and not momentum.layer_adaptation
    assert isinstance(build_optimizer("adam", 0.1), AdamL2)
    assert isinstance(build_optimizer("adamw", 0.1, weight_decay=0.1), keras.optimizers.AdamW)
    with pytest.raises(ValueError, match="lars, momentum, adam, adamw"):
        build_optimizer("sgd", 0.1)


def numpy_adam(w, grads, lr, wd, beta_1=0.9, beta_2=0.999, epsilon=1e-7):
    """Keras' Adam (epsilon outside the square root) on g + wd * w."""
    w = np.asarray(w, np.float64)
    m = np.zeros_like(w)
    v = np.zeros_like(w)
    for t, g in enumerate(grads, start=1):
        g = g + wd * w
        m = beta_1 * m + (1 - beta_1) * g
        v = beta_2 * v + (1 - beta_2) * g**2
        alpha = lr * np.sqrt(1 - beta_2**t) / (1 - beta_1**t)
        w = w - alpha * m / (np.sqrt(v) + epsilon)
    return w


def test_adam_adds_l2_decay_to_the_gradient():
    # wd is large enough to flip the sign of some gradient entries, so the
    # update differs visibly from Adam without decay.
    kernel = make_variable("dense/kernel", W0)
    bias = make_variable("dense/bias", W0[0])
    optimizer = build_optimizer("adam", 0.01, weight_decay=0.5)
    for g in GRADS:
        optimizer.apply_gradients(
            [(tf.constant(g, tf.float32), kernel), (tf.constant(g[0], tf.float32), bias)]
        )
    np.testing.assert_allclose(kernel.numpy(), numpy_adam(W0, GRADS, 0.01, 0.5), rtol=1e-5)
    bias_grads = [g[0] for g in GRADS]
    np.testing.assert_allclose(bias.numpy(), numpy_adam(W0[0], bias_grads, 0.01, 0.0), rtol=1e-5)
    assert not np.allclose(numpy_adam(W0, GRADS, 0.01, 0.5), numpy_adam(W0, GRADS, 0.01, 0.0))
    assert optimizer.weight_decay is None
    restored = AdamL2.from_config(optimizer.get_config())
    assert restored.coupled_weight_decay == 0.5 and restored.weight_decay is None


def test_adamw_decays_kernels_but_not_biases():
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, bias_initializer="ones")])
    kernel_before, bias_before = (v.numpy() for v in model.trainable_variables)
    optimizer = build_optimizer("adamw", 0.1, weight_decay=0.2)
    zeros = [tf.zeros_like(v) for v in model.trainable_variables]
    optimizer.apply_gradients(zip(zeros, model.trainable_variables, strict=True))
    kernel, bias = (v.numpy() for v in model.trainable_variables)
    np.testing.assert_allclose(kernel, kernel_before * (1 - 0.1 * 0.2), rtol=1e-6)
    np.testing.assert_allclose(bias, bias_before)
