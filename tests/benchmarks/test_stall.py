"""benchmarks/stall.py on a tiny generated folder: 2 runs of each case, a few steps."""

import importlib.util
import json
import pathlib
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def stall():
    path = ROOT / "benchmarks" / "stall.py"
    spec = importlib.util.spec_from_file_location("stall", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["stall"] = module
    spec.loader.exec_module(module)
    return module


def test_analyse_measures_from_the_last_step(stall):
    # Two fits (an epoch boundary), made-up times: wall, cpu.
    events = [
        ("start", 0.0, 0.0),
        ("fit_call", 1.0, 1.0),
        ("step_begin", 2.0, 2.0),
        ("step_end", 3.0, 3.0),
        ("epoch_end", 3.5, 3.1),
        ("train_end", 3.6, 3.1),
        ("fit_return", 4.0, 3.2),
        ("fit_call", 4.1, 3.2),
        ("step_begin", 5.0, 4.0),
        ("step_end", 7.0, 6.0),
        ("epoch_end", 7.1, 6.0),
        ("train_end", 7.2, 6.0),
        ("fit_return", 19.0, 6.5),
        ("run_return", 20.0, 7.0),
    ]
    run = stall.analyse(events, exited=21.0)
    assert run["steps"] == 2 and run["fits"] == 2
    assert run["last_step_to_train_end"] == pytest.approx(0.2)
    assert run["last_step_to_fit_return"] == pytest.approx(12.0)
    assert run["cpu_last_step_to_fit_return"] == pytest.approx(0.5)
    assert run["last_step_to_run_return"] == pytest.approx(13.0)
    assert run["last_step_to_exit"] == pytest.approx(14.0)
    assert run["between_epochs"] == [pytest.approx(2.0)]
    assert run["epoch_fit_return"] == [pytest.approx(1.0)]


# ~40 s (4 training processes of a few steps); in the default run, so the script does not rot.
def test_stall_benchmark_runs_on_a_tiny_folder(tmp_path, stall, make_image_folder):
    folder = make_image_folder(tmp_path / "images", per_class=8)  # 16 images
    output = tmp_path / "stall.json"
    stall.main(
        [
            f"--data_dir={folder}",
            "--runs=2",
            "--steps=3",
            "--batch_size=8",
            "--epoch_images=16",
            "--epochs=2",
            f"--output={output}",
        ]
    )
    result = json.loads(output.read_text())
    stop, epochs = result["cases"]["stop"], result["cases"]["epochs"]
    assert len(stop["runs"]) == len(epochs["runs"]) == 2
    assert [r["steps"] for r in stop["runs"]] == [3, 3]
    assert [r["steps"] for r in epochs["runs"]] == [4, 4]  # 2 steps per epoch, 2 epochs
    for run in stop["runs"] + epochs["runs"]:
        assert 0 <= run["last_step_to_fit_return"] <= run["last_step_to_exit"]
    assert all(len(r["between_epochs"]) == 1 for r in epochs["runs"])
    assert epochs["summary"]["between_epochs"]["max"] > 0
