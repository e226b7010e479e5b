"""Warmup + cosine schedule and batch-size scaling of the learning rate."""

import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from tf_simclr.optim import WarmupCosineDecay, scaled_learning_rate

PEAK, WARMUP, TOTAL = 2.0, 10, 110


@pytest.mark.parametrize(
    "step, expected",
    [
        (0, 0.0),
        (5, PEAK * 0.5),  # mid-warmup
        (WARMUP, PEAK),  # end of warmup
        (WARMUP + 25, PEAK * 0.5 * (1 + math.cos(math.pi * 0.25))),
        (WARMUP + 50, PEAK / 2),  # middle of the cosine
        (TOTAL, 0.0),
        (TOTAL + 1, 0.0),
        (10 * TOTAL, 0.0),
    ],
)
def test_values(step, expected):
    schedule = WarmupCosineDecay(PEAK, WARMUP, TOTAL)
    for step_tensor in (tf.constant(step, tf.int64), tf.constant(step, tf.float32), step):
        lr = schedule(step_tensor)
        assert lr.dtype == tf.float32
        np.testing.assert_allclose(lr.numpy(), expected, atol=1e-6)


def test_monotone_up_then_down():
    schedule = WarmupCosineDecay(PEAK, WARMUP, TOTAL)
    values = np.array([schedule(s).numpy() for s in range(TOTAL + 1)])
    assert np.all(np.diff(values[: WARMUP + 1]) > 0)
    assert np.all(np.diff(values[WARMUP:]) < 0)


def test_without_warmup_starts_at_peak():
    schedule = WarmupCosineDecay(PEAK, 0, 100)
    np.testing.assert_allclose(schedule(0).numpy(), PEAK)
    np.testing.assert_allclose(schedule(50).numpy(), PEAK / 2, atol=1e-6)


def test_warmup_longer_than_the_run_is_not_shortened():
    # As the reference: the ramp keeps its slope, so the run ends at 9/20 of the peak.
    schedule = WarmupCosineDecay(PEAK, warmup_steps=20, total_steps=10)
    values = np.array([schedule(step).numpy() for step in range(10)])
    np.testing.assert_allclose(values, PEAK * np.arange(10) / 20, rtol=1e-6)


def test_invalid_arguments():
    with pytest.raises(ValueError):
        WarmupCosineDecay(1.0, warmup_steps=0, total_steps=-1)
    with pytest.raises(ValueError):
        WarmupCosineDecay(1.0, warmup_steps=-1, total_steps=10)


def test_config_round_trip_and_use_in_an_optimizer():
    schedule = WarmupCosineDecay(PEAK, WARMUP, TOTAL)
    restored = keras.optimizers.schedules.deserialize(
        keras.optimizers.schedules.serialize(schedule)
    )
    assert isinstance(restored, WarmupCosineDecay)
    assert restored.get_config() == schedule.get_config()
    optimizer = keras.optimizers.SGD(schedule)
    variable = keras.Variable([1.0])
    for _ in range(5):
        optimizer.apply_gradients([(tf.constant([0.0]), variable)])
    np.testing.assert_allclose(optimizer.learning_rate.numpy(), PEAK * 5 / WARMUP)


def test_scaled_learning_rate():
    assert scaled_learning_rate(0.3, 4096, "linear") == pytest.approx(4.8)
    assert scaled_learning_rate(0.075, 4096, "sqrt") == pytest.approx(4.8)
    assert scaled_learning_rate(0.3, 512, "linear") == pytest.approx(0.6)
    assert scaled_learning_rate(0.1, 100, "sqrt") == pytest.approx(1.0)
    with pytest.raises(ValueError, match="linear"):
        scaled_learning_rate(0.3, 256, "quadratic")
