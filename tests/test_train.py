"""Tests of the pretraining driver: step plan, fit segments, a real run on mock TFDS data."""

import dataclasses
import json
import logging
import os
import re
import shutil
import signal

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from tests import _harness
from tf_simclr import builders, modes, records, resolver, step_plan, training
from tf_simclr.config import Config, ConfigError
from tf_simclr.modes import pretrain

tiny_config = _harness.tiny_config


def test_step_plan_follows_reference_units():
    # Reference (tf2 `get_train_steps`, `WarmUpAndCosineDecay`): N * epochs // B + 1
    # steps, floor(warmup_epochs * N / B) warmup steps; the epoch of our pipeline
    # (which drops the remainder) is N // B steps.
    config = tiny_config("/tmp/x", train_steps=0, train_epochs=3, checkpoint_steps=0)
    plan = step_plan.StepPlan.from_config(config, num_examples=100)
    assert plan.steps_per_epoch == 12  # drop_remainder: 100 // 8
    assert plan.total_steps == 38  # 100 * 3 // 8 + 1
    assert plan.checkpoint_steps == 12
    assert plan.warmup_steps == 6  # floor(0.5 * 100 / 8 = 6.25)
    config = tiny_config("/tmp/x", train_steps=0, train_epochs=3, warmup_epochs=0.6)
    assert step_plan.StepPlan.from_config(config, num_examples=100).warmup_steps == 7  # 7.5
    with pytest.raises(ConfigError, match="--train_batch_size"):
        step_plan.StepPlan.from_config(config, num_examples=7)


@pytest.mark.parametrize(
    "num_examples, batch, epochs, total, warmup",
    [
        (50_000, 512, 1000, 97_657, 976),  # CIFAR-10 README command
        (1_281_167, 4096, 100, 31_279, 3_127),  # ImageNet README command
        (50_000, 256, 3, 586, 97),  # experiments/ablations/base.flags (0.5 warmup epochs)
    ],
)
def test_step_plan_of_the_reference_commands(num_examples, batch, epochs, total, warmup):
    config = Config(
        train_batch_size=batch,
        train_epochs=epochs,
        warmup_epochs=10 if epochs > 3 else 0.5,
        model_dir="/tmp/x",
    )
    plan = step_plan.StepPlan.from_config(config, num_examples)
    assert (plan.total_steps, plan.warmup_steps) == (total, warmup)
    # --train_steps overrides the total only.
    config = dataclasses.replace(config, train_steps=123)
    plan = step_plan.StepPlan.from_config(config, num_examples)
    assert (plan.total_steps, plan.warmup_steps) == (123, warmup)


def _learning_rates(config, num_examples, steps):
    plan = step_plan.StepPlan.from_config(config, num_examples)
    optimizer = builders.build_training_optimizer(config, plan.warmup_steps, plan.total_steps)
    rates = []
    for step in steps:  # the rate the optimizer applies at each step
        optimizer.iterations.assign(step)
        rates.append(np.float32(optimizer.learning_rate.numpy()))
    return plan, rates


def test_learning_rates_equal_the_references_own_values():
    """The values of the reference's `WarmUpAndCosineDecay` (run at commit 383d414, float32)
    for the CIFAR-10 command: B=512, 1000 epochs, learning rate 1.0 linear (peak 2.0)."""
    config = Config(train_batch_size=512, train_epochs=1000, learning_rate=1.0, model_dir="/x")
    reference = {
        0: 0.0,
        1: 0.00204918,
        488: 1.0,
        975: 1.9979508,
        976: 2.0,
        49_316: 1.0000163,
        97_656: 0.0,
    }
    plan, rates = _learning_rates(config, 50_000, list(reference))
    assert plan.total_steps - 1 == 97_656  # the last step trained
    np.testing.assert_allclose(rates, list(reference.values()), rtol=2e-7, atol=0)


def test_warmup_longer_than_the_run_ramps_as_the_reference_and_warns(caplog):
    # B=256, 3 epochs, default 10 warmup epochs: 586 steps, warmup 1953; the reference
    # reaches 585 / 1953 of the peak (1.0) at its last step.
    config = Config(train_batch_size=256, train_epochs=3, learning_rate=1.0, model_dir="/x")
    assert config.warmup_epochs == 10
    caplog.set_level(logging.WARNING, logger="absl")
    plan, (last,) = _learning_rates(config, 50_000, [585])
    assert (plan.total_steps, plan.warmup_steps) == (586, 1953)
    np.testing.assert_allclose(last, 0.29953918, rtol=2e-7)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("longer than the run (586 steps)" in w for w in warnings), warnings


@pytest.mark.parametrize(
    "start, total, per_epoch, expected",
    [
        (0, 30, 10, [(0, 0, 10), (1, 0, 10), (2, 0, 10)]),
        (4, 30, 10, [(0, 4, 6), (1, 0, 10), (2, 0, 10)]),
        (0, 25, 10, [(0, 0, 10), (1, 0, 10), (2, 0, 5)]),
        (13, 25, 10, [(1, 3, 7), (2, 0, 5)]),
        (25, 25, 10, []),
        # 1 and 2 reference epochs of 32 examples in batches of 8 (5 and 9 steps).
        (0, 5, 4, [(0, 0, 4), (1, 0, 1)]),
        (5, 9, 4, [(1, 1, 3), (2, 0, 1)]),
    ],
)
def test_fit_segments_cover_exactly_the_remaining_steps(start, total, per_epoch, expected):
    segments = step_plan.fit_segments(start, total, per_epoch)
    assert segments == expected
    assert sum(n for _, _, n in segments) == total - start


def test_pretrain_on_mock_cifar10_writes_config_checkpoints_and_summaries(tmp_path):
    model_dir = tmp_path / "run"
    with tfds.testing.mock_data(num_examples=32):
        result = modes.run(tiny_config(model_dir))["train"]
    assert result["global_step"] == 3
    for key in ("loss", "contrast_acc", "contrast_entropy", "probe_loss", "probe_acc"):
        assert key in result and result[key] == result[key]  # present and not NaN
    saved = json.loads((model_dir / "config.json").read_text())
    assert saved["resnet_depth"] == 18 and saved["train_steps"] == 3
    assert (model_dir / "ckpt-2.index").exists() and (model_dir / "ckpt-3.index").exists()
    assert list((model_dir / "train").glob("events.out.tfevents.*"))


@pytest.mark.parametrize("augment_impl", ["batched", "device"])
def test_pretrain_with_batched_and_device_augmentation(tmp_path, augment_impl):
    model_dir = tmp_path / "run"
    config = tiny_config(model_dir, augment_impl=augment_impl, train_steps=2, use_blur=True)
    with tfds.testing.mock_data(num_examples=32):
        result = modes.run(config)["train"]
    assert result["global_step"] == 2 and np.isfinite(result["loss"])
    saved = json.loads((model_dir / "config.json").read_text())
    assert saved["augment_impl"] == augment_impl


@pytest.mark.slow  # about 3 minutes on the shared 2-core machine
def test_epoch_run_ends_on_a_short_epoch_and_resumes_across_it(tmp_path):
    # 32 examples, batch 8: epochs of 4 steps; 1 epoch is 32 * 1 // 8 + 1 = 5 steps
    # (the reference's count), so the run ends one step into its second epoch.
    model_dir = tmp_path / "run"
    by_epochs = dict(train_steps=0, checkpoint_steps=0, checkpoint_epochs=1)
    with tfds.testing.mock_data(num_examples=32):
        first = modes.run(tiny_config(model_dir, train_epochs=1, **by_epochs))["train"]
        assert first["global_step"] == 5
        assert (model_dir / "ckpt-4.index").exists() and (model_dir / "ckpt-5.index").exists()
        # Two epochs: 9 steps; resumes at step 5 (epoch 1, batch 1), saves at 8 and 9.
        second = modes.run(tiny_config(model_dir, train_epochs=2, **by_epochs))["train"]
    assert (second["start_step"], second["global_step"]) == (5, 9)
    assert (model_dir / "ckpt-8.index").exists() and (model_dir / "ckpt-9.index").exists()


def test_train_then_eval_pretrain_then_linear_eval_from_its_checkpoint(tmp_path):
    pre_dir, lin_dir = tmp_path / "pretrain", tmp_path / "linear"
    with tfds.testing.mock_data(num_examples=32):
        pre = modes.run(tiny_config(pre_dir, mode="train_then_eval", eval_split="test", knn_k=5))
        assert {"probe_top1", "probe_top5", "knn_top1"} <= set(pre["eval"])
        assert 0.0 <= pre["eval"]["knn_top1"] <= 1.0
        assert pre["export"].endswith("saved_model/3")
        assert (pre_dir / "saved_model" / "3" / "saved_model.pb").exists()
        saved = json.loads((pre_dir / "eval_results.json").read_text())
        assert saved["global_step"] == 3 and saved["knn_top1"] == pre["eval"]["knn_top1"]

        linear = tiny_config(
            lin_dir,
            mode="train_then_eval",
            train_mode="finetune",
            fine_tune_after_block=4,
            checkpoint=str(pre_dir),
            optimizer="momentum",
            learning_rate=0.1,
            weight_decay=0.0,
            warmup_epochs=0,
            zero_init_logits_layer=True,
            labels_per_class=2,
            eval_split="test",
            train_batch_size=4,
        )
        result = modes.run(linear)
    assert {"top1", "top5", "loss"} <= set(result["eval"])
    # Frozen encoder: the fine-tuned checkpoint's encoder equals the pretrained one.
    pre_reader = tf.train.load_checkpoint(str(pre_dir))
    lin_reader = tf.train.load_checkpoint(str(lin_dir))
    encoder_keys = [
        k for k in pre_reader.get_variable_to_shape_map() if k.startswith("model/encoder/")
    ]
    assert encoder_keys
    for key in encoder_keys:
        np.testing.assert_array_equal(pre_reader.get_tensor(key), lin_reader.get_tensor(key))


def test_eval_without_checkpoint_and_bad_init_checkpoint_are_config_errors(tmp_path):
    with tfds.testing.mock_data(num_examples=32):
        with pytest.raises(ConfigError, match="--model_dir"):
            modes.run(tiny_config(tmp_path / "none", mode="eval", eval_split="test"))
        with pytest.raises(ConfigError, match="--checkpoint"):
            modes.run(
                tiny_config(
                    tmp_path / "ft", train_mode="finetune", checkpoint=str(tmp_path / "missing")
                )
            )
        modes.run(tiny_config(tmp_path / "pre", train_steps=1))
        # A wider encoder contradicts the pretrained run's model.json: named error.
        wider = lambda name: tiny_config(
            tmp_path / name,
            train_mode="finetune",
            width_multiplier=0.25,
            checkpoint=str(tmp_path / "pre"),
        )
        with pytest.raises(ConfigError, match="--width_multiplier=0.25: contradicts .*0.125"):
            modes.run(wider("wide"))
        # Without model.json (a run from before), the weights' shapes decide: named error.
        (tmp_path / "pre" / "model.json").unlink()
        with pytest.raises(ConfigError, match="--checkpoint.*shape"):
            modes.run(wider("wide_old"))
    assert not (tmp_path / "ft").exists()
    assert not (tmp_path / "wide_old").exists()  # no empty model_dir left behind


def test_unwritable_model_dir_is_a_config_error(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a directory")
    with pytest.raises(ConfigError, match="--model_dir.*not writable"):
        records.prepare_model_dir(str(blocker / "run"))


def test_too_little_disk_space_is_a_config_error(tmp_path, monkeypatch):
    import shutil
    from collections import namedtuple

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(10 << 30, 0, 5 << 20))
    with pytest.raises(ConfigError, match="--model_dir.*MB free"):
        records.prepare_model_dir(str(tmp_path / "run"), checkpoint_bytes=100 << 20)
    assert not (tmp_path / "run").exists()


def test_official_imagenet_subsets_are_accepted_as_train_split():
    from tf_simclr import builders

    config = tiny_config(
        "/tmp/unused", dataset="imagenet2012", train_split="imagenet2012_subset/10pct"
    )
    with tfds.testing.mock_data(num_examples=8):
        source = builders.train_source(config)
    assert source.name == "imagenet2012_subset/10pct" and source.split == "train"
    assert source.num_classes == 1000


def test_worker_lost_message_keeps_what_the_runtime_said():
    from tf_simclr.errors import WorkerLost

    # The shape of the error a surviving worker gets (TF 2.21), Python stack included.
    message = (
        "Graph execution error:\n\nDetected at node CollectiveReduceV2 defined at (most "
        'recent call last):\n  File "/x/run.py", line 92, in <module>\n\n  File "/x/app.py", '
        "line 410, in run\n\nCollective ops is aborted by: Error reported from "
        "/job:worker/task:1: The following tasks are unhealthy (stopped sending heartbeats):"
        "\n/job:worker/replica:0/task:1\nThe tasks have crashed.\n\t [[{{node "
        "CollectiveReduceV2}}]] [Op:__inference_one_step_on_data_1234]"
    )
    error = WorkerLost(7, tf.errors.UnavailableError(None, None, message))
    text = str(error)
    assert text.startswith("lost a worker of the multi-worker job at step 7 (UnavailableError:")
    assert "stopped sending heartbeats): /job:worker/replica:0/task:1" in text
    assert "File" not in text and "Detected at node" not in text and "\n" not in text
    assert text.endswith(
        "restart all workers with the same command to resume from the last checkpoint"
    )


_float_variables = _harness.float_variables


def test_a_resumed_run_continues_the_data_epoch_where_it_stopped(tmp_path, image_folder):
    """Killed after step 5 (inside epoch 2) and restarted == never interrupted.

    16 images, batch 4: 4 steps per epoch. Every augmentation is off, so the batches are
    fixed by the data order alone and a resumed run can only end with the same weights
    if it sees the same batches in the same order.
    """
    config = tiny_config(
        tmp_path / "whole",
        dataset="image_folder",
        data_dir=str(image_folder),
        train_batch_size=4,
        train_steps=10,
        checkpoint_steps=1,
        keep_checkpoint_max=20,
        optimizer="momentum",
        learning_rate=0.3,
        warmup_epochs=0,
        use_crop=False,
        use_flip=False,
        use_color_jitter=False,
        use_grayscale=False,
    )
    strategy = tf.distribute.get_strategy()
    pretrain.run(resolver.resolve(config, frozenset()), strategy)

    def resumed_from_step_5(name, **changes):
        model_dir = tmp_path / name
        model_dir.mkdir()
        for path in (tmp_path / "whole").glob("ckpt-5.*"):
            shutil.copy(path, model_dir / path.name)
        (model_dir / "checkpoint").write_text('model_checkpoint_path: "ckpt-5"\n')
        resolved = resolver.resolve(
            config.replace(model_dir=str(model_dir), **changes), frozenset()
        )
        result = pretrain.run(resolved, strategy)
        assert result["global_step"] == 10
        return _float_variables(model_dir / "ckpt-10")

    want = _float_variables(tmp_path / "whole" / "ckpt-10")
    resumed = resumed_from_step_5("resumed")
    assert resumed.keys() == want.keys()
    for key in want:  # the same float32 computation on the same batches
        np.testing.assert_allclose(resumed[key], want[key], rtol=1e-6, atol=1e-7, err_msg=key)
    # Control: the comparison sees the data order. The same resume with another
    # shuffle seed (other batches for steps 6..10) ends elsewhere.
    other = resumed_from_step_5("other_order", seed=1)
    assert max(np.abs(other[k] - want[k]).max() for k in want) > 1e-3


def test_changed_flags_lists_each_flag_with_its_old_and_new_value(tmp_path, caplog):
    import logging

    config = tiny_config(tmp_path, temperature=0.2, train_steps=6)
    previous = json.loads(tiny_config(tmp_path).to_json())
    previous.pop("knn_k")  # a field an older config.json lacks is not compared
    assert records.changed_flags(previous, config) == [
        ("temperature", 0.1, 0.2),
        ("train_steps", 3, 6),
    ]
    caplog.set_level(logging.INFO, logger="absl")
    records.warn_changed_flags(config)  # no config.json yet: nothing to say
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    (tmp_path / "config.json").write_text(json.dumps(previous))
    records.warn_changed_flags(config)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == [
        f"{tmp_path} was run before with other flags; now: --temperature=0.2 (was 0.1), "
        "--train_steps=6 (was 3) (config.json is updated)"
    ]


def fit_a_dense_model(
    tmp_path, total_steps, extra_callbacks=(), steps_per_epoch=10, start=0, verbose=1
):
    """`training.fit` of a one-layer model (batch 4) from step `start` with `--verbose`:
    `steps_per_epoch` steps per epoch, a checkpoint at the end of each."""
    import keras

    model = keras.Sequential([keras.Input([3]), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.SGD(0.01), loss="mse")
    model.optimizer.build(model.trainable_variables)
    model.optimizer.iterations.assign(start)
    checkpoint = tf.train.Checkpoint(model=model, optimizer=model.optimizer)
    manager = tf.train.CheckpointManager(checkpoint, str(tmp_path), max_to_keep=1)
    plan = step_plan.StepPlan(
        steps_per_epoch=steps_per_epoch,
        total_steps=total_steps,
        warmup_steps=0,
        checkpoint_steps=steps_per_epoch,
    )
    data = tf.data.Dataset.from_tensors((tf.ones([4, 3]), tf.ones([4, 1]))).repeat()
    config = tiny_config(tmp_path, verbose=verbose, train_summary_steps=0, train_batch_size=4)
    strategy = tf.distribute.get_strategy()
    run = training.Run(
        config, strategy, model, model, model.optimizer, plan, manager, start, str(tmp_path)
    )
    return training.fit(run, lambda e, s: data, extra_callbacks)


def progress_lines(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.getMessage().startswith("step ")]


def test_progress_in_a_log_file_is_a_line_every_few_steps(tmp_path, caplog, capsys):
    """stdout not a terminal (captured here, as in a log file or CI): no progress bar (its
    carriage returns and colour codes), but a line every total/20 steps with the step,
    the loss and the images per second."""
    caplog.set_level(logging.INFO, logger="absl")
    capsys.readouterr()
    assert fit_a_dense_model(tmp_path, 40)["global_step"] == 40
    out = capsys.readouterr().out
    assert "\r" not in out and "\x1b" not in out and "Epoch" not in out, out[:500]
    lines = progress_lines(caplog)
    assert [line.split(" (")[0] for line in lines] == [f"step {s}/40" for s in range(2, 41, 2)]
    assert re.fullmatch(r"step 40/40 \(100%\): loss \S+, \d+ img/s", lines[-1]), lines[-1]


def test_progress_of_an_interrupted_run_ends_on_the_step_reached(tmp_path, caplog, capsys):
    """SIGINT after step 14 of 40: training stops after step 15 (the step finishes, a
    checkpoint is saved), between two periodic lines (every 2 steps); the last progress
    line says 15/40, not 40/40."""
    import keras

    from tf_simclr.errors import TrainingInterrupted

    class InterruptAt14(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            if int(self.model.optimizer.iterations.numpy()) == 14:
                os.kill(os.getpid(), signal.SIGINT)

    caplog.set_level(logging.INFO, logger="absl")
    with pytest.raises(TrainingInterrupted):
        fit_a_dense_model(tmp_path, 40, [InterruptAt14()])
    lines = [line.split(" (")[0] for line in progress_lines(caplog)]
    assert lines == [f"step {s}/40" for s in (2, 4, 6, 8, 10, 12, 14, 15)], lines
    assert "40/40" not in capsys.readouterr().out


def test_keras_epoch_headers_count_the_runs_epochs_after_a_resume(tmp_path, caplog, capsys):
    """Resumed at step 2 of 6 (2 steps per epoch): Keras says "Epoch 2/3", "Epoch 3/3",
    as our "Finished epoch 2/3" lines do (it said "Epoch 2/2" before)."""
    import logging

    caplog.set_level(logging.INFO, logger="absl")
    capsys.readouterr()
    result = fit_a_dense_model(tmp_path, 6, steps_per_epoch=2, start=2, verbose=2)
    assert result["global_step"] == 6
    headers = [line for line in capsys.readouterr().out.splitlines() if line.startswith("Epoch")]
    assert headers == ["Epoch 2/3", "Epoch 3/3"]
    finished = [r.getMessage() for r in caplog.records if r.getMessage().startswith("Finished")]
    assert finished == ["Finished epoch 2/3", "Finished epoch 3/3"]


@pytest.mark.slow
def test_resume_warns_about_changed_flags_and_keras_numbers_epochs_as_we_do(
    tmp_path, caplog, capsys
):
    """A resumed run names each changed flag (old and new value), and Keras' "Epoch e/n"
    headers count the run's epochs, as our "Finished epoch e/n" lines do."""
    import logging

    from absl import logging as absl_logging

    # As run.py does: absl's verbosity at INFO (tf.saved_model.save resets the absl logger's
    # level to the verbosity, so caplog's level alone would not survive the first export).
    verbosity = absl_logging.get_verbosity()
    absl_logging.set_verbosity(absl_logging.INFO)
    caplog.set_level(logging.INFO, logger="absl")
    try:
        resume_twice(tmp_path / "run", caplog, capsys)
    finally:
        absl_logging.set_verbosity(verbosity)


def resume_twice(model_dir, caplog, capsys):
    import logging

    with tfds.testing.mock_data(num_examples=16):  # 2 steps per epoch
        modes.run(tiny_config(model_dir, train_steps=2, checkpoint_steps=2))
        caplog.clear()
        capsys.readouterr()
        modes.run(tiny_config(model_dir, train_steps=6, temperature=0.2, verbose=2))
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    changed = [m for m in warnings if "was run before with other flags" in m]
    assert len(changed) == 1, warnings
    assert "--temperature=0.2 (was 0.1)" in changed[0] and "--train_steps=6 (was 2)" in changed[0]
    assert "--verbose=2 (was 0)" in changed[0]
    assert json.loads((model_dir / "config.json").read_text())["temperature"] == 0.2
    finished = [r.getMessage() for r in caplog.records if r.getMessage().startswith("Finished")]
    assert finished == ["Finished epoch 2/3", "Finished epoch 3/3"]
    headers = [line for line in capsys.readouterr().out.splitlines() if line.startswith("Epoch")]
    assert headers == ["Epoch 2/3", "Epoch 3/3"]
