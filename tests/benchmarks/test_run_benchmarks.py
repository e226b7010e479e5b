"""benchmarks/run_benchmarks.py, the runner: its flags and the names other scripts import.

The benchmarks themselves are not run here (they take minutes); each part's module has
its own tests (test_step_throughput.py, test_pipeline_throughput.py,
test_benchmark_report.py, test_cifar10_jpegs.py).
"""

import importlib.util
import os
import pathlib
import sys

import pytest

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


def test_the_runner_keeps_its_flags_and_the_names_others_import(bench, import_benchmark):
    """profile_step.py, precision_quality.py and export_formats.py import these from
    run_benchmarks; `--memory_child_batch` runs the memory part's child."""
    step = import_benchmark("step_throughput")
    cifar = import_benchmark("cifar10_jpegs")
    assert bench.find_cifar10 is cifar.find_cifar10
    assert bench.CIFAR_ARCHIVE == cifar.CIFAR_ARCHIVE
    assert bench.StepConfig is step.StepConfig
    assert bench.build_pretrain_model is step.build_pretrain_model
    assert bench.fixed_batch_dataset is step.fixed_batch_dataset
    args = bench.parse_args([])
    assert args.parts == "step,pipeline,memory" and args.output == "benchmarks/results/latest.json"
    assert args.precision == "float32,mixed_bfloat16" and args.memory_child_batch == 0
    memory = import_benchmark("peak_memory")
    assert os.path.samefile(memory.RUNNER, ROOT / "benchmarks" / "run_benchmarks.py")
