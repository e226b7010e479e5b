"""Issue 23: a truncated `ckpt-N.data-*` or a garbage `.index` is one line naming the file
(`CorruptCheckpoint`, an ArgumentError: exit 2 on the command line); resuming falls back to
the newest older checkpoint that reads, and says so."""

import glob
import logging

import keras
import numpy as np
import pytest

from tf_simclr import checkpoints
from tf_simclr.errors import ArgumentError


def tiny_run(model_dir, steps=(1, 2)):
    """A Dense model saved at `steps`, its kernel filled with the step number each time."""
    model = keras.Sequential([keras.Input([3]), keras.layers.Dense(2)])
    optimizer = keras.optimizers.SGD(0.1)
    optimizer.build(model.trainable_variables)
    manager = checkpoints.manager_for(model, optimizer, str(model_dir), 5)
    for step in steps:
        model.layers[0].kernel.assign(np.full([3, 2], float(step), np.float32))
        manager.save(step)
    return model, manager


def truncate_data(prefix):
    (data,) = glob.glob(f"{prefix}.data-*")
    with open(data, "r+b") as f:
        f.truncate(8)
    return data


def garble_index(prefix):
    with open(f"{prefix}.index", "wb") as f:
        f.write(b"not a checkpoint index" * 4)
    return f"{prefix}.index"


@pytest.mark.parametrize("damage", [truncate_data, garble_index])
def test_resume_falls_back_to_the_previous_complete_checkpoint(tmp_path, damage, caplog):
    model, manager = tiny_run(tmp_path)
    broken = damage(str(tmp_path / "ckpt-2"))
    model.layers[0].kernel.assign(np.zeros([3, 2], np.float32))
    with caplog.at_level(logging.WARNING, logger="absl"):
        assert checkpoints.restore_or_initialize(manager) == "resumed"
    np.testing.assert_array_equal(model.layers[0].kernel.numpy(), np.ones([3, 2]))  # ckpt-1
    (warning,) = [r.getMessage() for r in caplog.records if "resumed from" in r.getMessage()]
    assert broken in warning and "unreadable" in warning and "ckpt-1 instead" in warning


@pytest.mark.parametrize("damage", [truncate_data, garble_index])
def test_no_readable_checkpoint_left_is_one_line_naming_the_file(tmp_path, damage):
    _, manager = tiny_run(tmp_path, steps=(1,))
    broken = damage(str(tmp_path / "ckpt-1"))
    with pytest.raises(checkpoints.CorruptCheckpoint) as info:
        checkpoints.restore_or_initialize(manager)
    assert isinstance(info.value, ArgumentError) and info.value.argument == "resume_dir"
    assert broken in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize("damage", [truncate_data, garble_index])
def test_eval_and_export_restore_say_which_file_is_unreadable(tmp_path, damage):
    model, _ = tiny_run(tmp_path)
    broken = damage(str(tmp_path / "ckpt-2"))
    with pytest.raises(checkpoints.CorruptCheckpoint, match="unreadable") as info:
        checkpoints.restore_model(model, str(tmp_path), "model_dir")  # its latest: ckpt-2
    assert broken in str(info.value) and info.value.argument == "model_dir"
