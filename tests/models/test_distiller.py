"""`Distiller` as a Keras model in a notebook: built, summarised, saved and restored, evaluated.

Its weights are the student's: the teacher is held outside the object graph on purpose
(tests/test_distill.py checks it is frozen and untracked during `fit`), so it must appear in
no weights file or checkpoint of the distiller either. The distillation mode is tested in
tests/test_distill.py.
"""

import h5py
import keras
import numpy as np
import pytest
import tensorflow as tf

from tf_simclr.models import Classifier, Distiller, ResNet, distillation_loss

SIZE = 16


def tiny_classifier(width=0.125, seed=0):
    keras.utils.set_random_seed(seed)
    return Classifier(ResNet(18, width_multiplier=width, cifar_stem=True), 3)


def dataset(seed=0, batch=4):
    rng = np.random.default_rng(seed)
    data = {
        "image": rng.uniform(size=(8, SIZE, SIZE, 3)).astype("float32"),
        "label": rng.integers(-1, 3, 8).astype("int64"),
    }
    return tf.data.Dataset.from_tensor_slices(data).batch(batch)


def h5_model_variables(path) -> list[str]:
    """The variables a Keras weights file holds, but the optimizer's."""
    names = []
    with h5py.File(path) as f:
        f.visititems(lambda name, item: names.append(name) if hasattr(item, "shape") else None)
    return [name for name in names if not name.startswith("optimizer/")]


@pytest.fixture(scope="module")
def teacher():
    return tiny_classifier(seed=1)


def test_built_when_its_student_is_and_else_by_fit(teacher):
    distiller = Distiller(tiny_classifier(width=0.0625), teacher)
    assert distiller.built  # the student (a Classifier on a ResNet) is built when created
    # A student whose encoder declares no input is built by `fit`, before any callback.
    encoder = keras.Sequential(
        [keras.layers.Conv2D(4, 3), keras.layers.GlobalAveragePooling2D()], name="encoder"
    )
    late = Distiller(Classifier(encoder, 3), teacher)
    assert not late.built
    late.compile(optimizer=keras.optimizers.SGD(0.1))
    late.fit(dataset(), verbose=0)
    assert late.built and late.student.built
    late.summary(print_fn=lambda *args, **kwargs: None)


def test_weights_are_the_students_and_restore_into_a_new_distiller(teacher, tmp_path):
    student = tiny_classifier(width=0.0625)
    distiller = Distiller(student, teacher, temperature=2.0)
    distiller.compile(optimizer=keras.optimizers.SGD(0.1))
    distiller.fit(dataset(), verbose=0)
    teacher_ids = {id(v) for v in teacher.weights}
    assert {id(v) for v in distiller.weights} == {id(v) for v in student.weights}
    assert not teacher_ids & {id(v) for v in distiller.weights}

    path = str(tmp_path / "distiller.weights.h5")
    distiller.save_weights(path)
    saved = h5_model_variables(path)
    assert len(saved) == len(student.weights), [n for n in saved if "teacher" in n][:3]
    # A new distiller (a new notebook session) restores the student's weights exactly.
    restored = Distiller(tiny_classifier(width=0.0625, seed=2), teacher, temperature=2.0)
    restored.load_weights(path)
    for want, got in zip(student.weights, restored.student.weights, strict=True):
        np.testing.assert_array_equal(got.numpy(), want.numpy(), err_msg=got.path)

    # A TensorFlow checkpoint of it (as BackupAndRestore and our modes write) holds the
    # student and the optimizer, not the teacher.
    prefix = tf.train.Checkpoint(model=distiller).save(str(tmp_path / "ckpt"))
    shapes = dict(tf.train.list_variables(prefix))
    counters = ("_CHECKPOINTABLE", "save_counter", "model/optimizer/_iterations")
    held = [k for k in shapes if not k.startswith(counters) and "_learning_rate" not in k]
    assert len(held) == len(student.weights)  # SGD: no slots; each variable once
    assert [64, 3] not in shapes.values()  # the teacher's classifier (the student's: 32)


def test_backup_and_restore_resumes_a_distiller(teacher, tmp_path):
    class StopAfterFirstEpoch(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            raise RuntimeError("interrupted")

    backup = str(tmp_path / "backup")
    first = Distiller(tiny_classifier(width=0.0625), teacher)
    first.compile(optimizer=keras.optimizers.SGD(0.1))
    with pytest.raises(RuntimeError, match="interrupted"):
        callbacks = [keras.callbacks.BackupAndRestore(backup), StopAfterFirstEpoch()]
        first.fit(dataset(), epochs=2, verbose=0, callbacks=callbacks)
    saved = [v.numpy() for v in first.student.weights]

    class WeightsAtStart(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):  # after BackupAndRestore's
            self.weights = [v.numpy() for v in self.model.student.weights]

    second = Distiller(tiny_classifier(width=0.0625, seed=2), teacher)
    second.compile(optimizer=keras.optimizers.SGD(0.1))
    start = WeightsAtStart()
    history = second.fit(
        dataset(), epochs=2, verbose=0, callbacks=[keras.callbacks.BackupAndRestore(backup), start]
    )
    assert len(history.epoch) == 1  # resumed in epoch 2
    assert int(second.optimizer.iterations.numpy()) == 2 * 2  # 2 steps per epoch
    for want, got, variable in zip(saved, start.weights, second.student.weights, strict=True):
        np.testing.assert_array_equal(got, want, err_msg=variable.path)


def test_evaluate_reports_the_distillation_loss_in_inference_mode(teacher):
    student = tiny_classifier(width=0.0625)
    distiller = Distiller(student, teacher, temperature=2.0, label_weight=0.5)
    distiller.compile(optimizer=keras.optimizers.SGD(0.1))
    data = dataset(batch=8)  # one batch: the logs are that batch's values
    logs = distiller.evaluate(data, verbose=0, return_dict=True)
    assert set(logs) == {"loss", "distill_loss", "label_loss", "agreement"}
    batch = next(iter(data))
    t = teacher(batch["image"], training=False)["logits"]
    s = student(batch["image"], training=False)["logits"]
    assert logs["distill_loss"] == pytest.approx(float(distillation_loss(t, s, 2.0)), rel=1e-5)
    labelled = batch["label"].numpy() >= 0
    cross_entropy = keras.losses.sparse_categorical_crossentropy(
        batch["label"].numpy()[labelled], s.numpy()[labelled], from_logits=True
    )
    assert logs["label_loss"] == pytest.approx(float(np.mean(cross_entropy)), rel=1e-5)
    assert logs["loss"] == pytest.approx(logs["distill_loss"] + 0.5 * logs["label_loss"])
    agreement = np.mean(np.argmax(t, -1) == np.argmax(s, -1))
    assert logs["agreement"] == pytest.approx(agreement)


def test_saving_the_whole_distiller_says_to_save_the_student(teacher, tmp_path):
    distiller = Distiller(tiny_classifier(width=0.0625), teacher)
    with pytest.raises(NotImplementedError, match=r"distiller\.student\.save"):
        distiller.save(tmp_path / "distiller.keras")
