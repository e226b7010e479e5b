"""Issue 23: a training source read from a class-sorted image folder mixes the classes from
its first batch on, by default: the command line's path, the Python API's and the
notebook's (the notebook's own test, tests/test_notebook.py); and `--eval_steps` scores a
fair sample of such a folder, and says it is partial.

The folder (`class_sorted_folder`) has 8 classes of 1,100 images, each more than the default
shuffle buffer: read in the folder's order, every one of the first batches holds class 0 only.
"""

import dataclasses

import numpy as np
import pytest
import tensorflow as tf

from tests import _harness
from tf_simclr import builders, modes, training
from tf_simclr.data import AugmentConfig, make_source, pretrain_dataset, supervised_dataset
from tf_simclr.eval import evaluate_classifier
from tf_simclr.modes import evaluate

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


def test_a_partial_evaluation_is_a_fair_sample_and_says_so(
    class_sorted_folder, tmp_path, monkeypatch
):
    # --eval_steps=2 on the class-sorted test split (8 classes of 200): the 64 images scored
    # are a seeded sample of every class, not the first 64 files (class 0), and the results
    # say they are 64 of 1,600.
    config = _harness.tiny_config(
        tmp_path / "run",
        dataset="image_folder",
        data_dir=str(class_sorted_folder),
        eval_split="test",
        train_steps=1,
        checkpoint_steps=1,
        train_summary_steps=0,
        eval_knn=False,
    )
    modes.run(config)
    scored = []

    def recording(model, dataset, verbose=0):
        scored.extend(label for batch in dataset for label in batch["label"].numpy().tolist())
        return evaluate_classifier(model, dataset, verbose=verbose)

    monkeypatch.setattr(evaluate, "evaluate_classifier", recording)
    some = modes.run(dataclasses.replace(config, mode="eval", eval_steps=2, eval_batch_size=32))
    some = some["eval"]
    assert len(scored) == 64 and len(set(scored)) >= 6, sorted(scored)
    assert (some["probe_num_examples"], some["split_num_examples"]) == (64, 1600)
    assert some["partial_eval"] is True
    whole = modes.run(dataclasses.replace(config, mode="eval", eval_batch_size=400))["eval"]
    assert (whole["probe_num_examples"], whole["split_num_examples"]) == (1600, 1600)
    assert whole["partial_eval"] is False
