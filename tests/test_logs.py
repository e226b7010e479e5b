"""The library lines `tf_simclr.logs` drops, and that --verbosity=1 brings them back."""

import logging
import os

import pytest
from absl import logging as absl_logging

from tf_simclr import logs


def record(path, level, message, name="absl"):
    return logging.LogRecord(name, level, path, 1, message, None, None)


TFDS = os.path.join("site-packages", "tensorflow_datasets", "core", "dataset_info.py")
CROSS_DEVICE = os.path.join("tensorflow", "python", "distribute", "cross_device_ops.py")
SIGNATURES = os.path.join("tensorflow", "python", "saved_model", "signature_serialization.py")
SM_LOAD = os.path.join("tensorflow", "python", "saved_model", "load.py")
SM_FUNCTIONS = os.path.join("tensorflow", "python", "saved_model", "function_deserialization.py")
OURS = os.path.join("tf_simclr", "training.py")


@pytest.fixture
def verbosity():
    before = absl_logging.get_verbosity()
    yield absl_logging.set_verbosity
    absl_logging.set_verbosity(before)


def test_noise_is_dropped_and_what_a_user_needs_is_kept(verbosity):
    verbosity(absl_logging.INFO)
    noise = [
        record(TFDS, logging.INFO, "For 'cifar10/3.0.2': fields info.[module_name] differ"),
        record(CROSS_DEVICE, logging.INFO, "Collective all_reduce tensors: 1 all_reduces"),
        record(SIGNATURES, logging.INFO, "Function `serve_uint8` contains input name(s)"),
        record(TFDS, logging.WARNING, "Variant folder /d/cifar10/3.0.2 has no dataset_info.json"),
        record(SM_LOAD, logging.INFO, "Fingerprint not found. Saved model loading will continue."),
        record(
            SM_FUNCTIONS,
            logging.WARNING,
            "Importing a function (__inference_internal_grad_fn_1) with ops with unsaved custom "
            "gradients. Will likely fail if a gradient is requested.",
            name="tensorflow",
        ),
    ]
    kept = [
        record(OURS, logging.INFO, "Finished epoch 1/5"),
        record(TFDS, logging.WARNING, "a TFDS warning stays"),
        record(CROSS_DEVICE, logging.WARNING, "so does a warning of the runtime"),
        record(SIGNATURES, logging.INFO, "another line of that file"),
        record(SM_FUNCTIONS, logging.WARNING, "another warning of that file"),
        record(SM_LOAD, logging.ERROR, "Fingerprint not found: an error stays"),
    ]
    noise_filter = logs._LibraryNoise()
    assert [noise_filter.filter(r) for r in noise] == [False] * len(noise)
    assert [noise_filter.filter(r) for r in kept] == [True] * len(kept)
    # --verbosity=1: everything.
    verbosity(absl_logging.DEBUG)
    assert [noise_filter.filter(r) for r in noise] == [True] * len(noise)


def test_quiet_library_logs_installs_its_filter_once_on_absl_and_tensorflow():
    logs.quiet_library_logs()
    logs.quiet_library_logs()
    for name in ("absl", "tensorflow"):
        assert logging.getLogger(name).filters.count(logs._FILTER) == 1


def test_tensorflow_start_up_lines_are_hidden_unless_asked_for(tmp_path):
    """A run that loads TensorFlow, then fails on bad input: its stderr is the one error
    line, not TensorFlow's native start-up lines (printed before TF_CPP_MIN_LOG_LEVEL
    applies); a user's TF_CPP_MIN_LOG_LEVEL or --verbosity=1 shows them again."""
    import subprocess
    import sys

    from tests import _harness

    args = [
        sys.executable,
        str(_harness.ROOT / "run.py"),
        "--mode=embed",
        f"--model_dir={tmp_path / 'missing'}",
        "--dataset=image_folder",
        f"--data_dir={tmp_path}",
        f"--embed_output={tmp_path / 'out'}",
    ]
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}

    def stderr(*extra, **env_changes):
        proc = subprocess.run(
            [*args, *extra],
            capture_output=True,
            text=True,
            timeout=300,
            env={**env, **env_changes},
        )
        assert proc.returncode == 2, proc.stderr
        return proc.stderr.strip().splitlines()

    lines = stderr()
    assert len(lines) == 1 and lines[0].startswith("run.py: error: --model_dir="), lines
    native = "All log messages before absl::InitializeLog()"
    assert any(native in line for line in stderr("--verbosity=1"))
    assert any(native in line for line in stderr(TF_CPP_MIN_LOG_LEVEL="0"))


def test_summary_says_what_ran_with_rounded_metrics_and_where_the_results_are(tmp_path):
    (tmp_path / "eval_results.json").write_text("{}")
    result = {
        "train": {
            "global_step": 400,
            "start_step": 73,
            "seconds": 61.4,
            "loss": 4.123456789,
            "learning_rate": 0.0,
            "contrast_acc": 0.5,
        },
        "eval": {
            "global_step": 400,
            "eval_split": "test",
            "train_mode": "pretrain",
            "probe_top1": 0.123456,
            "probe_num_examples": 1024,
            "split_num_examples": 10000,
            "partial_eval": True,
            "eval_seconds": 3.0,
        },
        "export": f"{tmp_path}/saved_model/400",
    }
    assert logs.summary(result, str(tmp_path)).splitlines() == [
        "Trained to step 400 (from 73) in 61 s: loss 4.123, contrast_acc 0.5",
        "Evaluated step 400 on test, 1024 of 10000 examples (partial): probe_top1 0.1235",
        f"Results in {tmp_path}: eval_results.json",
        f"SavedModel: {tmp_path}/saved_model/400",
        f"TensorBoard: tensorboard --logdir={tmp_path}",
    ]
    imported = {
        "import": {
            "architecture": "r50_1x_sk1",
            "max_relative_difference": 2.2e-7,
            "saved_model": "/d/saved_model/0",
        }
    }
    assert logs.summary(imported, "/d").splitlines() == [
        "Imported r50_1x_sk1 (largest relative difference 2.2e-07)",
        "Results in /d: checkpoints",
        "SavedModel: /d/saved_model/0",
    ]
    assert logs.summary({}, "/d") == ""  # a worker that is not the chief: nothing


def test_interactive_only_for_a_terminal(tmp_path):
    class Terminal:
        def isatty(self):
            return True

    with open(tmp_path / "log", "w") as f:
        assert not logs.interactive(f)
    assert logs.interactive(Terminal()) and not logs.interactive(object())
