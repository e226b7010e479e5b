"""benchmarks/benchmark_report.py: `missed_targets` fed made-up results."""

import pytest


@pytest.fixture(scope="module")
def bench(import_benchmark):
    return import_benchmark("benchmark_report")


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
