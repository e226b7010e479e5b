"""Tests of `--jit_compile`: the XLA-compiled train step matches the graph-executor one."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from tests import _harness
from tf_simclr import builders, resolver
from tf_simclr.config import Config, ConfigError
from tf_simclr.modes import pretrain


def run_steps(jit_compile, steps=3):
    config = _harness.tiny_config(temperature=0.5, jit_compile=jit_compile)
    keras.utils.set_random_seed(0)
    model = builders.build_pretrain_model(config, num_classes=3)
    optimizer = builders.build_training_optimizer(config, warmup_steps=0, total_steps=10)
    model.compile(optimizer=optimizer, jit_compile=config.jit_compile)
    assert model.jit_compile is jit_compile
    batch = {
        "view1": tf.random.stateless_uniform([8, 16, 16, 3], seed=[0, 1]),
        "view2": tf.random.stateless_uniform([8, 16, 16, 3], seed=[0, 2]),
        "label": tf.constant([0, 1, 2, 0, 1, 2, 0, 1], tf.int64),
    }
    initial = [v.numpy() for v in model.variables]
    losses = []
    for _ in range(steps):  # one fit per step, to read each step's own loss
        history = model.fit(
            tf.data.Dataset.from_tensors(batch), epochs=1, verbose=0, shuffle=False
        ).history
        losses.append(history["loss"][-1])
    return initial, losses, [v.numpy() for v in model.variables]


def test_xla_train_steps_match_the_graph_executor(worst_relative_step):
    init_xla, losses_xla, after_xla = run_steps(jit_compile=True)
    init_ref, losses_ref, after_ref = run_steps(jit_compile=False)
    assert len(set(losses_ref)) == 3  # the steps really train
    np.testing.assert_allclose(losses_xla, losses_ref, rtol=1e-4)
    moved = sum(not np.array_equal(a0, b) for a0, b in zip(init_ref, after_ref, strict=True))
    assert moved == len(after_ref)  # every weight and BN statistic, after 3 steps
    # Compared with how far each tensor moved, not with its value: LARS moves a kernel
    # by ~5e-5 of its norm in 3 steps, so a value-relative tolerance would accept an
    # XLA step that skipped the kernels. Measured worst: 1.5e-4 (float32 round-off of
    # different kernels and summation orders); a skipped update gives 1.
    worst = worst_relative_step(init_ref, after_ref, init_xla, after_xla)
    assert worst < 1e-2, worst


def test_jit_compile_with_several_replicas_is_a_config_error(tmp_path, mirrored_strategy):
    config = Config(model_dir=str(tmp_path / "run"), dataset="cifar10", jit_compile=True)
    with pytest.raises(ConfigError, match="--jit_compile.*one XLA program") as error:
        pretrain.run(resolver.resolve(config, frozenset()), mirrored_strategy)
    assert tf.__version__ in str(error.value)
    assert not (tmp_path / "run").exists()


# Why several replicas are refused: the two ways to XLA-compile a mirrored step, on 2
# logical CPUs, and the errors TensorFlow 2.21 / Keras 3.15 give. If one of these tests
# starts failing, a new TensorFlow or Keras lifted the limitation: lift the refusal in
# `training.check_replicas` and test equal steps with and without XLA on 2 replicas.


def one_mirrored_step(strategy, per_replica_jit):
    config = _harness.tiny_config(temperature=0.5)
    keras.utils.set_random_seed(0)
    with strategy.scope():
        model = builders.build_pretrain_model(config, num_classes=3)
        optimizer = builders.build_training_optimizer(config, warmup_steps=0, total_steps=10)
        model.compile(optimizer=optimizer, jit_compile=not per_replica_jit)
    if per_replica_jit:
        # What tf.keras 2 did: XLA-compile each replica's step inside `strategy.run`.
        step = model.train_step
        model.train_step = lambda data: tf.function(step, jit_compile=True)(data)
    batch = {
        "view1": tf.random.stateless_uniform([8, 16, 16, 3], seed=[0, 1]),
        "view2": tf.random.stateless_uniform([8, 16, 16, 3], seed=[0, 2]),
        "label": tf.constant([0, 1, 2, 0, 1, 2, 0, 1], tf.int64),
    }
    model.fit(tf.data.Dataset.from_tensors(batch), epochs=1, verbose=0, shuffle=False)


def test_keras_xla_compiles_all_replicas_into_one_program(mirrored_strategy):
    # Keras' `jit_compile` wraps the function that calls `strategy.run` (keras/src/
    # backend/tensorflow/trainer.py, `_make_function`): one XLA cluster on one device,
    # and XLA cannot use a resource variable placed on another device.
    with pytest.raises(tf.errors.InvalidArgumentError, match="located in device .*CPU:1"):
        one_mirrored_step(mirrored_strategy, per_replica_jit=False)


def test_a_replica_step_cannot_be_xla_compiled_across_its_cross_replica_sums(mirrored_strategy):
    # Compiled per replica, the step's synchronisation points (the global BatchNorm
    # moments, the gathered negatives, the gradient sum) go through MirroredStrategy's
    # merge_call, which cannot run inside a nested tf.function; TF skips it under XLA only
    # when every device is a GPU (`MirroredExtended._use_merge_call`).
    with pytest.raises(RuntimeError, match="merge_call"):
        one_mirrored_step(mirrored_strategy, per_replica_jit=True)
