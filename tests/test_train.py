"""Tests of the pretraining driver: step plan, fit segments, a real run on mock TFDS data."""

import json

import pytest
import tensorflow_datasets as tfds

from tf_simclr import train
from tf_simclr.config import Config, ConfigError


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
    plan = train.StepPlan.from_config(config, num_examples=100)
    assert plan.steps_per_epoch == 12  # drop_remainder: 100 // 8
    assert plan.total_steps == 36
    assert plan.checkpoint_steps == 12
    assert plan.warmup_steps == 6
    with pytest.raises(ConfigError, match="--train_batch_size"):
        train.StepPlan.from_config(config, num_examples=7)


@pytest.mark.parametrize(
    "start, total, per_epoch, expected",
    [
        (0, 30, 10, [(0, 3, 10)]),
        (4, 30, 10, [(0, 1, 6), (1, 3, 10)]),
        (0, 25, 10, [(0, 2, 10), (2, 3, 5)]),
        (13, 25, 10, [(1, 2, 7), (2, 3, 5)]),
        (25, 25, 10, []),
    ],
)
def test_fit_segments_cover_exactly_the_remaining_steps(start, total, per_epoch, expected):
    segments = train.fit_segments(start, total, per_epoch)
    assert segments == expected
    assert sum((e - i) * s for i, e, s in segments) == total - start


def test_pretrain_on_mock_cifar10_writes_config_checkpoints_and_summaries(tmp_path):
    model_dir = tmp_path / "run"
    with tfds.testing.mock_data(num_examples=32):
        result = train.run(tiny_config(model_dir))
    assert result["global_step"] == 3
    for key in ("loss", "contrast_acc", "contrast_entropy", "probe_loss", "probe_acc"):
        assert key in result and result[key] == result[key]  # present and not NaN
    saved = json.loads((model_dir / "config.json").read_text())
    assert saved["resnet_depth"] == 18 and saved["train_steps"] == 3
    assert (model_dir / "ckpt-2.index").exists() and (model_dir / "ckpt-3.index").exists()
    assert list((model_dir / "train").glob("events.out.tfevents.*"))


def test_resume_continues_step_and_learning_rate(tmp_path):
    model_dir = tmp_path / "run"
    with tfds.testing.mock_data(num_examples=32):
        train.run(tiny_config(model_dir, train_steps=2))
        resumed = train.run(tiny_config(model_dir, train_steps=4))
        assert resumed["global_step"] == 4
        # A third call with the same target has nothing left to do.
        again = train.run(tiny_config(model_dir, train_steps=4))
    assert again["global_step"] == 4
    # Warmup 2 steps (0.5 epoch of 4 steps), cosine to 0 at step 4: LR at step 3 is peak/2.
    peak = 0.3 * 8 / 256
    assert resumed["learning_rate"] == pytest.approx(peak / 2, rel=1e-4)
