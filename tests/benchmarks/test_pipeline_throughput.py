"""benchmarks/pipeline_throughput.py: the stage breakdown and fixed cost at a tiny size."""

import pytest
import tensorflow as tf


@pytest.fixture(scope="module")
def bench(import_benchmark):
    return import_benchmark("pipeline_throughput")


@pytest.mark.slow  # 16 s: runs the benchmark stages
def test_stage_breakdown_and_fixed_cost_at_a_tiny_size(bench):
    """Both paths run in tf.data and give positive times; the fixed cost is the whole
    view at FIXED_COST_SIDE px over the given large row."""
    cfg = bench.AugmentConfig(image_size=16)
    images = tf.cast(
        tf.random.stateless_uniform([4, 20, 20, 3], [0, 1], maxval=256, dtype=tf.int32), tf.uint8
    )
    stages = bench.stage_ms_per_image(cfg, images)
    assert set(stages) == {
        "resize",
        "crop",
        "color_jitter",
        "grayscale",
        "blur",
        "whole view",
        "whole view, batch-wide",
    }
    for row in stages.values():
        assert row["per_image"] > 0 and row["batched_cpu"] > 0
        assert row["speedup"] == pytest.approx(row["per_image"] / row["batched"])
    only = bench.stage_ms_per_image(cfg, images, stages=("whole view",))
    assert list(only) == ["whole view"]
    large = {"per_image_cpu": 1000.0}  # a made-up 1 s per image: the share is tiny
    fixed = bench.per_image_fixed_cost(cfg, images, large)
    assert fixed["image_size"] == bench.FIXED_COST_SIDE
    assert fixed["share_cpu"] == pytest.approx(fixed["per_image_cpu"] / 1000.0)
    assert 1.0 < fixed["batching_ceiling_cpu"] < 1.01
