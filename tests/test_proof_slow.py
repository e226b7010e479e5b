"""Scaled-down proof run on real CIFAR-10 (slow; skipped without ../shared/data).

Runs the recorded experiments `experiments/cifar10_r18w025_proof.flags` (pretrain,
then eval with kNN and the online probe) and `experiments/cifar10_r18w025_linear.flags`
(linear evaluation of the pretrained and of a random encoder) end to end through
`run.py`, on 1,000 training and 1,000 test images for 51 pretraining and 51 linear steps.

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


def small_cifar(tmp_path, train_per_class=100, test_per_class=100):
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


# 1,000 training images at batch 100 for 5 epochs: 50 steps, +1 as the reference counts.
EPOCHS = 5
STEPS = 51


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
        f"--train_epochs={EPOCHS}",
        *small,
    )
    pre_eval = json.loads((pre / "eval_results.json").read_text())
    assert pre_eval["global_step"] == STEPS
    assert 0.1 < pre_eval["knn_top1"] <= 1.0  # above 10-class chance
    assert 0.0 <= pre_eval["probe_top1"] <= 1.0
    assert (pre / "saved_model" / str(STEPS) / "saved_model.pb").exists()

    results = {}
    for name, init in (("pretrained", [f"--checkpoint={pre}"]), ("random", [])):
        out = tmp_path / name
        run(
            "--flagfile=experiments/cifar10_r18w025_linear.flags",
            f"--data_dir={data}",
            f"--model_dir={out}",
            f"--train_epochs={EPOCHS}",
            *small,
            *init,
        )
        results[name] = json.loads((out / "eval_results.json").read_text())
        assert results[name]["global_step"] == STEPS
        assert 0.0 <= results[name]["top1"] <= 1.0
    # Pretraining learned something a linear classifier uses: 51 pretraining steps beat
    # a random encoder by at least 5 points of linear-eval top-1 on the 1,000 test images.
    # Sized for a margin of many standard errors: at 21 steps of each and 500 test images
    # the margin was 1.8, 10.4 and 12.0 points in three runs (CI failed once at 3 points);
    # at this size it was 17.5, 15.2 and 15.7 (the random encoder 10.6%; the binomial
    # standard error of each top-1 is ~1.4 points). kNN is not compared: at full scale a
    # random encoder's kNN is 30.1% (docs/results.md), above this run's.
    margin = results["pretrained"]["top1"] - results["random"]["top1"]
    print(
        f"proof run: pretrained {results['pretrained']['top1']:.3f}, "
        f"random {results['random']['top1']:.3f}, margin {margin:.3f}"
    )
    assert margin >= 0.05, results
