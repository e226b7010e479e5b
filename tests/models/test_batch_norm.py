"""FusedBatchNormalization equals keras.layers.BatchNormalization, only faster."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from tf_simclr.models.batch_norm import FusedBatchNormalization


def twins(shape, dtype="float32", **kwargs):
    """A Keras BN and a fused BN with the same (non-default) weights."""
    layers = [
        keras.layers.BatchNormalization(momentum=0.8, epsilon=1e-5, dtype=dtype, **kwargs),
        FusedBatchNormalization(momentum=0.8, epsilon=1e-5, dtype=dtype, **kwargs),
    ]
    for layer in layers:
        layer.build((None, *shape[1:]))
    rng = np.random.default_rng(0)
    values = [rng.normal(size=v.shape).astype(np.float32) for v in layers[0].weights]
    values = [
        np.abs(v) + 0.5 if w.name == "moving_variance" else v
        for v, w in zip(values, layers[0].weights, strict=True)
    ]
    for layer in layers:
        layer.set_weights(values)
    return layers


def inputs(shape, dtype):
    x = 3.0 + 2.0 * tf.random.stateless_normal(shape, seed=[len(shape), 7])
    return tf.cast(x, dtype)


@pytest.mark.parametrize("shape", [(16, 6), (8, 5, 4, 6)])
@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("center, scale", [(True, True), (False, True), (True, False)])
def test_float32_outputs_gradients_and_moving_statistics_match_keras(
    shape, training, center, scale
):
    keras_bn, fused_bn = twins(shape, center=center, scale=scale)
    x = inputs(shape, tf.float32)
    initial = [w.numpy() for w in fused_bn.non_trainable_weights]
    results = []
    for layer in (keras_bn, fused_bn):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = layer(x, training=training)
            loss = tf.reduce_sum(y**3)  # a non-trivial upstream gradient
        grads = tape.gradient(loss, [x, *layer.trainable_weights])
        results.append((y, grads, [w.numpy() for w in layer.non_trainable_weights]))
    (y_k, g_k, m_k), (y_f, g_f, m_f) = results
    assert y_f.dtype == tf.float32
    np.testing.assert_allclose(y_f, y_k, rtol=1e-4, atol=1e-4)
    for a, b in zip(g_f, g_k, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-3 * np.abs(b).max())
    for a, b in zip(m_f, m_k, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5)
    moved = [not np.allclose(a, b) for a, b in zip(m_f, initial, strict=True)]
    assert moved == [training, training]  # training updates the moving statistics, inference not


@pytest.mark.parametrize("dtype", ["mixed_bfloat16", "mixed_float16"])
def test_mixed_precision_keeps_float32_statistics(dtype):
    keras_bn, fused_bn = twins((32, 4, 4, 6), dtype=dtype)
    x = inputs((32, 4, 4, 6), fused_bn.compute_dtype)
    y_k, y_f = keras_bn(x, training=True), fused_bn(x, training=True)
    assert y_f.dtype == y_k.dtype == fused_bn.compute_dtype
    np.testing.assert_allclose(
        tf.cast(y_f, tf.float32), tf.cast(y_k, tf.float32), rtol=2e-2, atol=2e-2
    )
    assert fused_bn.moving_mean.dtype == "float32"
    # Both compute the statistics of the 16-bit inputs in float32.
    np.testing.assert_allclose(fused_bn.moving_mean, keras_bn.moving_mean, rtol=1e-5)
    np.testing.assert_allclose(fused_bn.moving_variance, keras_bn.moving_variance, rtol=1e-4)


def test_frozen_layer_uses_moving_statistics_in_training_mode():
    keras_bn, fused_bn = twins((8, 3, 3, 6))
    for layer in (keras_bn, fused_bn):
        layer.trainable = False
    x = inputs((8, 3, 3, 6), tf.float32)
    before = fused_bn.moving_mean.numpy()
    np.testing.assert_allclose(
        fused_bn(x, training=True), keras_bn(x, training=True), rtol=1e-4, atol=1e-4
    )
    np.testing.assert_array_equal(fused_bn.moving_mean.numpy(), before)


def test_other_cases_take_the_keras_path():
    keras_bn, fused_bn = twins((8, 6, 3), axis=1)
    x = inputs((8, 6, 3), tf.float32)  # rank 3, axis 1: not fusable
    np.testing.assert_allclose(fused_bn(x, training=True), keras_bn(x, training=True), rtol=1e-5)


def test_serialization_round_trip():
    layer = FusedBatchNormalization(momentum=0.7, epsilon=2e-5, center=False, name="bn1")
    restored = keras.layers.deserialize(keras.layers.serialize(layer))
    assert type(restored) is FusedBatchNormalization
    assert restored.get_config() == layer.get_config()


@pytest.mark.parametrize("jit_compile", [False, True])
def test_fused_kernel_outside_xla_keras_ops_inside(jit_compile):
    # XLA's CPU backend runs FusedBatchNormV3 slowly; it compiles the Keras ops instead.
    layer = FusedBatchNormalization()
    layer.build((None, 4, 4, 3))
    step = tf.function(lambda x: layer(x, training=True), jit_compile=jit_compile)
    x = inputs((2, 4, 4, 3), tf.float32)
    ops = {op.type for op in step.get_concrete_function(x).graph.get_operations()}
    assert ("FusedBatchNormV3" in ops) != jit_compile
    expected = keras.layers.BatchNormalization()
    expected.build((None, 4, 4, 3))
    np.testing.assert_allclose(step(x), expected(x, training=True), rtol=1e-4, atol=1e-4)


def test_synchronized_statistics_over_replicas_equal_one_device(mirrored_strategy):
    """Global BN on 2 replicas normalises, and back-propagates, as one device does on the
    whole batch, also where the mean is large against the spread (a selective-kernel gate:
    one pooled vector per image). E[x^2] - E[x]^2, Keras's synchronized formula, loses the
    variance there (its gradients differ by whole percents)."""
    rng = np.random.default_rng(3)
    # 8 images, 4 channels: mean ~50, spread ~0.05 (E[x^2] ~ 2500, variance ~ 2.5e-3).
    x = (50.0 + 0.05 * rng.normal(size=(8, 1, 1, 4))).astype(np.float32)
    upstream = rng.normal(size=x.shape).astype(np.float32)

    def step(layer, images, grads_in):
        with tf.GradientTape() as tape:
            tape.watch(images)
            y = layer(images, training=True)
            loss = tf.reduce_sum(y * grads_in)
        return y, tape.gradient(loss, images)

    one = FusedBatchNormalization(epsilon=1e-8)
    one.build(x.shape)
    y1, g1 = step(one, tf.constant(x), tf.constant(upstream))

    with mirrored_strategy.scope():
        two = FusedBatchNormalization(epsilon=1e-8, synchronized=True)
        two.build(x.shape)
    per_replica = mirrored_strategy.experimental_distribute_values_from_function(
        lambda ctx: tuple(
            tf.constant(a[4 * ctx.replica_id_in_sync_group : 4 * ctx.replica_id_in_sync_group + 4])
            for a in (x, upstream)
        )
    )
    y2, g2 = mirrored_strategy.run(
        tf.function(lambda pair: step(two, *pair)),
        args=(per_replica,),
    )
    y2 = np.concatenate([np.asarray(t) for t in mirrored_strategy.experimental_local_results(y2)])
    g2 = np.concatenate([np.asarray(t) for t in mirrored_strategy.experimental_local_results(g2)])
    np.testing.assert_allclose(y2, y1, atol=2e-3)  # y ~ N(0, 1)
    np.testing.assert_allclose(g2, g1, rtol=1e-2, atol=1e-2 * np.abs(g1).max())
    np.testing.assert_allclose(two.moving_variance.numpy(), one.moving_variance.numpy(), rtol=1e-3)
