"""Standard Keras callbacks and `.keras` files on our models, used as the README shows.

The README's model (`SimCLR(ResNet(...), ProjectionHead(...))` compiled with LARS and
a warmup-cosine schedule, then `model.fit`) must work with `BackupAndRestore`,
`ModelCheckpoint(save_weights_only=True)` and `ModelCheckpoint("....keras")` unchanged,
and a `.keras` file of a trained model must restore weights, optimizer slots and the
step in a process that only imported `tf_simclr`, so that `fit` continues where it
stopped.
"""

import json
import os
import subprocess
import sys
import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf

from tf_simclr.data import AugmentConfig, DeviceViews
from tf_simclr.models import Classifier, ProjectionHead, ResNet, SimCLR
from tf_simclr.optim import LARS, WarmupCosineDecay

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SIZE, BATCH, CLASSES = 16, 8, 3


def views_batch(seed=0):
    rng = np.random.default_rng(seed)
    return {
        "view1": rng.uniform(size=(BATCH, SIZE, SIZE, 3)).astype("float32"),
        "view2": rng.uniform(size=(BATCH, SIZE, SIZE, 3)).astype("float32"),
        "label": rng.integers(0, CLASSES, BATCH).astype("int64"),
    }


def labelled_batch(seed=0):
    rng = np.random.default_rng(seed)
    images = rng.uniform(size=(BATCH, SIZE, SIZE, 3)).astype("float32")
    return images, rng.integers(0, CLASSES, BATCH).astype("int64")


def lars():
    """LARS with 4 warmup steps to a peak of 0.4."""
    return LARS(WarmupCosineDecay(0.4, warmup_steps=4, total_steps=20), weight_decay=1e-4)


def readme_simclr(compiled=True):
    """The README's Python API model at tiny size, compiled as the README does (never called)."""
    encoder = ResNet(depth=18, width_multiplier=0.125, cifar_stem=True)
    head = ProjectionHead("nonlinear", out_dim=8, num_layers=2)
    model = SimCLR(encoder, head, num_classes=CLASSES, temperature=0.5)
    if compiled:
        model.compile(optimizer=lars())
    return model, tf.data.Dataset.from_tensors(views_batch()).repeat()


def classifier(compiled=True):
    """A fine-tuning Classifier on a tiny ResNet, compiled with LARS (never called)."""
    encoder = ResNet(depth=18, width_multiplier=0.125, cifar_stem=True)
    model = Classifier(encoder, CLASSES, fine_tune_after_block=2)
    if compiled:
        model.compile(optimizer=lars())
    return model, tf.data.Dataset.from_tensors(labelled_batch()).repeat()


# The rate of the third step (step index 2) in warmup: it differs at every early step,
# so a schedule that restarted after a restore would show in the logged learning rate.
THIRD_RATE = float(WarmupCosineDecay(0.4, warmup_steps=4, total_steps=20)(2))

MODELS = {"simclr": readme_simclr, "classifier": classifier}


class StopAtEpoch(keras.callbacks.Callback):
    """Raises at the start of `epoch`, as a crash would (after the previous epoch's backup)."""

    def __init__(self, epoch):
        super().__init__()
        self.epoch = epoch

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == self.epoch:
            raise KeyboardInterrupt("simulated crash")


def max_difference(a, b):
    """Largest absolute difference between two lists of variables or arrays."""
    return max(
        float(np.max(np.abs(np.asarray(x) - np.asarray(y)))) for x, y in zip(a, b, strict=True)
    )


class WeightsAtTrainBegin(keras.callbacks.Callback):
    """Records the weights and step `fit` starts from (after BackupAndRestore restored them)."""

    def on_train_begin(self, logs=None):
        self.weights = [w.numpy() for w in self.model.weights]
        self.optimizer = [v.numpy() for v in self.model.optimizer.variables]


@pytest.mark.parametrize("kind", sorted(MODELS))
def test_backup_and_restore_resumes_where_the_run_stopped(tmp_path, kind):
    keras.utils.set_random_seed(0)
    crashed, data = MODELS[kind]()
    backup = keras.callbacks.BackupAndRestore(str(tmp_path / "backup"))
    with pytest.raises(KeyboardInterrupt):
        crashed.fit(
            data, epochs=3, steps_per_epoch=1, verbose=0, callbacks=[backup, StopAtEpoch(2)]
        )
    assert int(crashed.optimizer.iterations) == 2

    # What a new process does: a new model (other initial weights, step 0), the same fit.
    keras.utils.set_random_seed(1)
    resumed, data = MODELS[kind]()
    backup = keras.callbacks.BackupAndRestore(str(tmp_path / "backup"))
    start = WeightsAtTrainBegin()
    history = resumed.fit(data, epochs=3, steps_per_epoch=1, verbose=0, callbacks=[backup, start])
    assert max_difference(start.weights, crashed.weights) == 0
    assert max_difference(start.optimizer, crashed.optimizer.variables) == 0  # step 2 included
    assert history.epoch == [2]  # only the epoch that was lost
    assert int(resumed.optimizer.iterations) == 3
    # The third step ran with the schedule's third rate (a restarted schedule: its first).
    assert history.history["learning_rate"] == pytest.approx([THIRD_RATE])


@pytest.mark.parametrize("kind", sorted(MODELS))
def test_model_checkpoint_weights_only_and_keras_file(tmp_path, kind):
    model, data = MODELS[kind]()
    weights = keras.callbacks.ModelCheckpoint(
        str(tmp_path / "w-{epoch}.weights.h5"), save_weights_only=True
    )
    whole = keras.callbacks.ModelCheckpoint(str(tmp_path / "m-{epoch}.keras"))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.fit(data, epochs=2, steps_per_epoch=1, verbose=0, callbacks=[weights, whole])
    unbuilt = [str(w.message) for w in caught if "built" in str(w.message)]
    assert not unbuilt, unbuilt
    assert model.built

    fresh, _ = MODELS[kind](compiled=False)  # weights only: no optimizer to restore
    fresh.load_weights(str(tmp_path / "w-2.weights.h5"))
    assert max_difference(fresh.weights, model.weights) == 0
    reloaded = keras.saving.load_model(str(tmp_path / "m-2.keras"))
    assert max_difference(reloaded.weights, model.weights) == 0
    assert int(reloaded.optimizer.iterations) == 2


class TinyEncoder(keras.Model):
    """A subclassed encoder that declares no input: built only by a first call."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.conv = keras.layers.Conv2D(4, 3, strides=2)
        self.pool = keras.layers.GlobalAveragePooling2D()

    def call(self, images, training=False):
        return self.pool(self.conv(images))


@pytest.mark.parametrize("device_augment", [False, True])
def test_a_model_without_input_spec_is_built_from_the_first_batch(tmp_path, device_augment):
    augment = DeviceViews(AugmentConfig(image_size=12, blur=False)) if device_augment else None
    model = SimCLR(TinyEncoder(), ProjectionHead("linear", out_dim=4), CLASSES, augment=augment)
    assert not model.built
    model.compile(optimizer=lars())
    if device_augment:
        images = np.random.default_rng(0).integers(0, 256, (BATCH, 20, 20, 3), dtype=np.uint8)
        batch = {"image": images, "label": np.zeros([BATCH], np.int64)}
    else:
        batch = views_batch()
    data = tf.data.Dataset.from_tensors(batch).repeat()
    backup = keras.callbacks.BackupAndRestore(str(tmp_path / "backup"))
    model.fit(data, epochs=1, steps_per_epoch=1, verbose=0, callbacks=[backup])
    assert model.built
    assert model.encoder.conv.kernel.shape == (3, 3, 3, 4)


@pytest.fixture(scope="module")
def trained_keras_file(tmp_path_factory):
    """The README model after 2 LARS steps, its data, its `.keras` file, and what the file
    holds: `{"weights_sum", "optimizer_variables"}` (the model may train on in a test)."""
    model, data = readme_simclr()
    model.fit(data, epochs=1, steps_per_epoch=2, verbose=0)
    path = str(tmp_path_factory.mktemp("keras_file") / "model.keras")
    model.save(path)
    saved = {
        "weights_sum": float(sum(np.abs(w.numpy()).sum() for w in model.weights)),
        "optimizer_variables": len(model.optimizer.variables),
    }
    return model, data, path, saved


def test_keras_file_round_trip_restores_weights_slots_and_step(trained_keras_file):
    model, data, path, _ = trained_keras_file
    reloaded = keras.saving.load_model(path)
    assert type(reloaded.optimizer).__name__ == "LARS"
    assert int(reloaded.optimizer.iterations) == 2
    assert len(reloaded.optimizer.variables) == len(model.optimizer.variables)
    assert max_difference(reloaded.weights, model.weights) == 0
    assert max_difference(reloaded.optimizer.variables, model.optimizer.variables) == 0
    # `fit` goes on where it stopped: the third step's rate, the same update.
    go_on = reloaded.fit(data, epochs=1, steps_per_epoch=1, verbose=0)
    assert go_on.history["learning_rate"] == pytest.approx([THIRD_RATE])
    model_go_on = model.fit(data, epochs=1, steps_per_epoch=1, verbose=0)
    assert model_go_on.history["learning_rate"] == pytest.approx([THIRD_RATE])
    assert max_difference(reloaded.weights, model.weights) < 1e-6


_LOAD_IN_A_FRESH_PROCESS = """
import json, sys
import tf_simclr  # before Keras is imported: it registers our classes once Keras loads
import keras

model = keras.saving.load_model(sys.argv[1])
print(json.dumps({"model": type(model).__name__,
                  "optimizer": type(model.optimizer).__name__,
                  "schedule": model.optimizer.get_config()["learning_rate"]["class_name"],
                  "iterations": int(model.optimizer.iterations),
                  "optimizer_variables": len(model.optimizer.variables),
                  "weights_sum": float(sum(abs(w.numpy()).sum() for w in model.weights))}))
"""


def test_importing_tf_simclr_registers_what_a_saved_model_holds(trained_keras_file, tmp_path):
    _, _, path, saved = trained_keras_file
    env = {**os.environ, "PYTHONPATH": ROOT, "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.run(
        [sys.executable, "-c", _LOAD_IN_A_FRESH_PROCESS, path],
        capture_output=True,
        text=True,
        env=env,
        cwd=str(tmp_path),  # not the repository: tf_simclr comes from PYTHONPATH
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    weights_sum = report.pop("weights_sum")
    assert report == {
        "model": "SimCLR",
        "optimizer": "LARS",
        "schedule": "WarmupCosineDecay",
        "iterations": 2,
        "optimizer_variables": saved["optimizer_variables"],
    }
    assert weights_sum == pytest.approx(saved["weights_sum"], rel=1e-6)
