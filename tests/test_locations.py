"""`locations.find`: each kind of location told apart once, from the files alone."""

import pytest
import tensorflow as tf

from tf_simclr import locations
from tf_simclr.errors import ArgumentError


def _checkpoint(directory, reference=False):
    """A model_dir with checkpoint ckpt-1 of one variable, under the reference's ResNet path
    (`model/resnet_model/...`) or one of ours (`model/encoder/...`)."""
    part = "resnet_model" if reference else "encoder"
    root = tf.train.Checkpoint(
        model=tf.train.Checkpoint(**{part: tf.train.Checkpoint(v=tf.Variable(1.0))})
    )
    manager = tf.train.CheckpointManager(root, str(directory), 1, checkpoint_name="ckpt")
    return manager.save(checkpoint_number=1)


def test_each_kind(tmp_path):
    assert locations.find(str(tmp_path / "nothing")).kind == locations.MISSING
    assert locations.find("").kind == locations.MISSING
    assert locations.find(str(tmp_path)).kind == locations.DIRECTORY

    prefix = _checkpoint(tmp_path / "run")
    run = locations.find(str(tmp_path / "run"))
    assert (run.kind, run.target, run.variables) == (locations.RUN, prefix, prefix)
    assert run.is_checkpoint and not run.reference
    assert locations.latest_checkpoint(str(tmp_path / "run")) == prefix
    assert locations.complete(prefix)
    one = locations.find(prefix)
    assert (one.kind, one.checkpoint("x")) == (locations.CHECKPOINT, prefix)

    module = tf.Module()
    module.v = tf.Variable(2.0)
    tf.saved_model.save(module, str(tmp_path / "published" / "saved_model"))
    for path in (tmp_path / "published" / "saved_model", tmp_path / "published"):
        found = locations.find(str(path))
        assert found.kind == locations.SAVED_MODEL
        assert found.target == str(tmp_path / "published" / "saved_model")
        assert found.variables.endswith("saved_model/variables/variables")
        assert not found.reference


def test_the_reference_model_is_told_by_its_variables(tmp_path):
    _checkpoint(tmp_path / "theirs", reference=True)
    _checkpoint(tmp_path / "ours")
    assert locations.find(str(tmp_path / "theirs")).reference
    assert not locations.find(str(tmp_path / "ours")).reference
    assert not locations.find(str(tmp_path / "nothing")).reference


def test_no_checkpoint_is_one_line_naming_the_argument(tmp_path):
    with pytest.raises(ArgumentError, match=r"^init_checkpoint=.*directory holds no checkpoint"):
        locations.find(str(tmp_path)).checkpoint("init_checkpoint")
    with pytest.raises(ArgumentError, match=r"^path=.*no such checkpoint"):
        locations.find(str(tmp_path / "ckpt-9")).checkpoint()
    assert locations.latest_checkpoint(str(tmp_path)) == ""
    assert not locations.complete(str(tmp_path / "ckpt-9"))
