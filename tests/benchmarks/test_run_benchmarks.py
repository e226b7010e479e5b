"""benchmarks/run_benchmarks.py: the convolution ceiling and the missed-target report.

The benchmarks themselves are not run here (they take minutes); these tests run the
ceiling measurement at a tiny size and feed `missed_targets` made-up results.
"""

import importlib.util
import pathlib
import sys

import pytest
import tensorflow as tf

ROOT = pathlib.Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def bench():
    sys.path.insert(0, str(ROOT))  # the module imports tf_simclr
    path = ROOT / "benchmarks" / "run_benchmarks.py"
    spec = importlib.util.spec_from_file_location("run_benchmarks", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["run_benchmarks"] = module  # dataclasses look their module up here
    spec.loader.exec_module(module)
    return module


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


def _step(ratio, conv, step_over_conv=0.5, speedup=None, conv_speedup=1.4):
    result = {
        "step_over_matmul_f32": ratio,
        "conv3x3_over_matmul_f32": conv,
        "step_over_conv3x3": step_over_conv,
    }
    if speedup is not None:
        result.update(speedup_over_float32=speedup, conv3x3_speedup_over_float32=conv_speedup)
    return result


def test_met_targets_print_nothing(bench):
    results = {
        "step": {
            "precisions": {
                "float32": _step(0.8, 1.5),
                "mixed_bfloat16": _step(1.6, 2.2, speedup=2.0),
            }
        },
        "pipeline": {
            "imagenet224": {
                "batched_over_per_image": 2.1,
                "batched_over_per_image_per_cpu_second": 2.2,
            },
            "stages_ms_per_image_224": {"whole view": {"speedup_cpu": 2.5}},
            "cifar32_over_train_step": 200.0,
        },
    }
    assert bench.missed_targets(results) == []


def test_each_missed_target_names_its_same_run_ceiling(bench):
    slow_kernels = {"step": {"precisions": {"float32": _step(0.5, 0.6)}}}
    (line,) = bench.missed_targets(slow_kernels)
    assert line.startswith("MISSED float32 step / matmul >= 0.75 (0.50)")
    assert "reach 0.60 of the matmul rate" in line and "ceiling below the target" in line

    slow_rest = {"step": {"precisions": {"float32": _step(0.5, 1.5, step_over_conv=0.33)}}}
    (line,) = bench.missed_targets(slow_rest)
    assert "reach 1.50 of the matmul rate" in line and "the step reaches 0.33 of that" in line

    bf16 = {
        "step": {
            "precisions": {
                "float32": _step(0.8, 1.5),
                "mixed_bfloat16": _step(1.0, 1.6, speedup=1.2),
            }
        }
    }
    (line,) = bench.missed_targets(bf16)
    assert "MISSED mixed_bfloat16 >= 1.6x float32 (1.20x)" in line and "speed up 1.40x" in line

    pipeline = {
        "pipeline": {
            "imagenet224": {
                "batched_over_per_image": 0.9,
                "batched_over_per_image_per_cpu_second": 0.8,
            },
            "stages_ms_per_image_224": {"whole view": {"speedup_cpu": 1.43}},
            "cifar32_over_train_step": 3.0,
        }
    }
    big, small = bench.missed_targets(pipeline)
    assert "224 px" in big and "1.43x faster batched" in big and "ceiling below the target" in big
    assert small == "MISSED pipeline 32 px >= 5x training (3.0x)."

    pipeline["pipeline"]["fixed_cost_224"] = {
        "image_size": 24,
        "share_cpu": 0.04,
        "batching_ceiling_cpu": 1 / 0.96,
    }
    big, _ = bench.missed_targets(pipeline)
    assert "(the same recipe at 24 px) is 4% of its CPU time" in big
    assert "a ceiling of 1.04x" in big


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


def test_find_cifar10(bench, tmp_path, monkeypatch):
    import tarfile

    folder = tmp_path / "given"
    (folder / "train" / "cat").mkdir(parents=True)
    assert bench.find_cifar10(str(folder)) == str(folder)
    with pytest.raises(SystemExit, match="holds no train/ folder"):
        bench.find_cifar10(str(tmp_path / "empty"))

    cache = tmp_path / "cache" / "cifar10_jpg"
    monkeypatch.setattr(bench, "CIFAR_CACHE", str(cache))
    monkeypatch.setattr(bench, "CIFAR_ARCHIVE", str(tmp_path / "missing.tar.gz"))
    assert bench.find_cifar10() is None
    archive = tmp_path / "cifar.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(folder / "train", arcname="train")
    monkeypatch.setattr(bench, "CIFAR_ARCHIVE", str(archive))
    assert bench.find_cifar10() == str(cache) and (cache / "train" / "cat").is_dir()
    archive.unlink()  # extracted once: later calls reuse the cache
    assert bench.find_cifar10() == str(cache)
