"""Issue 23: a training source read from a class-sorted image folder mixes the classes from
its first batch on, by default: the command line's path, the Python API's and the
notebook's (the notebook's own test, tests/test_notebook.py).

The folder (`class_sorted_folder`) has 8 classes of 1,100 images, each more than the default
shuffle buffer: read in the folder's order, every one of the first batches holds class 0 only.
"""

import numpy as np
import pytest
import tensorflow as tf

from tests import _harness
from tf_simclr import builders, training
from tf_simclr.data import AugmentConfig, make_source, pretrain_dataset, supervised_dataset

BATCH, BATCHES, AT_LEAST = 32, 4, 5  # each of the first 4 batches of 32: >= 5 of 8 classes


def classes_per_batch(dataset, batches=BATCHES):
    return [len(np.unique(batch["label"].numpy())) for batch in dataset.take(batches)]


def assert_mixed(counts):
    assert len(counts) == BATCHES and min(counts) >= AT_LEAST, counts


def test_the_python_api_defaults_mix_the_classes(class_sorted_folder):
    source = make_source("image_folder", "train", data_dir=str(class_sorted_folder))
    augment = AugmentConfig(image_size=8, blur=False)
    assert_mixed(classes_per_batch(pretrain_dataset(source, augment, BATCH, seed=0)))
    assert_mixed(classes_per_batch(supervised_dataset(source, augment, BATCH, seed=0)))
    # Asked otherwise: the folder's order, which the default shuffle buffer cannot undo.
    stored = make_source(
        "image_folder", "train", data_dir=str(class_sorted_folder), shuffle_files=False
    )
    assert classes_per_batch(pretrain_dataset(stored, augment, BATCH, seed=0)) == [1] * BATCHES


@pytest.mark.parametrize("train_mode", ["pretrain", "finetune"])
def test_the_command_lines_training_batches_mix_the_classes(class_sorted_folder, train_mode):
    # What `--mode=train` builds (modes/pretrain.py, modes/finetune.py): the source of
    # `builders.train_source` and the first epoch of `training.epoch_datasets`.
    config = _harness.tiny_config(
        dataset="image_folder",
        data_dir=str(class_sorted_folder),
        train_mode=train_mode,
        image_size=8,
        train_batch_size=BATCH,
    )
    make = pretrain_dataset if train_mode == "pretrain" else supervised_dataset
    source = builders.train_source(config)
    datasets = training.epoch_datasets(config, tf.distribute.get_strategy(), source, make)
    assert_mixed(classes_per_batch(datasets(0, 0)))
