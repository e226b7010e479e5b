"""Tests of the pretraining driver: step plan, fit segments, a real run on mock TFDS data."""

import json
import shutil

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from tf_simclr import modes, training
from tf_simclr.config import Config, ConfigError
from tf_simclr.modes import pretrain


def tiny_config(model_dir, **changes):
    base = dict(
        mode="train",
        dataset="cifar10",
        model_dir=str(model_dir),
        resnet_depth=18,
        width_multiplier=0.125,
        image_size=16,
        train_batch_size=8,
        train_steps=3,
        checkpoint_steps=2,
        warmup_epochs=0.5,
        proj_out_dim=8,
        num_proj_layers=2,
        use_blur=False,
        verbose=0,
        train_summary_steps=1,
    )
    base.update(changes)
    return Config(**base)


def test_step_plan_follows_reference_units():
    config = tiny_config("/tmp/x", train_steps=0, train_epochs=3, checkpoint_steps=0)
    plan = training.StepPlan.from_config(config, num_examples=100)
    assert plan.steps_per_epoch == 12  # drop_remainder: 100 // 8
    assert plan.total_steps == 36
    assert plan.checkpoint_steps == 12
    assert plan.warmup_steps == 6
    with pytest.raises(ConfigError, match="--train_batch_size"):
        training.StepPlan.from_config(config, num_examples=7)


@pytest.mark.parametrize(
    "start, total, per_epoch, expected",
    [
        (0, 30, 10, [(0, 0, 10), (1, 0, 10), (2, 0, 10)]),
        (4, 30, 10, [(0, 4, 6), (1, 0, 10), (2, 0, 10)]),
        (0, 25, 10, [(0, 0, 10), (1, 0, 10), (2, 0, 5)]),
        (13, 25, 10, [(1, 3, 7), (2, 0, 5)]),
        (25, 25, 10, []),
    ],
)
def test_fit_segments_cover_exactly_the_remaining_steps(start, total, per_epoch, expected):
    segments = training.fit_segments(start, total, per_epoch)
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


def test_resume_continues_step_and_learning_rate(tmp_path):
    model_dir = tmp_path / "run"
    with tfds.testing.mock_data(num_examples=32):
        modes.run(tiny_config(model_dir, train_steps=2))
        resumed = modes.run(tiny_config(model_dir, train_steps=4))["train"]
        assert resumed["global_step"] == 4
        # A third call with the same target has nothing left to do.
        again = modes.run(tiny_config(model_dir, train_steps=4))["train"]
    assert again["global_step"] == 4
    # Warmup 2 steps (0.5 epoch of 4 steps), cosine to 0 at step 4: LR at step 3 is peak/2.
    peak = 0.3 * 8 / 256
    assert resumed["learning_rate"] == pytest.approx(peak / 2, rel=1e-4)


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
        with pytest.raises(ConfigError, match="--width_multiplier=0.25: contradicts .*0.125"):
            modes.run(
                tiny_config(
                    tmp_path / "wide",
                    train_mode="finetune",
                    width_multiplier=0.25,
                    checkpoint=str(tmp_path / "pre"),
                )
            )
        # Without model.json (a run from before), the weights' shapes decide: named error.
        (tmp_path / "pre" / "model.json").unlink()
        with pytest.raises(ConfigError, match="--checkpoint.*shape"):
            modes.run(
                tiny_config(
                    tmp_path / "wide_old",
                    train_mode="finetune",
                    width_multiplier=0.25,
                    checkpoint=str(tmp_path / "pre"),
                )
            )
    assert not (tmp_path / "ft").exists()
    assert not (tmp_path / "wide_old").exists()  # no empty model_dir left behind


def test_unwritable_model_dir_is_a_config_error(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a directory")
    with pytest.raises(ConfigError, match="--model_dir.*not writable"):
        training.prepare_model_dir(str(blocker / "run"))


def test_too_little_disk_space_is_a_config_error(tmp_path, monkeypatch):
    import shutil
    from collections import namedtuple

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(10 << 30, 0, 5 << 20))
    with pytest.raises(ConfigError, match="--model_dir.*MB free"):
        training.prepare_model_dir(str(tmp_path / "run"), checkpoint_bytes=100 << 20)
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
    from tf_simclr.callbacks import WorkerLost

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


def _float_variables(prefix):
    reader = tf.train.load_checkpoint(str(prefix))
    values = {k: reader.get_tensor(k) for k in reader.get_variable_to_shape_map()}
    return {k: v for k, v in values.items() if np.issubdtype(np.asarray(v).dtype, np.floating)}


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
    pretrain.run(config, strategy)

    def resumed_from_step_5(name, **changes):
        model_dir = tmp_path / name
        model_dir.mkdir()
        for path in (tmp_path / "whole").glob("ckpt-5.*"):
            shutil.copy(path, model_dir / path.name)
        (model_dir / "checkpoint").write_text('model_checkpoint_path: "ckpt-5"\n')
        result = pretrain.run(config.replace(model_dir=str(model_dir), **changes), strategy)
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
