"""Cross-replica gathering and NT-Xent on 2 logical CPU devices equal 1 device.

`tests/conftest.py` splits the CPU into logical devices before TF starts.
"""

import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from tf_simclr import distribute
from tf_simclr.errors import ArgumentError
from tf_simclr.losses import nt_xent
from tf_simclr.optim import LARS


@pytest.fixture
def strategy(mirrored_strategy):
    return mirrored_strategy


def distribute_shards(strategy, shards):
    """One tensor per replica (shards may differ in their first dimension)."""
    return strategy.experimental_distribute_values_from_function(
        lambda ctx: tf.constant(shards[ctx.replica_id_in_sync_group])
    )


def local(strategy, values):
    return [v.numpy() for v in strategy.experimental_local_results(values)]


def split(array, sizes):
    return np.split(array, np.cumsum(sizes)[:-1])


def test_helpers_outside_a_strategy_are_trivial():
    x = tf.constant([[1.0, 2.0], [3.0, 4.0]])
    assert distribute.num_replicas() == 1
    assert int(distribute.replica_id()) == 0
    assert distribute.cross_replica_concat(x) is x


def test_cross_replica_context_is_an_error(strategy):
    with strategy.scope(), pytest.raises(RuntimeError, match="strategy.run"):
        distribute.cross_replica_concat(tf.zeros([2, 3]))


@pytest.mark.parametrize("sizes", [(2, 2), (2, 1)])
def test_cross_replica_concat_order_and_gradient(strategy, sizes):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(sum(sizes), 3)).astype(np.float32)
    # A different loss on each replica: loss_r = sum(gathered * w_r).
    weights = rng.normal(size=(2, sum(sizes), 3)).astype(np.float32)

    def step(x_local):
        rid = distribute.replica_id()
        with tf.GradientTape() as tape:
            tape.watch(x_local)
            gathered = distribute.cross_replica_concat(x_local)
            loss = tf.reduce_sum(gathered * tf.gather(weights, rid))
        return gathered, tape.gradient(loss, x_local), rid, distribute.num_replicas()

    gathered, grads, rids, counts = tf.function(lambda v: strategy.run(step, args=(v,)))(
        distribute_shards(strategy, split(x, sizes))
    )

    for g in local(strategy, gathered):
        np.testing.assert_array_equal(g, x)  # replica order, identical everywhere
    assert local(strategy, rids) == [0, 1]
    assert counts == 2
    # The gradient is that of the summed per-replica losses: each replica's rows
    # get sum_r w_r. (A local-only gradient would give w_r alone.)
    expected = split(weights.sum(axis=0), sizes)
    for got, want in zip(local(strategy, grads), expected, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-6)


@pytest.mark.parametrize("sizes", [(4, 4), (3, 2)])
def test_nt_xent_two_replicas_equals_one_device(strategy, sizes):
    rng = np.random.default_rng(1)
    n, d, temperature = sum(sizes), 6, 0.2
    z1 = rng.normal(size=(n, d)).astype(np.float32)
    z2 = (z1 + 0.8 * rng.normal(size=(n, d))).astype(np.float32)

    z1_full, z2_full = tf.constant(z1), tf.constant(z2)
    with tf.GradientTape() as tape:
        tape.watch([z1_full, z2_full])
        single = nt_xent(z1_full, z2_full, temperature=temperature)
    single_g1, single_g2 = tape.gradient(single.loss, [z1_full, z2_full])

    def step(z1_local, z2_local):
        with tf.GradientTape() as tape:
            tape.watch([z1_local, z2_local])
            out = nt_xent(z1_local, z2_local, temperature=temperature)
            # The optimizer sums gradients over replicas: divide once here.
            scaled = out.loss / distribute.num_replicas()
        g1, g2 = tape.gradient(scaled, [z1_local, z2_local])
        return scaled, g1, g2, out.logits, out.labels

    scaled, g1, g2, logits, labels = tf.function(lambda a, b: strategy.run(step, args=(a, b)))(
        distribute_shards(strategy, split(z1, sizes)), distribute_shards(strategy, split(z2, sizes))
    )

    np.testing.assert_allclose(sum(local(strategy, scaled)), single.loss.numpy(), atol=1e-5)
    np.testing.assert_allclose(np.concatenate(local(strategy, g1)), single_g1.numpy(), atol=1e-5)
    np.testing.assert_allclose(np.concatenate(local(strategy, g2)), single_g2.numpy(), atol=1e-5)
    # Each replica sees its rows of the global logits, labelled with global columns.
    np.testing.assert_allclose(
        np.concatenate(local(strategy, logits)), single.logits.numpy(), atol=1e-5
    )
    np.testing.assert_array_equal(np.concatenate(local(strategy, labels)), np.arange(n))


def test_without_gathering_each_replica_only_sees_local_negatives(strategy):
    rng = np.random.default_rng(2)
    z1 = rng.normal(size=(6, 4)).astype(np.float32)
    z2 = rng.normal(size=(6, 4)).astype(np.float32)

    def step(a, b):
        out = nt_xent(a, b, gather_distributed=False)
        return out.loss, out.logits

    losses, logits = tf.function(lambda a, b: strategy.run(step, args=(a, b)))(
        distribute_shards(strategy, split(z1, [3, 3])),
        distribute_shards(strategy, split(z2, [3, 3])),
    )
    for r, (loss, lg) in enumerate(
        zip(local(strategy, losses), local(strategy, logits), strict=True)
    ):
        assert lg.shape == (3, 3)
        rows = slice(3 * r, 3 * r + 3)
        np.testing.assert_allclose(loss, nt_xent(z1[rows], z2[rows]).loss.numpy(), rtol=1e-5)


def test_dense_gradients_and_lars_step_match_one_device(strategy):
    rng = np.random.default_rng(3)
    x1 = rng.normal(size=(8, 5)).astype(np.float32)
    x2 = (x1 + 0.3 * rng.normal(size=(8, 5))).astype(np.float32)
    initial = [rng.normal(size=(5, 4)).astype(np.float32), rng.normal(size=4).astype(np.float32)]

    def make(name):
        model = keras.Sequential(
            [keras.Input((5,)), keras.layers.Dense(4, name="dense")], name=name
        )
        model.set_weights(initial)
        return model, LARS(0.5, momentum=0.9, weight_decay=1e-3)

    model, optimizer = make("single")
    with tf.GradientTape() as tape:
        loss = nt_xent(model(x1), model(x2), temperature=0.5).loss
    single_grads = tape.gradient(loss, model.trainable_variables)
    optimizer.apply_gradients(zip(single_grads, model.trainable_variables, strict=True))

    with strategy.scope():
        dist_model, dist_optimizer = make("mirrored")
        dist_optimizer.build(dist_model.trainable_variables)

    def step(a, b):
        with tf.GradientTape() as tape:
            out = nt_xent(dist_model(a), dist_model(b), temperature=0.5)
            scaled = out.loss / distribute.num_replicas()
        grads = tape.gradient(scaled, dist_model.trainable_variables)
        # Keras 3's TF optimizer all-reduces (SUM) the gradients itself.
        dist_optimizer.apply_gradients(zip(grads, dist_model.trainable_variables, strict=True))
        return grads

    grads = tf.function(lambda a, b: strategy.run(step, args=(a, b)))(
        distribute_shards(strategy, split(x1, [4, 4])),
        distribute_shards(strategy, split(x2, [4, 4])),
    )
    for per_replica, want in zip(grads, single_grads, strict=True):
        got = strategy.reduce(tf.distribute.ReduceOp.SUM, per_replica, axis=None)
        np.testing.assert_allclose(got.numpy(), want.numpy(), atol=1e-5)
    for got, want, start in zip(
        dist_model.trainable_variables, model.trainable_variables, initial, strict=True
    ):
        assert not np.allclose(want.numpy(), start, atol=1e-4)  # the step did something
        # Every replica's copy of the variable ends up equal to the single-device one.
        for copy in strategy.experimental_local_results(got.value):
            np.testing.assert_allclose(copy.numpy(), want.numpy(), atol=1e-5)


# --- Building strategies ----------------------------------------------------------------


def two_worker_tf_config():
    cluster = {"worker": ["127.0.0.1:1", "127.0.0.1:2"]}
    return {"TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": 0}})}


@pytest.mark.parametrize(
    "name, use_tpu, tpu_address, environ, expected",
    [
        ("auto", False, "", {}, "default"),  # this machine: no GPU
        ("auto", True, "", {}, "tpu"),
        ("auto", False, "my-tpu", {}, "tpu"),
        ("auto", False, "", "TWO_WORKERS", "multi_worker_mirrored"),
        ("auto", True, "", "TWO_WORKERS", "tpu"),
        ("mirrored", False, "", "TWO_WORKERS", "mirrored"),  # explicit names win
        ("one_device", False, "", {}, "one_device"),
    ],
)
def test_auto_strategy_resolution(name, use_tpu, tpu_address, environ, expected):
    environ = two_worker_tf_config() if environ == "TWO_WORKERS" else environ
    assert distribute.resolve_strategy_name(name, use_tpu, tpu_address, environ) == expected


def test_tf_config_task_count_and_bad_json():
    assert distribute.tf_config_tasks({}) == 0
    assert distribute.tf_config_tasks(two_worker_tf_config()) == 2
    with pytest.raises(ArgumentError, match="TF_CONFIG: is not valid JSON"):
        distribute.tf_config_tasks({"TF_CONFIG": "{not json"})


def test_single_process_strategies_are_chief(strategy):
    assert distribute.is_chief(tf.distribute.get_strategy())
    assert distribute.is_chief(strategy)
    assert distribute.task(strategy) == (None, None)
    assert distribute.build_strategy("default") is tf.distribute.get_strategy()
    assert distribute.build_strategy("auto") is tf.distribute.get_strategy()


def test_tpu_that_cannot_be_reached_is_a_config_error_not_a_hang():
    import socket
    import time

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # released: nothing listens there
    began = time.time()
    with pytest.raises(ArgumentError) as info:
        distribute.build_strategy("tpu", tpu_address=f"grpc://127.0.0.1:{port}")
    assert time.time() - began < distribute.TPU_CONNECT_TIMEOUT
    assert info.value.argument == "tpu_address"
    assert f"nothing answers at 127.0.0.1:{port}" in str(info.value)
    assert "\n" not in str(info.value)
