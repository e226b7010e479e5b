"""End-to-end tests of `run.py`: bad input exits 2 with one line; train, kill, resume."""

import json
import logging
import math
import os
import pathlib
import re
import signal
import socket
import subprocess
import sys
import time

import pytest

from tests import _harness

ROOT = _harness.ROOT
TINY = [
    *_harness.TINY_FLAGS,
    "--learning_rate=0.1",
    "--warmup_epochs=1",
    "--optimizer=lars",
    "--color_jitter_strength=0.5",
    "--train_summary_steps=1",
    "--verbose=2",
]
run_cli, start_cli, run_in_process = _harness.run_cli, _harness.start_cli, _harness.run_in_process
tf_latest_step, float_variables = _harness.latest_step, _harness.float_variables


def folder_args(image_folder, model_dir, *extra):
    return [
        "--mode=train",
        "--dataset=image_folder",
        f"--data_dir={image_folder}",
        f"--model_dir={model_dir}",
        *TINY,
        *extra,
    ]


def closed_port():
    """A local TCP port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def listing(path):
    return sorted((p.name, p.stat().st_mtime_ns) for p in pathlib.Path(path).rglob("*"))


# Bad input, the flag its one line must name, and how it runs: in this process through
# run.py's own parse_flags and main (a subprocess costs a TensorFlow import), as a real
# `python run.py` (the process's stderr and exit code), or both.
BOTH, IN_PROCESS, SUBPROCESS = ("in_process", "subprocess"), ("in_process",), ("subprocess",)
BAD_INPUT = [
    (["--mode=bogus"], "mode", BOTH),
    (["--no_such_flag=1"], "no_such_flag", IN_PROCESS),
    (["--resnet_depth=19"], "resnet_depth", IN_PROCESS),
    (["--train_batch_size=notanumber"], "train_batch_size", IN_PROCESS),
    (["--proj_head_mode=mlp"], "proj_head_mode", IN_PROCESS),
    (["--image_size=4"], "image_size", IN_PROCESS),
    (["--optimizer=sgd"], "optimizer", IN_PROCESS),
    (["--temperature=0"], "temperature", IN_PROCESS),
    (["--dataset=no_such_dataset_xyz"], "dataset", IN_PROCESS),
    ([], "dataset", IN_PROCESS),  # no silent imagenet2012 download
    (["--dataset=cifar10", "--data_dir=EMPTY", "--download=false"], "download", IN_PROCESS),
    (["--dataset=image_folder", "--data_dir=/no/such/dir"], "data_dir", IN_PROCESS),
    (["--dataset=image_folder", "--data_dir=EMPTY"], "data_dir", BOTH),
    (["--dataset=image_folder", "--data_dir=IMAGES", "--train_split=nope"], "train_split", BOTH),
    # Splits the CPU into 2 logical devices: only before TensorFlow starts, so only in a
    # fresh process.
    (
        [
            "--dataset=image_folder",
            "--data_dir=IMAGES",
            "--strategy=mirrored",
            "--num_cpu_devices=2",
            "--train_batch_size=3",
        ],
        "train_batch_size",
        SUBPROCESS,
    ),
    # No TPU here: no name and no GCE metadata, a name the (unreachable) Cloud TPU API
    # cannot resolve, an address where nothing listens. Each is one line, not a hang.
    (["--dataset=image_folder", "--data_dir=IMAGES", "--use_tpu"], "tpu_name", BOTH),
    (["--dataset=image_folder", "--data_dir=IMAGES", "--tpu_name=my-tpu"], "tpu_name", IN_PROCESS),
    (
        ["--dataset=image_folder", "--data_dir=IMAGES", "--use_tpu", "--master=CLOSED"],
        "tpu_name",
        IN_PROCESS,
    ),
    (
        ["--strategy=tpu", "--tpu_name=my-tpu", "--use_tpu=false", "--mode=export"],
        "tpu_name",
        IN_PROCESS,
    ),
]


@pytest.mark.parametrize(
    "args, flag, how", [(args, flag, how) for args, flag, hows in BAD_INPUT for how in hows]
)
def test_bad_input_exits_2_with_one_line_and_leaves_model_dir_alone(
    tmp_path, image_folder, args, flag, how, capsys
):
    model_dir = tmp_path / "existing_run"
    model_dir.mkdir()
    (model_dir / "keep.txt").write_text("precious")
    before = listing(model_dir)
    (tmp_path / "empty").mkdir()
    args = [
        a.replace("EMPTY", str(tmp_path / "empty"))
        .replace("IMAGES", str(image_folder))
        .replace("CLOSED", f"grpc://127.0.0.1:{closed_port()}")
        for a in args
    ]
    base = [f"--model_dir={model_dir}", "--train_steps=1", "--image_size=16"]
    if how == "subprocess":
        proc = run_cli(base + args)
        code, stderr = proc.returncode, proc.stderr
    else:
        code, stderr = run_in_process(base + args, capsys)
    assert code == 2, stderr[-2000:]
    error_lines = [line for line in stderr.splitlines() if line.startswith("run.py: error")]
    assert len(error_lines) == 1, stderr[-2000:]
    assert f"--{flag}" in error_lines[0] or f"'{flag}'" in error_lines[0], error_lines[0]
    assert "Traceback" not in stderr
    assert listing(model_dir) == before
    assert list((tmp_path / "empty").iterdir()) == []


def test_missing_model_dir_is_a_usage_error(capsys):
    code, stderr = run_in_process(["--train_steps=1"], capsys)
    assert code == 2
    assert "--model_dir" in stderr


def test_help_exits_0_says_what_to_run_first_and_lists_reference_flags():
    proc = run_cli(["--help"])
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.startswith("SimCLR"), proc.stdout[:300]
    first_command = proc.stdout.split("\n\n")[2]  # after the one-line summary and its lead-in
    assert "python run.py --flagfile=experiments/quickstart.flags" in first_command
    assert (ROOT / "experiments" / "quickstart.flags").exists()
    for flag in ("train_batch_size", "learning_rate_scaling", "proj_head_mode", "hidden_norm"):
        assert f"--{flag}" in proc.stdout or f"--[no]{flag}" in proc.stdout


def test_a_run_logged_to_a_file_has_progress_lines_and_ends_with_a_summary(
    tmp_path, session_train_test_folder, caplog, capsys
):
    """run.py's default --verbose=1 with stdout not a terminal (captured, like `> file`):
    no control characters on stdout (Keras's training and evaluation bars), progress lines
    in the log, and a short summary on stdout instead of the whole result dict."""
    model_dir = tmp_path / "run"
    args = folder_args(session_train_test_folder, model_dir, "--train_steps=4")
    args = [a for a in args if a not in ("--mode=train", "--verbose=2")]
    args += ["--mode=train_then_eval", "--eval_split=test", "--verbosity=0"]
    sys.path.insert(0, str(ROOT))
    import run

    caplog.set_level(logging.INFO, logger="absl")
    capsys.readouterr()
    try:
        run.main(run.parse_flags(["run.py", *args]))
    finally:
        run.FLAGS.unparse_flags()
    captured = capsys.readouterr()
    assert "\r" not in captured.out and "\x1b" not in captured.out, captured.out[:500]
    log = [r.getMessage() for r in caplog.records]
    assert any(line.startswith("step 4/4 (100%): loss ") for line in log), log
    assert not any(line.startswith("Done: ") for line in log)
    summary = captured.out.splitlines()
    assert summary[0].startswith("Trained to step 4 (from 0) in ")
    assert summary[1].startswith("Evaluated step 4 on test, 8 of 8 examples: probe_top1 ")
    assert summary[2:] == [
        f"Results in {model_dir}: train_result.json, eval_results.json",
        f"SavedModel: {model_dir}/saved_model/4",
        f"TensorBoard: tensorboard --logdir={model_dir}",
    ]


def test_train_on_image_folder_then_resume(tmp_path, image_folder, caplog, capsys):
    """run.py's main in this process (the kill tests below resume real `python run.py`
    processes): 4 steps, the same run extended to 6 resumes at 4, a third call has nothing
    left to do."""
    from absl import logging as absl_logging

    model_dir = tmp_path / "run"
    # absl at INFO, for "Resumed from" (run.py's default, WARNING, hides it in this process).
    first = folder_args(image_folder, model_dir, "--checkpoint_steps=2", "--verbosity=0")
    args = first + ["--train_steps=6"]
    verbosity = absl_logging.get_verbosity()
    caplog.set_level(logging.INFO, logger="absl")
    try:
        code, stderr = run_in_process(first + ["--train_steps=4"], capsys)
        assert code == 0, stderr[-3000:]
        config = json.loads((model_dir / "config.json").read_text())
        assert config["train_steps"] == 4 and config["dataset"] == "image_folder"
        assert json.loads((model_dir / "train_result.json").read_text())["global_step"] == 4
        assert (model_dir / "ckpt-4.index").exists()
        assert list((model_dir / "train").glob("events.out.tfevents.*"))
        assert not resumed_from(caplog)

        caplog.clear()
        code, stderr = run_in_process(args, capsys)  # the same run extended to 6 steps
        assert code == 0, stderr[-3000:]
        assert resumed_from(caplog) == ["ckpt-4"]
        result = json.loads((model_dir / "train_result.json").read_text())
        assert result["global_step"] == 6
        # Learning-rate position continues: the logged LR of the last step is the schedule's
        # value at step 5 (peak 0.1 * 4/256, warmup 4 steps, cosine to 0 at step 6).
        peak = 0.1 * 4 / 256
        expected = peak * 0.5 * (1 + math.cos(math.pi * (5 - 4) / (6 - 4)))
        assert result["learning_rate"] == pytest.approx(expected, rel=1e-4, abs=1e-9)

        caplog.clear()
        code, stderr = run_in_process(args, capsys)  # the same target: nothing left to do
        assert code == 0, stderr[-3000:]
        assert resumed_from(caplog) == ["ckpt-6"]
        assert json.loads((model_dir / "train_result.json").read_text())["global_step"] == 6
        assert tf_latest_step(model_dir) == 6
    finally:
        absl_logging.set_verbosity(verbosity)


def resumed_from(caplog):
    """The checkpoint names of the "Resumed from <model_dir>/ckpt-N" log lines."""
    found = (re.search(r"Resumed from \S*(ckpt-\d+)", r.getMessage()) for r in caplog.records)
    return [m.group(1) for m in found if m]


# Deterministic training for the kill/resume tests: every augmentation off, so the batches
# are fixed by the (seeded) data order alone, and plain momentum. 16 images, batch 4:
# 4 steps per epoch; STEPS = 20 steps = 5 epochs, a checkpoint every 2 steps (the 40 steps
# of before checked nothing more: each kill point below is still well inside the run).
STEPS = 20
DETERMINISTIC = [
    "--optimizer=momentum",
    "--learning_rate=0.3",
    "--warmup_epochs=0",
    *_harness.NO_AUGMENTATION_FLAGS,
    f"--train_steps={STEPS}",
    "--checkpoint_steps=2",
    "--verbose=0",
]


def resume_args(image_folder, model_dir):
    return folder_args(image_folder, model_dir, *DETERMINISTIC)


@pytest.fixture(scope="module")
def uninterrupted(session_train_test_folder, tmp_path_factory):
    """The STEPS deterministic steps run without interruption, in this process through
    run.py's own main: {"step": the optimizer's counter, "variables": of its last ckpt}."""
    import tensorflow as tf

    sys.path.insert(0, str(ROOT))
    import run

    model_dir = tmp_path_factory.mktemp("uninterrupted") / "run"
    try:
        run.FLAGS(["run.py", *resume_args(session_train_test_folder, model_dir)])
        run.main(["run.py"])
    finally:
        run.FLAGS.unparse_flags()
    reader = tf.train.load_checkpoint(str(model_dir / f"ckpt-{STEPS}"))
    return {
        "step": int(reader.get_tensor("optimizer/_iterations/.ATTRIBUTES/VARIABLE_VALUE")),
        "variables": float_variables(model_dir / f"ckpt-{STEPS}"),
    }


def assert_trained_like(model_dir, uninterrupted):
    """The run in model_dir ended at step STEPS with the uninterrupted run's weights, BN
    statistics and optimizer slots (the same float32 computation on the same batches)."""
    import numpy as np

    assert json.loads((model_dir / "train_result.json").read_text())["global_step"] == STEPS
    assert tf_latest_step(model_dir) == STEPS and uninterrupted["step"] == STEPS
    got, want = float_variables(model_dir / f"ckpt-{STEPS}"), uninterrupted["variables"]
    assert got.keys() == want.keys()
    assert any(key.startswith("optimizer/_variables/") for key in want)  # momentum slots
    for key in want:
        np.testing.assert_allclose(got[key], want[key], rtol=1e-6, atol=1e-7, err_msg=key)


SIGKILL_AT = {
    # training has started (the resolved config is written just before step 0) but no
    # checkpoint is complete: the restart starts afresh
    "early_in_epoch_1": lambda model_dir: (model_dir / "config.json").exists(),
    # the first checkpoint is complete
    "right_after_a_checkpoint": lambda model_dir: (model_dir / "checkpoint").exists(),
    # a checkpoint of the last epoch (steps STEPS - 4 .. STEPS) is complete
    "in_the_last_epoch": lambda model_dir: (
        (model_dir / "checkpoint").exists() and tf_latest_step(model_dir) >= STEPS - 4
    ),
}


@pytest.mark.parametrize(
    "point",
    [
        "right_after_a_checkpoint",
        # ~20 s each here: opt-in (in_the_last_epoch also runs in CI's `ci` subset)
        pytest.param("early_in_epoch_1", marks=pytest.mark.slow),
        pytest.param("in_the_last_epoch", marks=[pytest.mark.slow, pytest.mark.ci]),
    ],
)
def test_sigkill_then_restart_resumes_from_last_complete_checkpoint(
    tmp_path, session_train_test_folder, uninterrupted, point
):
    model_dir = tmp_path / "run"
    args = resume_args(session_train_test_folder, model_dir)
    proc = start_cli(args, stderr=subprocess.DEVNULL)
    ready = SIGKILL_AT[point]
    deadline = time.time() + 240
    while not ready(model_dir) and time.time() < deadline and proc.poll() is None:
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert ready(model_dir), f"{point} was not reached before the kill"
    state = model_dir / "checkpoint"  # CheckpointManager's record of complete checkpoints
    committed = tf_latest_step(model_dir) if state.exists() else 0
    assert committed < STEPS, "the run finished before it could be killed"

    again = run_cli(args)
    assert again.returncode == 0, again.stderr[-3000:]
    resumed = re.search(r"Resumed from \S*ckpt-(\d+)", again.stderr)
    if committed:
        assert resumed and int(resumed.group(1)) == committed, again.stderr[-2000:]
    else:
        assert not resumed, again.stderr[-2000:]
    assert_trained_like(model_dir, uninterrupted)


def test_sigkill_during_a_checkpoint_write_resumes_from_the_previous_one(
    tmp_path, session_train_test_folder, uninterrupted
):
    """A real write of ckpt-4, stopped between its two steps (tests/_pause_checkpoint_write.py):
    the shard is on disk, the merged files are not, `checkpoint` still says ckpt-2."""
    model_dir, marker = tmp_path / "run", tmp_path / "paused"
    args = resume_args(session_train_test_folder, model_dir)
    script = ROOT / "tests" / "_pause_checkpoint_write.py"
    proc = start_cli(["2", str(marker), *args], subprocess.DEVNULL, script=script)
    deadline = time.time() + 240
    while not marker.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert marker.exists(), "the second checkpoint write was not reached"
    assert sorted(p.name for p in (model_dir / "ckpt-4_temp").iterdir()) == [
        "part-00000-of-00001.data-00000-of-00001",
        "part-00000-of-00001.index",
    ]
    assert not list(model_dir.glob("ckpt-4.*")) and tf_latest_step(model_dir) == 2

    again = run_cli(args)
    assert again.returncode == 0, again.stderr[-3000:]
    resumed = re.search(r"Resumed from \S*ckpt-(\d+)", again.stderr)
    assert resumed and int(resumed.group(1)) == 2, again.stderr[-2000:]
    assert not (model_dir / "ckpt-4_temp").exists()  # the next write of ckpt-4 replaced it
    assert_trained_like(model_dir, uninterrupted)


def test_run_main_in_process_on_mock_tfds_data(tmp_path):
    """run.py's own main (flags -> Config -> modes.run) for a few steps on mock TFDS cifar10."""
    import tensorflow_datasets as tfds

    sys.path.insert(0, str(ROOT))
    import run

    model_dir = tmp_path / "run"
    argv = ["run.py", "--mode=train", "--dataset=cifar10", f"--model_dir={model_dir}"]
    argv += [a for a in TINY if not a.startswith("--train_summary")] + ["--train_steps=2"]
    try:
        run.FLAGS(argv)
        with tfds.testing.mock_data(num_examples=16):
            run.main(["run.py"])
    finally:
        run.FLAGS.unparse_flags()
    assert json.loads((model_dir / "train_result.json").read_text())["global_step"] == 2
    assert json.loads((model_dir / "config.json").read_text())["dataset"] == "cifar10"
    assert (model_dir / "saved_model" / "2" / "saved_model.pb").exists()


# SIGINT takes the same path as SIGTERM (one handler): slow, ~30 s each here.
@pytest.mark.parametrize(
    "signum", [signal.SIGTERM, pytest.param(signal.SIGINT, marks=pytest.mark.slow)]
)
def test_signal_saves_a_checkpoint_and_exits_cleanly_then_resumes(
    tmp_path, session_train_test_folder, uninterrupted, signum
):
    model_dir = tmp_path / "run"
    args = resume_args(session_train_test_folder, model_dir)
    proc = start_cli(args, stderr=subprocess.PIPE)
    deadline = time.time() + 240
    # Training is under way once the first checkpoint is recorded (STEPS - 2 steps remain).
    while not (model_dir / "checkpoint").exists() and time.time() < deadline:
        time.sleep(0.01)
    proc.send_signal(signum)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signum, stderr[-2000:]
    assert "Traceback" not in stderr
    stopped = re.search(r"stopped by SIG\w+ at step (\d+)", stderr)
    assert stopped, stderr[-2000:]
    step = int(stopped.group(1))
    assert 0 < step < STEPS
    assert tf_latest_step(model_dir) == step  # the checkpoint of the interrupted step

    again = run_cli(args)
    assert again.returncode == 0, again.stderr[-3000:]
    assert f"ckpt-{step}" in again.stderr
    assert_trained_like(model_dir, uninterrupted)


logged_losses = _harness.logged_losses


def test_nan_loss_exits_3_naming_the_first_nonfinite_step_and_keeps_the_last_good_save(
    tmp_path, image_folder, capsys
):
    """Learning rate 1e30 after a linear warmup from 0: step 1 (rate 0) and step 2 are
    finite, the weights explode in step 2, the loss of step 3 is NaN or Inf. run.py's main
    in this process (its exit code and stderr; a fresh process adds nothing checked here)."""
    import math

    import numpy as np
    import tensorflow as tf

    model_dir = tmp_path / "run"
    args = folder_args(image_folder, model_dir, "--optimizer=momentum", "--learning_rate=1e30")
    args += ["--warmup_epochs=1", "--train_steps=30", "--checkpoint_steps=2", "--verbose=0"]
    code, stderr = run_in_process(args, capsys)
    assert code == 3, stderr[-3000:]
    errors = [line for line in stderr.splitlines() if line.startswith("run.py: error")]
    assert len(errors) == 1 and "Traceback" not in stderr, stderr[-3000:]
    named = int(re.search(r"NaN or Inf at step (\d+)", errors[0]).group(1))
    assert "learning rate" in errors[0]

    # The step named is the first whose loss is not finite (TensorBoard logs every step,
    # the one that stopped training included).
    losses = logged_losses(model_dir)
    assert sorted(losses) == [1, 2, 3], losses  # and training stopped there
    first_bad = min(step for step, loss in losses.items() if not math.isfinite(loss))
    assert named == first_bad == 3, losses
    # The latest checkpoint is the save before it (step 2); nothing was saved after.
    assert tf_latest_step(model_dir) == 2
    assert sorted(p.name for p in model_dir.glob("ckpt-*.index")) == ["ckpt-2.index"]
    reader = tf.train.load_checkpoint(str(model_dir / "ckpt-2"))
    assert int(reader.get_tensor("optimizer/_iterations/.ATTRIBUTES/VARIABLE_VALUE")) == 2
    for value in float_variables(model_dir / "ckpt-2").values():
        assert np.all(np.isfinite(value))
    assert not (model_dir / "train_result.json").exists()


@pytest.mark.parametrize("mode", ["eval", "export"])
def test_eval_or_export_of_a_missing_model_dir_says_so(mode, tmp_path, capsys):
    code, stderr = run_in_process([f"--mode={mode}", f"--model_dir={tmp_path / 'nope'}"], capsys)
    last = stderr.strip().splitlines()[-1]
    assert code == 2 and last.startswith(f"run.py: error: --model_dir={tmp_path / 'nope'}: does"), (
        last
    )
