"""benchmarks/step_throughput.py: the convolution ceiling at a tiny size, and the model."""

import pytest


@pytest.fixture(scope="module")
def bench(import_benchmark):
    return import_benchmark("step_throughput")


def test_conv_ceiling_times_the_four_stage_shapes(bench):
    result = bench.conv_stage_flops_per_second(batch=2, size=8, width=0.125, repeats=1)
    assert [s["shape"] for s in result["stages"]] == [
        [2, 8, 8, 8],
        [2, 4, 4, 16],
        [2, 2, 2, 32],
        [2, 1, 1, 64],
    ]
    rates = [s["flops_per_s"] for s in result["stages"]]
    assert all(rate > 0 for rate in rates)
    # Total FLOPs over total time (the harmonic mean of equal-FLOP stages) lies between
    # the slowest and the fastest stage.
    assert min(rates) <= result["flops_per_s"] <= max(rates)


def test_the_model_is_run_pys(bench):
    """The step's model and optimizer come from tf_simclr.builders, loss scaling included."""
    import keras

    from tf_simclr import builders

    cfg = bench.StepConfig(depth=18, width=0.125, image_size=16, batch_size=2)
    model = bench.build_pretrain_model(cfg)
    reference = builders.build_pretrain_model(bench.model_config(cfg), 10)
    assert model.count_params() == reference.count_params()
    assert type(model.optimizer).__name__ == "LARS" and model.probe is not None
    half = bench.build_pretrain_model(bench.dataclasses.replace(cfg, precision="mixed_float16"))
    assert isinstance(half.optimizer, keras.optimizers.LossScaleOptimizer)
    with pytest.raises(ValueError, match="cifar_stem"):
        bench.StepConfig(image_size=224)  # cifar_stem=True is the 32 px default
