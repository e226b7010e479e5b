"""Scaled-down proof run on real CIFAR-10 (slow; skipped without ../shared/data).

Runs the recorded experiments `experiments/cifar10_r18w025_proof.flags` (pretrain,
then eval with kNN and the online probe) and `experiments/cifar10_r18w025_linear.flags`
(linear evaluation of the pretrained and of a random encoder) end to end through
`run.py`, on 1,000 training and 500 test images for a few dozen steps.

    python -m pytest -m slow tests/test_proof_slow.py
"""

import json
import pathlib
import shutil
import subprocess
import sys
import tarfile

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
ARCHIVE = ROOT.parent / "shared" / "data" / "cifar10-jpg.tar.gz"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.ci,  # README: pretraining learns (CI skips it without the data)
    pytest.mark.skipif(not ARCHIVE.exists(), reason=f"real CIFAR-10 not found at {ARCHIVE}"),
]


def small_cifar(tmp_path, train_per_class=100, test_per_class=50):
    full = tmp_path / "full"
    with tarfile.open(ARCHIVE) as tar:
        tar.extractall(full, filter="data")
    small = tmp_path / "cifar10_small"
    for split, count in (("train", train_per_class), ("test", test_per_class)):
        for class_dir in sorted((full / split).iterdir()):
            out = small / split / class_dir.name
            out.mkdir(parents=True)
            for image in sorted(class_dir.iterdir())[:count]:
                shutil.copy(image, out / image.name)
    return small


def run(*args):
    proc = subprocess.run(
        [sys.executable, str(ROOT / "run.py"), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def test_scaled_down_proof_run_end_to_end(tmp_path):
    data = small_cifar(tmp_path)
    small = ["--train_batch_size=100", "--width_multiplier=0.125", "--knn_k=20"]
    pre = tmp_path / "pretrain"
    run(
        "--flagfile=experiments/cifar10_r18w025_proof.flags",
        f"--data_dir={data}",
        f"--model_dir={pre}",
        "--mode=train_then_eval",
        "--train_epochs=2",
        *small,
    )
    pre_eval = json.loads((pre / "eval_results.json").read_text())
    assert pre_eval["global_step"] == 21  # 1000 * 2 // 100 + 1, as the reference
    assert 0.1 < pre_eval["knn_top1"] <= 1.0  # above 10-class chance
    assert 0.0 <= pre_eval["probe_top1"] <= 1.0
    assert (pre / "saved_model" / "21" / "saved_model.pb").exists()

    results = {}
    for name, init in (("pretrained", [f"--checkpoint={pre}"]), ("random", [])):
        out = tmp_path / name
        run(
            "--flagfile=experiments/cifar10_r18w025_linear.flags",
            f"--data_dir={data}",
            f"--model_dir={out}",
            "--train_epochs=2",
            *small,
            *init,
        )
        results[name] = json.loads((out / "eval_results.json").read_text())
        assert results[name]["global_step"] == 21
        assert 0.0 <= results[name]["top1"] <= 1.0
    # Pretraining learned something a linear classifier uses: 20 pretraining steps beat
    # a random encoder by at least 5 points of linear-eval top-1 on the 500 test images
    # (measured: 20.6% vs 10.0%; the standard error of the difference is ~2.3 points).
    # kNN is not compared: at this scale a random encoder's kNN was not measured, and at
    # full scale it is 30.1% (docs/results.md), above this run's 23.4%.
    assert results["pretrained"]["top1"] >= results["random"]["top1"] + 0.05, results
